//! The decoy's reply lines, word for word as Postfix on Debian writes them (SMTP.md §2–§4),
//! so a client's fingerprinting sees nothing but Postfix.

pub(crate) const OK: &str = "250 2.0.0 Ok";
pub(crate) const MAIL_OK: &str = "250 2.1.0 Ok";
pub(crate) const RCPT_OK: &str = "250 2.1.5 Ok";
pub(crate) const DATA_GO: &str = "354 End data with <CR><LF>.<CR><LF>";
pub(crate) const BYE: &str = "221 2.0.0 Bye";
pub(crate) const VRFY: &str = "252 2.0.0 Cannot VRFY user";
pub(crate) const STARTTLS_GO: &str = "220 2.0.0 Ready to start TLS";
pub(crate) const STARTTLS_NONE: &str = "454 4.7.0 TLS not available due to local problem";
pub(crate) const STARTTLS_ACTIVE: &str = "554 5.5.1 Error: TLS already active";
pub(crate) const EHLO_SYNTAX: &str = "501 5.5.4 Syntax: EHLO hostname";
pub(crate) const HELO_SYNTAX: &str = "501 5.5.4 Syntax: HELO hostname";
pub(crate) const MAIL_SYNTAX: &str = "501 5.5.4 Syntax: MAIL FROM:<address>";
pub(crate) const RCPT_SYNTAX: &str = "501 5.5.4 Syntax: RCPT TO:<address>";
pub(crate) const NESTED_MAIL: &str = "503 5.5.1 Error: nested MAIL command";
pub(crate) const NEED_MAIL: &str = "503 5.5.1 Error: need MAIL command";
pub(crate) const NEED_RCPT: &str = "503 5.5.1 Error: need RCPT command";
pub(crate) const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed limit";
pub(crate) const BAD_RCPT: &str = "501 5.1.3 Bad recipient address syntax";
pub(crate) const TOO_MANY_RCPTS: &str = "452 4.5.3 Error: too many recipients";
pub(crate) const NO_STORAGE: &str = "452 4.3.1 Insufficient system storage";
pub(crate) const UNKNOWN: &str = "502 5.5.2 Error: command not recognized";
pub(crate) const LINE_TOO_LONG: &str = "500 5.5.2 Error: line too long";
pub(crate) const AUTH_NEED_HELO: &str = "503 5.5.1 Error: send HELO/EHLO first";
pub(crate) const AUTH_IN_MAIL: &str = "503 5.5.1 Error: MAIL transaction in progress";
pub(crate) const AUTH_AGAIN: &str = "503 5.5.1 Error: already authenticated";
pub(crate) const AUTH_MECHANISM: &str = "504 5.5.4 Unrecognized authentication type";
pub(crate) const AUTH_ABORTED: &str = "501 5.7.0 Authentication aborted";
pub(crate) const AUTH_UNDECODABLE: &str = "501 5.5.2 Cannot decode response";
pub(crate) const AUTH_SYNTAX: &str = "501 5.5.4 Syntax: AUTH mechanism";
pub(crate) const AUTH_OK: &str = "235 2.7.0 Authentication successful";
pub(crate) const AUTH_FAILED: &str =
    "535 5.7.8 Error: authentication failed: authentication failure";
pub(crate) const AUTH_EMPTY_CHALLENGE: &str = "334 ";
pub(crate) const AUTH_USERNAME: &str = "334 VXNlcm5hbWU6";
pub(crate) const AUTH_PASSWORD: &str = "334 UGFzc3dvcmQ6";

pub(crate) fn queued(queue_id: &str) -> String {
    format!("250 2.0.0 Ok: queued as {queue_id}")
}

pub(crate) fn relay_denied(addr: &str) -> String {
    format!("554 5.7.1 <{addr}>: Relay access denied")
}

pub(crate) fn domain_not_found(addr: &str) -> String {
    format!("550 5.1.2 <{addr}>: Recipient address rejected: Domain not found")
}

pub(crate) fn greylisted(addr: &str) -> String {
    format!("451 4.7.1 <{addr}>: Recipient address rejected: Greylisted, try again later")
}

pub(crate) fn too_many_errors(hostname: &str) -> String {
    format!("421 4.7.0 {hostname} Error: too many errors")
}

pub(crate) fn timeout(hostname: &str) -> String {
    format!("421 4.4.2 {hostname} Error: timeout exceeded")
}

pub(crate) fn too_many_connections(hostname: &str, addr: &str) -> String {
    format!("421 4.7.0 {hostname} Error: too many connections from {addr}")
}

/// The EHLO reply: STARTTLS only while it can still be used.
pub(crate) fn ehlo(hostname: &str, size: usize, offer_starttls: bool) -> Vec<String> {
    let mut lines = vec![
        format!("250-{hostname}"),
        "250-PIPELINING".to_owned(),
        format!("250-SIZE {size}"),
        "250-VRFY".to_owned(),
        "250-ETRN".to_owned(),
    ];
    if offer_starttls {
        lines.push("250-STARTTLS".to_owned());
    }
    lines.extend(
        [
            "250-AUTH PLAIN LOGIN",
            "250-ENHANCEDSTATUSCODES",
            "250-8BITMIME",
            "250 DSN",
        ]
        .map(str::to_owned),
    );
    lines
}
