//! `decnet smtp` (SMTP.md §1–§8): the decoy attackers talk to.
