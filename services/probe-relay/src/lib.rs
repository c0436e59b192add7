//! `decnet probe-relay` (SMTP.md §9): the first N messages per (attacker address, decoy)
//! through the operator's upstream server, counted in the database, never sent twice.
