//! One SMTP conversation (SMTP.md §2–§5): the state of a client connection and the answer
//! to each of its commands.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;
use uuid::Uuid;

use crate::auth::{self, Attempt, Mechanism};
use crate::config::{Mode, SmtpConfig};
use crate::conn::{Conn, Data, Line, Stop, Stream};
use crate::greylist::Greylist;
use crate::metrics::Metrics;
use crate::quarantine::{Quarantine, stored_as};
use crate::queue_id::queue_id;
use crate::reply;
use crate::spool::{Job, MessageJob, SessionJob, Spool};

/// Longest HELO/EHLO argument kept.
const HELO_CHARS: usize = 255;

/// TLDs that never resolve: a recipient there is refused as a real server would.
const DEAD_TLDS: [&str; 5] = ["invalid", "test", "localhost", "local", "example"];

/// What every connection of one decoy shares.
pub(crate) struct Decoy {
    pub(crate) config: SmtpConfig,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) quarantine: Quarantine,
    pub(crate) spool: Spool,
    pub(crate) greylist: Mutex<Greylist>,
    pub(crate) metrics: Metrics,
    /// Wakes the publisher when a job is spooled.
    pub(crate) jobs: Arc<Notify>,
}

/// A uniform draw in [0, 1) from the OS.
pub(crate) fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // The OS generator does not fail on Linux once booted; a zero draw is harmless here.
    let _ = getrandom::getrandom(&mut b);
    u64::from_le_bytes(b)
}

/// The open mail transaction.
#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

/// A connection's state.
struct Session {
    client: IpAddr,
    session_id: Uuid,
    started_at: DateTime<Utc>,
    tls_active: bool,
    helo: Option<String>,
    authenticated: bool,
    tx: Transaction,
    errors: u32,
    messages: u32,
    auth_count: u32,
    attempts: Vec<Attempt>,
}

/// How the conversation goes on after a command.
enum Next {
    Continue,
    /// Close after the queued replies.
    Close,
    /// Upgrade to TLS, then continue.
    StartTls,
}

fn address_in(arg: &str) -> Option<&str> {
    let arg = arg.trim_start();
    if let Some(rest) = arg.strip_prefix('<') {
        let end = rest.find('>')?;
        Some(&rest[..end])
    } else {
        // Postfix also takes a bare address, up to the first blank.
        arg.split_whitespace().next()
    }
}

/// The argument after `FROM:` or `TO:` (case-insensitive), or None for bad syntax.
fn after_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| &arg[keyword.len()..])
}

/// `local@domain` with a plausible domain.
fn recipient_ok(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains(|c: char| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        && !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

fn tld(addr: &str) -> String {
    addr.rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

impl Session {
    fn reset(&mut self) {
        self.tx = Transaction::default();
    }
}

/// Serve one connection to its end.
///
/// At shutdown a client waiting to send its next command is disconnected, as a stopping
/// Postfix does; one in the middle of its data gets the grace of the listener to finish.
pub(crate) async fn serve(
    decoy: Arc<Decoy>,
    stream: Stream,
    client: IpAddr,
    tls_active: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let limits = &decoy.config.limits;
    let mut conn = Conn::new(stream, limits.idle, limits.lifetime);
    let mut s = Session {
        client,
        session_id: Uuid::new_v4(),
        started_at: Utc::now(),
        tls_active,
        helo: None,
        authenticated: false,
        tx: Transaction::default(),
        errors: 0,
        messages: 0,
        auth_count: 0,
        attempts: Vec::new(),
    };
    conn.reply(&decoy.config.banner);
    loop {
        let read = tokio::select! {
            read = conn.line(limits.line) => read,
            _ = shutdown.changed() => break,
        };
        let next = match read {
            Ok(Line::TooLong) => respond_error(&decoy, &mut s, &mut conn, reply::LINE_TOO_LONG),
            Ok(Line::Text(line)) => command(&decoy, &mut s, &mut conn, &line).await,
            Err(Stop::Closed) => break,
            Err(Stop::Idle | Stop::Lifetime) => {
                conn.reply(&reply::timeout(&decoy.config.hostname));
                Next::Close
            }
        };
        match next {
            Next::Continue => {}
            Next::Close => {
                conn.close().await;
                break;
            }
            Next::StartTls => match start_tls(&decoy, conn).await {
                Some(upgraded) => {
                    conn = upgraded;
                    // RFC 3207: everything learnt before the handshake is forgotten.
                    s.tls_active = true;
                    s.helo = None;
                    s.authenticated = false;
                    s.reset();
                }
                None => break,
            },
        }
    }
    finish(&decoy, s).await;
}

/// A connection that tried to log in leaves a session job (SMTP.md §3).
async fn finish(decoy: &Decoy, s: Session) {
    if s.attempts.is_empty() {
        return;
    }
    let job = Job::Session(SessionJob {
        session_id: s.session_id,
        client_ip: s.client.to_string(),
        started_at: s.started_at,
        ended_at: Utc::now(),
        attempts: s.attempts,
    });
    let spool = decoy.spool.clone();
    match tokio::task::spawn_blocking(move || spool.put(&job)).await {
        Ok(Ok(())) => decoy.jobs.notify_one(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot spool a login session; its attempts are lost")
        }
        Err(e) => tracing::error!(error = %e, "spooling a login session panicked"),
    }
}

async fn start_tls(decoy: &Decoy, mut conn: Conn) -> Option<Conn> {
    if conn.flush().await.is_err() {
        return None;
    }
    let acceptor = decoy.tls.clone()?;
    let ends_at = conn.ends_at();
    let Stream::Plain(tcp) = conn.into_stream() else {
        return None;
    };
    let handshake = tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await;
    match handshake {
        Ok(Ok(tls)) => Some(Conn::with_stream(
            Stream::Tls(Box::new(tls)),
            decoy.config.limits.idle,
            ends_at,
        )),
        _ => {
            decoy.metrics.tls_failures.inc();
            None
        }
    }
}

/// Queue an error reply the client caused; past the limit, close with 421.
fn respond_error(decoy: &Decoy, s: &mut Session, conn: &mut Conn, line: &str) -> Next {
    conn.reply(line);
    s.errors += 1;
    if s.errors >= decoy.config.limits.errors {
        conn.reply(&reply::too_many_errors(&decoy.config.hostname));
        return Next::Close;
    }
    Next::Continue
}

async fn command(decoy: &Decoy, s: &mut Session, conn: &mut Conn, line: &[u8]) -> Next {
    let text = String::from_utf8_lossy(line);
    let (verb, arg) = match text.split_once(' ') {
        Some((v, a)) => (v, a.trim()),
        None => (text.as_ref(), ""),
    };
    let verb = verb.to_ascii_uppercase();
    let config = &decoy.config;
    match verb.as_str() {
        "EHLO" | "HELO" => {
            if arg.is_empty() {
                let syntax = if verb == "EHLO" {
                    reply::EHLO_SYNTAX
                } else {
                    reply::HELO_SYNTAX
                };
                return respond_error(decoy, s, conn, syntax);
            }
            s.helo = Some(arg.chars().take(HELO_CHARS).collect());
            s.reset();
            if verb == "EHLO" {
                let starttls = decoy.tls.is_some() && !s.tls_active;
                for line in reply::ehlo(&config.hostname, config.max_body_bytes, starttls) {
                    conn.reply(&line);
                }
            } else {
                conn.reply(&format!("250 {}", config.hostname));
            }
            Next::Continue
        }
        "STARTTLS" => {
            if s.tls_active {
                respond_error(decoy, s, conn, reply::STARTTLS_ACTIVE)
            } else if decoy.tls.is_some() {
                conn.reply(reply::STARTTLS_GO);
                // Whatever the client pipelined after STARTTLS was said in the clear.
                conn.discard_input();
                Next::StartTls
            } else {
                respond_error(decoy, s, conn, reply::STARTTLS_NONE)
            }
        }
        "AUTH" => auth(decoy, s, conn, arg).await,
        "MAIL" => {
            if s.messages >= config.limits.messages {
                conn.reply(&reply::too_many_errors(&config.hostname));
                return Next::Close;
            }
            if s.tx.mail_from.is_some() {
                return respond_error(decoy, s, conn, reply::NESTED_MAIL);
            }
            let Some(rest) = after_keyword(arg, "FROM:") else {
                return respond_error(decoy, s, conn, reply::MAIL_SYNTAX);
            };
            let Some(addr) = address_in(rest) else {
                return respond_error(decoy, s, conn, reply::MAIL_SYNTAX);
            };
            let params = rest.trim_start().strip_prefix('<').map_or_else(
                || rest.trim_start().split_once(' ').map_or("", |(_, p)| p),
                |r| r.split_once('>').map_or("", |(_, p)| p),
            );
            let too_big = params.split_whitespace().any(|p| {
                p.get(..5).is_some_and(|k| k.eq_ignore_ascii_case("SIZE="))
                    && p[5..]
                        .parse::<u64>()
                        .is_ok_and(|n| n > config.max_body_bytes as u64)
            });
            if too_big {
                return respond_error(decoy, s, conn, reply::TOO_BIG);
            }
            s.tx.mail_from = Some(addr.to_owned());
            conn.reply(reply::MAIL_OK);
            Next::Continue
        }
        "RCPT" => rcpt(decoy, s, conn, arg),
        "DATA" => data(decoy, s, conn).await,
        "RSET" => {
            s.reset();
            conn.reply(reply::OK);
            Next::Continue
        }
        "NOOP" => {
            conn.reply(reply::OK);
            Next::Continue
        }
        "VRFY" => {
            conn.reply(reply::VRFY);
            Next::Continue
        }
        "QUIT" => {
            conn.reply(reply::BYE);
            Next::Close
        }
        _ => respond_error(decoy, s, conn, reply::UNKNOWN),
    }
}

fn rcpt(decoy: &Decoy, s: &mut Session, conn: &mut Conn, arg: &str) -> Next {
    if s.tx.mail_from.is_none() {
        return respond_error(decoy, s, conn, reply::NEED_MAIL);
    }
    let Some(rest) = after_keyword(arg, "TO:") else {
        return respond_error(decoy, s, conn, reply::RCPT_SYNTAX);
    };
    let addr = address_in(rest).unwrap_or(rest.trim()).to_owned();
    match decoy.config.mode {
        Mode::Harvester => respond_error(decoy, s, conn, &reply::relay_denied(&addr)),
        Mode::Relay => {
            if !recipient_ok(&addr) {
                return respond_error(decoy, s, conn, reply::BAD_RCPT);
            }
            if DEAD_TLDS.contains(&tld(&addr).as_str()) {
                return respond_error(decoy, s, conn, &reply::domain_not_found(&addr));
            }
            let greylisted = decoy
                .greylist
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .refuses(s.client, &addr, decoy.config.rcpt_greylist_rate);
            if greylisted {
                return respond_error(decoy, s, conn, &reply::greylisted(&addr));
            }
            if s.tx.rcpt_to.len() >= decoy.config.limits.recipients {
                return respond_error(decoy, s, conn, reply::TOO_MANY_RCPTS);
            }
            s.tx.rcpt_to.push(addr);
            conn.reply(reply::RCPT_OK);
            Next::Continue
        }
    }
}

async fn data(decoy: &Decoy, s: &mut Session, conn: &mut Conn) -> Next {
    if s.tx.rcpt_to.is_empty() {
        return respond_error(decoy, s, conn, reply::NEED_RCPT);
    }
    conn.reply(reply::DATA_GO);
    let mut data = Data::new(decoy.config.max_body_bytes);
    match conn.data(&mut data).await {
        Ok(()) => {}
        Err(Stop::Closed) => return Next::Close,
        Err(Stop::Idle | Stop::Lifetime) => {
            conn.reply(&reply::timeout(&decoy.config.hostname));
            return Next::Close;
        }
    }
    let received_at = Utc::now();
    let micros = u64::try_from(received_at.timestamp_micros()).unwrap_or_default();
    let id = queue_id(micros, random_u64());
    let name = stored_as(received_at, &data.kept, &id);
    let job = Job::Message(MessageJob {
        stored_as: name.clone(),
        queue_id: id.clone(),
        client_ip: s.client.to_string(),
        mail_from: s.tx.mail_from.clone().unwrap_or_default(),
        rcpt_to: std::mem::take(&mut s.tx.rcpt_to),
        helo: s.helo.clone(),
        authenticated: s.authenticated,
        received_at,
        truncated: data.truncated,
        size_bytes: data.kept.len() as u64,
    });
    s.reset();
    let (quarantine, spool) = (decoy.quarantine.clone(), decoy.spool.clone());
    let bytes = std::mem::take(&mut data.kept);
    let stored = tokio::task::spawn_blocking(move || {
        quarantine.store(&name, &bytes)?;
        spool.put(&job)
    })
    .await;
    let (low, high) = decoy.config.end_of_data_pause;
    let pause = low + (high.saturating_sub(low)).mul_f64(random_unit());
    tokio::time::sleep(pause).await;
    match stored {
        Ok(Ok(())) => {
            s.messages += 1;
            decoy.metrics.messages(data.truncated);
            decoy.jobs.notify_one();
            conn.reply(&reply::queued(&id));
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot store a message; the client was told to retry");
            decoy.metrics.store_failures.inc();
            conn.reply(reply::NO_STORAGE);
        }
        Err(e) => {
            tracing::error!(error = %e, "storing a message panicked");
            decoy.metrics.store_failures.inc();
            conn.reply(reply::NO_STORAGE);
        }
    }
    Next::Continue
}

/// Read one AUTH continuation line; None when the client went away.
async fn continuation(decoy: &Decoy, conn: &mut Conn) -> Option<Line> {
    conn.line(decoy.config.limits.line).await.ok()
}

async fn auth(decoy: &Decoy, s: &mut Session, conn: &mut Conn, arg: &str) -> Next {
    let config = &decoy.config;
    if s.helo.is_none() {
        return respond_error(decoy, s, conn, reply::AUTH_NEED_HELO);
    }
    if s.tx.mail_from.is_some() {
        return respond_error(decoy, s, conn, reply::AUTH_IN_MAIL);
    }
    if s.authenticated {
        return respond_error(decoy, s, conn, reply::AUTH_AGAIN);
    }
    let mut words = arg.split_whitespace();
    let Some(name) = words.next() else {
        return respond_error(decoy, s, conn, reply::AUTH_SYNTAX);
    };
    let Some(mechanism) = Mechanism::named(name) else {
        return respond_error(decoy, s, conn, reply::AUTH_MECHANISM);
    };
    if s.auth_count >= config.limits.auth_attempts {
        conn.reply(&reply::too_many_errors(&config.hostname));
        return Next::Close;
    }
    s.auth_count += 1;
    let initial = words.next().map(str::to_owned);

    // Each response: "*" aborts, undecodable base64 is refused, a lost client ends it.
    enum Got {
        Bytes(Vec<u8>),
        Refused(&'static str),
        Gone,
    }
    async fn response(decoy: &Decoy, conn: &mut Conn, given: Option<String>, prompt: &str) -> Got {
        let text = match given {
            Some(t) => t,
            None => {
                conn.reply(prompt);
                match continuation(decoy, conn).await {
                    Some(Line::Text(l)) => String::from_utf8_lossy(&l).into_owned(),
                    Some(Line::TooLong) => return Got::Refused(reply::AUTH_UNDECODABLE),
                    None => return Got::Gone,
                }
            }
        };
        if text.trim() == "*" {
            return Got::Refused(reply::AUTH_ABORTED);
        }
        // PLAIN's "=" is an empty initial response.
        if text.trim() == "=" {
            return Got::Bytes(Vec::new());
        }
        match auth::decode(&text) {
            Ok(b) => Got::Bytes(b),
            Err(_) => Got::Refused(reply::AUTH_UNDECODABLE),
        }
    }

    let (username, password) = match mechanism {
        Mechanism::Plain => match response(decoy, conn, initial, reply::AUTH_EMPTY_CHALLENGE).await
        {
            Got::Bytes(b) => auth::plain_credentials(&b),
            Got::Refused(r) => return respond_error(decoy, s, conn, r),
            Got::Gone => return Next::Close,
        },
        Mechanism::Login => {
            let user = match response(decoy, conn, initial, reply::AUTH_USERNAME).await {
                Got::Bytes(b) => auth::kept(&b),
                Got::Refused(r) => return respond_error(decoy, s, conn, r),
                Got::Gone => return Next::Close,
            };
            match response(decoy, conn, None, reply::AUTH_PASSWORD).await {
                Got::Bytes(b) => (user, auth::kept(&b)),
                Got::Refused(r) => return respond_error(decoy, s, conn, r),
                Got::Gone => return Next::Close,
            }
        }
    };
    let success = match config.mode {
        Mode::Harvester => false,
        Mode::Relay => config.auth_allow.is_empty() || config.auth_allow.contains(&username),
    };
    decoy.metrics.auth(mechanism, success);
    s.attempts.push(Attempt {
        username,
        password,
        method: mechanism.method().to_owned(),
        success,
        ts: Utc::now(),
    });
    if success {
        s.authenticated = true;
        conn.reply(reply::AUTH_OK);
        Next::Continue
    } else {
        respond_error(decoy, s, conn, reply::AUTH_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_as_postfix_reads_them() {
        assert_eq!(address_in("<a@b.example> SIZE=10"), Some("a@b.example"));
        assert_eq!(address_in(" <>"), Some(""));
        assert_eq!(address_in("a@b.example BODY=8BITMIME"), Some("a@b.example"));
        assert_eq!(address_in("<a@b"), None);
        assert_eq!(after_keyword("from:<x>", "FROM:"), Some("<x>"));
        assert_eq!(after_keyword("FRO", "FROM:"), None);
        assert!(recipient_ok("victim@mail.example.com"));
        assert!(recipient_ok("v@xn--bcher-kva.example"));
        assert!(!recipient_ok("no-at-sign"));
        assert!(!recipient_ok("@example.com"));
        assert!(!recipient_ok("a@"));
        assert!(!recipient_ok("a@bad..dots"));
        assert!(!recipient_ok("a b@example.com"));
        assert_eq!(tld("x@mail.Example"), "example");
    }
}
