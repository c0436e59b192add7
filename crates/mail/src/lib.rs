//! What a quarantined message says (SMTP.md §7): the MIME parse, with bounds, and the features
//! derived from it for `email.received`; the body text the tagger's rules read.
