//! One SMTP session towards upstream (SMTP.md §9.5), with lettre's low-level connection, and
//! how it ended in the classes of §9.6.
//!
//! The one question that decides between a retry and `unknown` is whether the final dot may
//! have reached the server. lettre's `message_iter` writes each part the iterator yields and
//! only then the terminator, so the iterator here notes when lettre asks it for the part after
//! the last: from that moment a failure without a reply is `unknown`; before it, the server
//! cannot have taken the message and a retry is safe. That holds under TLS too, where the
//! bytes on the socket cannot be read.
//!
//! Every step has a deadline of `timeout_s` (connecting, with the greeting and the EHLO reply
//! that lettre reads as part of it, gets three); the caller bounds the whole session.
//! Credentials go only over TLS, unless the operator chose `tls = "none"`.

use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use decnet_proto::payload::smtp::UpstreamTls;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::AsyncSmtpConnection;
use lettre::transport::smtp::commands::Data;
use lettre::transport::smtp::extension::{ClientId, Extension};
use lettre::transport::smtp::response::Response;

use crate::config::{TlsMode, Upstream};

/// What to send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outgoing<'a> {
    /// EHLO name.
    pub(crate) helo: &'a str,
    /// Envelope sender; empty for `<>`.
    pub(crate) from: &'a str,
    /// Envelope recipients.
    pub(crate) to: &'a [String],
    /// The prepared message (CRLF line ends, not dot-stuffed).
    pub(crate) data: &'a [u8],
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// Upstream took the message.
    Sent {
        /// Its reply code.
        code: u16,
        /// Its reply text.
        reply: String,
    },
    /// Known not to have been taken; another session may succeed.
    Transient {
        /// The reply, if the failure was one.
        code: Option<u16>,
        /// Its text.
        reply: Option<String>,
        /// What happened, for the log.
        why: String,
    },
    /// Refused for good.
    Failed {
        /// `upstream_rejected`, `auth_failed`, `tls_error`, `starttls_unavailable`.
        reason: &'static str,
        /// The reply, if there was one.
        code: Option<u16>,
        /// Its text.
        reply: Option<String>,
    },
    /// The connection ended after the final dot without a reply.
    Unknown {
        /// What happened, for the log.
        why: String,
    },
    /// The `in_flight` commit did not happen (the lease was lost or the database failed):
    /// nothing was sent.
    Halted(String),
}

/// A session's end and what it learned on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// How it ended.
    pub(crate) end: End,
    /// The transport security in use when it ended, once connected.
    pub(crate) tls: Option<UpstreamTls>,
    /// Whether the row went `in_flight`.
    pub(crate) in_flight: bool,
}

/// What the session has got to, shared with the caller's deadline.
#[derive(Debug, Default)]
struct Progress {
    tls: AtomicU8,
    in_flight: AtomicBool,
    /// lettre is past the message's bytes: the final dot is being written, or was.
    dot: Arc<AtomicBool>,
}

impl Progress {
    fn set_tls(&self, tls: UpstreamTls) {
        let n = match tls {
            UpstreamTls::Starttls => 1,
            UpstreamTls::Implicit => 2,
            UpstreamTls::None => 3,
        };
        self.tls.store(n, Ordering::SeqCst);
    }

    fn tls(&self) -> Option<UpstreamTls> {
        match self.tls.load(Ordering::SeqCst) {
            1 => Some(UpstreamTls::Starttls),
            2 => Some(UpstreamTls::Implicit),
            3 => Some(UpstreamTls::None),
            _ => None,
        }
    }
}

/// The commit to run just before the message's bytes go out.
pub(crate) type BeforeData<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Run one session within `budget`. `before_data` runs after `DATA` was answered and before
/// any byte of the message is written; when it fails, nothing is sent.
pub(crate) async fn deliver(
    up: &Upstream,
    out: &Outgoing<'_>,
    before_data: BeforeData<'_>,
    budget: Duration,
) -> Report {
    let progress = Progress::default();
    let end = match tokio::time::timeout(budget, converse(up, out, before_data, &progress)).await {
        Ok(end) => end,
        Err(_) if progress.dot.load(Ordering::SeqCst) => End::Unknown {
            why: format!("session abandoned after {budget:?}, after the final dot"),
        },
        Err(_) => End::Transient {
            code: None,
            reply: None,
            why: format!("session abandoned after {budget:?}"),
        },
    };
    Report {
        end,
        tls: progress.tls(),
        in_flight: progress.in_flight.load(Ordering::SeqCst),
    }
}

/// The message, then a note that lettre asked for more: the terminator comes next.
struct BodyThenDot<'a> {
    data: Option<&'a [u8]>,
    dot: Arc<AtomicBool>,
}

impl<'a> Iterator for BodyThenDot<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let part = self.data.take();
        if part.is_none() {
            self.dot.store(true, Ordering::SeqCst);
        }
        part
    }
}

/// `MAIL FROM` with the parameters the message needs.
struct MailFrom<'a> {
    address: &'a str,
    eight_bit: bool,
    utf8: bool,
}

impl std::fmt::Display for MailFrom<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MAIL FROM:<{}>", self.address)?;
        if self.eight_bit {
            f.write_str(" BODY=8BITMIME")?;
        }
        if self.utf8 {
            f.write_str(" SMTPUTF8")?;
        }
        f.write_str("\r\n")
    }
}

/// `RCPT TO`. Addresses were checked to fit on the line when the payload was read.
struct RcptTo<'a>(&'a str);

impl std::fmt::Display for RcptTo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RCPT TO:<{}>\r\n", self.0)
    }
}

fn code_of(e: &SmtpError) -> Option<u16> {
    e.status().map(u16::from)
}

/// The reply text of a refusal: lettre keeps the server's lines as the error's source.
fn reply_of(e: &SmtpError) -> Option<String> {
    e.status()?;
    e.source().map(|s| s.to_string())
}

fn reply_text(r: &Response) -> String {
    r.message().collect::<Vec<_>>().join(" ")
}

/// Whether a failure during a TLS step was the TLS itself (a certificate refused, a failed
/// handshake) rather than the network: rustls errors reach us as `InvalidData`.
fn is_tls_failure(e: &SmtpError) -> bool {
    if e.is_tls() {
        return true;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::InvalidData;
        }
        source = s.source();
    }
    false
}

/// A refusal or a failure at a step before the data: 4xx and network trouble are
/// transient, 5xx permanent with `permanent` as the reason.
fn refused(e: &SmtpError, step: &str, permanent: &'static str) -> End {
    match code_of(e) {
        Some(code) if code >= 500 => End::Failed {
            reason: permanent,
            code: Some(code),
            reply: reply_of(e),
        },
        code => End::Transient {
            code,
            reply: reply_of(e),
            why: format!("{step}: {e}"),
        },
    }
}

fn timed_out(step: &str, after: Duration) -> End {
    End::Transient {
        code: None,
        reply: None,
        why: format!("{step}: no reply within {after:?}"),
    }
}

/// Run `step` within `limit`, mapping a lettre error with `on_error`.
async fn within<T>(
    limit: Duration,
    name: &str,
    step: impl Future<Output = Result<T, SmtpError>>,
    on_error: impl FnOnce(&SmtpError) -> End,
) -> Result<T, End> {
    match tokio::time::timeout(limit, step).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(on_error(&e)),
        Err(_) => Err(timed_out(name, limit)),
    }
}

async fn converse(
    up: &Upstream,
    out: &Outgoing<'_>,
    before_data: BeforeData<'_>,
    progress: &Progress,
) -> End {
    let mut conn = match open(up, out, progress).await {
        Ok(conn) => conn,
        Err(end) => return end,
    };
    let end = transact(&mut conn, up, out, before_data, progress).await;
    // The outcome is settled; a QUIT that goes unanswered changes nothing.
    let _ = tokio::time::timeout(up.timeout, conn.quit()).await;
    end
}

/// Connect, read the greeting, EHLO, upgrade with STARTTLS when due, and authenticate.
async fn open(
    up: &Upstream,
    out: &Outgoing<'_>,
    progress: &Progress,
) -> Result<AsyncSmtpConnection, End> {
    let t = up.timeout;
    let hello = ClientId::Domain(out.helo.to_owned());
    let implicit = up.tls == TlsMode::Implicit;
    let connect = AsyncSmtpConnection::connect_tokio1(
        (up.host.as_str(), up.port),
        Some(t),
        &hello,
        if implicit {
            up.tls_parameters.clone()
        } else {
            None
        },
        None,
    );
    let mut conn = within(t * 3, "connect", connect, |e| {
        if implicit && is_tls_failure(e) {
            End::Failed {
                reason: "tls_error",
                code: None,
                reply: None,
            }
        } else {
            refused(e, "connect", "upstream_rejected")
        }
    })
    .await?;
    progress.set_tls(if implicit {
        UpstreamTls::Implicit
    } else {
        UpstreamTls::None
    });

    if up.tls == TlsMode::Starttls {
        if conn.can_starttls() {
            let params = up.tls_parameters.clone().expect("built for starttls");
            let upgrade = conn.starttls(params, &hello);
            within(t * 3, "starttls", upgrade, |e| {
                if is_tls_failure(e) {
                    End::Failed {
                        reason: "tls_error",
                        code: None,
                        reply: None,
                    }
                } else {
                    refused(e, "starttls", "tls_error")
                }
            })
            .await?;
            progress.set_tls(UpstreamTls::Starttls);
        } else if up.require_tls {
            conn.abort().await;
            return Err(End::Failed {
                reason: "starttls_unavailable",
                code: None,
                reply: None,
            });
        }
    }

    if let Some((user, password)) = up.credentials() {
        // Never in clear text unless the operator chose no TLS at all.
        if !conn.is_encrypted() && up.tls != TlsMode::None {
            conn.abort().await;
            return Err(End::Failed {
                reason: "starttls_unavailable",
                code: None,
                reply: None,
            });
        }
        let credentials = Credentials::new(user.to_owned(), password.expose().to_owned());
        let auth = conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials);
        within(t * 3, "auth", auth, |e| match code_of(e) {
            Some(code) if code < 500 => refused(e, "auth", "auth_failed"),
            // A 5xx, or no mechanism both sides know.
            code => End::Failed {
                reason: "auth_failed",
                code,
                reply: reply_of(e),
            },
        })
        .await?;
    }
    Ok(conn)
}

/// MAIL, RCPT, DATA, the commit, the message and its reply.
async fn transact(
    conn: &mut AsyncSmtpConnection,
    up: &Upstream,
    out: &Outgoing<'_>,
    before_data: BeforeData<'_>,
    progress: &Progress,
) -> End {
    let t = up.timeout;
    let info = conn.server_info();
    let mail = MailFrom {
        address: out.from,
        eight_bit: !out.data.is_ascii() && info.supports_feature(Extension::EightBitMime),
        utf8: (!out.from.is_ascii() || out.to.iter().any(|r| !r.is_ascii()))
            && info.supports_feature(Extension::SmtpUtfEight),
    };
    let refused_for_good = |e: &SmtpError| refused(e, "mail", "upstream_rejected");
    if let Err(end) = within(t, "mail", conn.command(mail), refused_for_good).await {
        return end;
    }

    // Each refused recipient is dropped; the message goes to the rest.
    let mut accepted = 0;
    let mut last_refusal = None;
    for rcpt in out.to {
        match within(t, "rcpt", conn.command(RcptTo(rcpt)), |e| {
            refused(e, "rcpt", "upstream_rejected")
        })
        .await
        {
            Ok(_) => accepted += 1,
            Err(end @ End::Failed { .. }) => last_refusal = Some((end, false)),
            Err(end @ End::Transient { code: Some(_), .. }) => last_refusal = Some((end, true)),
            // The connection itself failed.
            Err(end) => return end,
        }
    }
    if accepted == 0 {
        return match last_refusal {
            Some((end, _)) => end,
            None => End::Failed {
                reason: "upstream_rejected",
                code: None,
                reply: None,
            },
        };
    }

    if let Err(end) = within(t, "data", conn.command(Data), |e| {
        refused(e, "data", "upstream_rejected")
    })
    .await
    {
        return end;
    }
    if let Err(why) = before_data.await {
        return End::Halted(why);
    }
    progress.in_flight.store(true, Ordering::SeqCst);
    send_data(conn, out, progress, t).await
}

/// The message and the final dot, and what the reply (or its absence) means.
async fn send_data(
    conn: &mut AsyncSmtpConnection,
    out: &Outgoing<'_>,
    progress: &Progress,
    t: Duration,
) -> End {
    let body = BodyThenDot {
        data: Some(out.data),
        dot: Arc::clone(&progress.dot),
    };
    // The upload and the reply each get the step timeout.
    let result = tokio::time::timeout(t * 2, conn.message_iter(body)).await;
    let dot = progress.dot.load(Ordering::SeqCst);
    match result {
        Ok(Ok(response)) => End::Sent {
            code: u16::from(response.code()),
            reply: reply_text(&response),
        },
        // A reply to the data: the server decided, and said so.
        Ok(Err(e)) if e.status().is_some() => refused(&e, "data", "upstream_rejected"),
        Ok(Err(e)) if dot => End::Unknown {
            why: format!("no reply to the final dot: {e}"),
        },
        Ok(Err(e)) => End::Transient {
            code: None,
            reply: None,
            why: format!("sending the message: {e}"),
        },
        Err(_) if dot => End::Unknown {
            why: format!("no reply to the final dot within {:?}", t * 2),
        },
        Err(_) => timed_out("sending the message", t * 2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iterator_marks_the_terminator() {
        let dot = Arc::new(AtomicBool::new(false));
        let mut body = BodyThenDot {
            data: Some(b"x"),
            dot: Arc::clone(&dot),
        };
        assert_eq!(body.next(), Some(&b"x"[..]));
        assert!(!dot.load(Ordering::SeqCst), "the body is being written");
        assert_eq!(body.next(), None);
        assert!(dot.load(Ordering::SeqCst), "the dot comes next");
    }

    #[test]
    fn commands_are_one_line_each() {
        let mail = MailFrom {
            address: "",
            eight_bit: true,
            utf8: false,
        };
        assert_eq!(mail.to_string(), "MAIL FROM:<> BODY=8BITMIME\r\n");
        assert_eq!(RcptTo("a@b").to_string(), "RCPT TO:<a@b>\r\n");
    }
}
