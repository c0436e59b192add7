//! A local SMTP sink for probe-relay's tests: it records every envelope and message, and can
//! be scripted to refuse at a step, stall, or drop the connection after the final dot. It
//! offers STARTTLS or serves TLS on connect with the test certificate, and checks AUTH.
//!
//! Data is read as a server reads it: lines unstuffed, the lone dot ends them, and the
//! message is the lines joined with CRLF — so a test compares bytes with what was stored.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What the sink does when a message's final dot arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DataEnd {
    /// Answer with this code and text.
    Reply(u16, &'static str),
    /// Close the connection without a word.
    Drop,
    /// Say nothing, keep the connection open.
    Stall,
}

/// How the sink behaves. Changeable while it runs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Script {
    /// Advertise STARTTLS (and do it).
    pub(crate) starttls: bool,
    /// TLS from the first byte.
    pub(crate) implicit_tls: bool,
    /// Advertise AUTH PLAIN LOGIN and accept only these credentials.
    pub(crate) auth: Option<(String, String)>,
    /// One entry per message, in order; `250` once they run out.
    pub(crate) data_ends: VecDeque<DataEnd>,
    /// A refusal for every RCPT.
    pub(crate) rcpt_reply: Option<(u16, &'static str)>,
    /// How long to wait before answering the final dot.
    pub(crate) data_delay: Duration,
}

/// One message that reached the final dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    /// The EHLO name.
    pub(crate) helo: String,
    /// MAIL FROM, without the brackets.
    pub(crate) mail_from: String,
    /// Accepted RCPT TO addresses.
    pub(crate) rcpt: Vec<String>,
    /// The message as a server stores it.
    pub(crate) data: Vec<u8>,
    /// Whether the connection was encrypted.
    pub(crate) tls: bool,
    /// The user that authenticated, if any.
    pub(crate) auth_user: Option<String>,
    /// What the sink did at the dot.
    pub(crate) end: DataEnd,
}

/// Everything the sink saw.
#[derive(Debug, Default)]
pub(crate) struct Log {
    /// Connections accepted.
    pub(crate) connections: usize,
    /// Every command line, with whether it came over TLS.
    pub(crate) commands: Vec<(bool, String)>,
    /// Messages, in order.
    pub(crate) received: Vec<Received>,
    /// AUTH attempts: (mechanism, user, password, tls).
    pub(crate) auth: Vec<(String, String, String, bool)>,
}

/// A running sink on loopback.
pub(crate) struct Sink {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// Its behaviour.
    pub(crate) script: Arc<Mutex<Script>>,
    /// What it saw.
    pub(crate) log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn acceptor() -> TlsAcceptor {
    let dir = decnet_test_support::tls_fixture_dir();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&std::fs::read(dir.join("localhost.pem")).unwrap())
            .collect::<Result<_, _>>()
            .unwrap();
    let key =
        PrivateKeyDer::from_pem_slice(&std::fs::read(dir.join("localhost.key")).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

impl Sink {
    /// Start on a free loopback port.
    pub(crate) async fn start(script: Script) -> Sink {
        Sink::start_on(decnet_test_support::free_port(), script).await
    }

    /// Start on `port`.
    pub(crate) async fn start_on(port: u16, script: Script) -> Sink {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(Mutex::new(script));
        let log = Arc::new(Mutex::new(Log::default()));
        let tls = acceptor();
        let (s, l) = (Arc::clone(&script), Arc::clone(&log));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                l.lock().unwrap().connections += 1;
                let (s, l, tls) = (Arc::clone(&s), Arc::clone(&l), tls.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, s, l, tls).await;
                });
            }
        });
        Sink {
            addr,
            script,
            log,
            task,
        }
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Messages that reached the final dot.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().received.clone()
    }

    /// Command lines seen, with whether each came over TLS.
    pub(crate) fn commands(&self) -> Vec<(bool, String)> {
        self.log.lock().unwrap().commands.clone()
    }
}

struct Conn {
    io: BufReader<Box<dyn Io>>,
    tls: bool,
    helo: String,
    mail_from: Option<String>,
    rcpt: Vec<String>,
    auth_user: Option<String>,
}

impl Conn {
    async fn say(&mut self, line: &str) -> std::io::Result<()> {
        self.io
            .get_mut()
            .write_all(format!("{line}\r\n").as_bytes())
            .await?;
        self.io.get_mut().flush().await
    }

    /// One line without its line end; `None` at the end of the stream.
    async fn line(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut buf = Vec::new();
        if self.io.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(None);
        }
        if buf.ends_with(b"\n") {
            buf.pop();
        }
        if buf.ends_with(b"\r") {
            buf.pop();
        }
        Ok(Some(buf))
    }
}

fn b64(text: &[u8]) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn serve(
    stream: TcpStream,
    script: Arc<Mutex<Script>>,
    log: Arc<Mutex<Log>>,
    tls: TlsAcceptor,
) -> std::io::Result<()> {
    let implicit = script.lock().unwrap().implicit_tls;
    let io: Box<dyn Io> = if implicit {
        Box::new(tls.accept(stream).await?)
    } else {
        Box::new(stream)
    };
    let mut c = Conn {
        io: BufReader::new(io),
        tls: implicit,
        helo: String::new(),
        mail_from: None,
        rcpt: Vec::new(),
        auth_user: None,
    };
    c.say("220 sink.test ESMTP").await?;
    while let Some(line) = c.line().await? {
        let text = String::from_utf8_lossy(&line).into_owned();
        log.lock().unwrap().commands.push((c.tls, text.clone()));
        let upper = text.to_ascii_uppercase();
        let verb = upper
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let s = script.lock().unwrap().clone();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                c.helo = text[4..].trim().to_owned();
                c.say("250-sink.test").await?;
                c.say("250-8BITMIME").await?;
                if s.starttls && !c.tls {
                    c.say("250-STARTTLS").await?;
                }
                if s.auth.is_some() {
                    c.say("250-AUTH PLAIN LOGIN").await?;
                }
                c.say("250 SIZE 10485760").await?;
            }
            "STARTTLS" => {
                c.say("220 2.0.0 Ready to start TLS").await?;
                let plain =
                    std::mem::replace(&mut c.io, BufReader::new(Box::new(tokio::io::duplex(1).0)));
                let upgraded = tls.accept(plain.into_inner()).await?;
                c.io = BufReader::new(Box::new(upgraded));
                c.tls = true;
                c.helo.clear();
            }
            "AUTH" => auth(&mut c, &text, &s, &log).await?,
            "MAIL" => {
                c.mail_from = Some(address(&text));
                c.rcpt.clear();
                c.say("250 2.1.0 Ok").await?;
            }
            "RCPT" => match s.rcpt_reply {
                Some((code, reply)) => c.say(&format!("{code} {reply}")).await?,
                None => {
                    c.rcpt.push(address(&text));
                    c.say("250 2.1.5 Ok").await?;
                }
            },
            "DATA" => {
                c.say("354 End data with <CR><LF>.<CR><LF>").await?;
                if !data(&mut c, &script, &log).await? {
                    return Ok(());
                }
            }
            "RSET" | "NOOP" => c.say("250 2.0.0 Ok").await?,
            "QUIT" => {
                c.say("221 2.0.0 Bye").await?;
                return Ok(());
            }
            _ => c.say("502 5.5.2 Error: command not recognized").await?,
        }
    }
    Ok(())
}

/// The address between the angle brackets of a MAIL or RCPT line.
fn address(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line.rfind('>').unwrap_or(line.len());
    line[start..end.max(start)].to_owned()
}

async fn auth(c: &mut Conn, text: &str, s: &Script, log: &Mutex<Log>) -> std::io::Result<()> {
    let mut words = text.split_whitespace().skip(1);
    let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
    let initial = words.next().map(str::to_owned);
    let (user, password) = match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(r) => r,
                None => {
                    c.say("334 ").await?;
                    String::from_utf8_lossy(&c.line().await?.unwrap_or_default()).into_owned()
                }
            };
            let decoded = b64(response.as_bytes());
            let mut parts = decoded.split('\0').skip(1);
            (
                parts.next().unwrap_or_default().to_owned(),
                parts.next().unwrap_or_default().to_owned(),
            )
        }
        "LOGIN" => {
            c.say("334 VXNlcm5hbWU6").await?;
            let user = b64(&c.line().await?.unwrap_or_default());
            c.say("334 UGFzc3dvcmQ6").await?;
            let password = b64(&c.line().await?.unwrap_or_default());
            (user, password)
        }
        _ => return c.say("504 5.5.4 Unrecognized authentication type").await,
    };
    log.lock()
        .unwrap()
        .auth
        .push((mechanism, user.clone(), password.clone(), c.tls));
    if s.auth.as_ref() == Some(&(user.clone(), password)) {
        c.auth_user = Some(user);
        c.say("235 2.7.0 Authentication successful").await
    } else {
        c.say("535 5.7.8 Error: authentication failed").await
    }
}

/// Read the message and act on its dot; false when the connection is to end.
async fn data(c: &mut Conn, script: &Mutex<Script>, log: &Mutex<Log>) -> std::io::Result<bool> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    loop {
        let Some(line) = c.line().await? else {
            return Ok(false);
        };
        if line == b"." {
            break;
        }
        let line = line.strip_prefix(b".").map(<[u8]>::to_vec).unwrap_or(line);
        lines.push(line);
    }
    let (end, delay) = {
        let mut s = script.lock().unwrap();
        let end = s
            .data_ends
            .pop_front()
            .unwrap_or(DataEnd::Reply(250, "2.0.0 Ok: queued as SINK1"));
        (end, s.data_delay)
    };
    log.lock().unwrap().received.push(Received {
        helo: c.helo.clone(),
        mail_from: c.mail_from.clone().unwrap_or_default(),
        rcpt: c.rcpt.clone(),
        // RFC 5321 §4.1.1.4: the CRLF before the lone dot ends the message's last line.
        data: lines
            .iter()
            .flat_map(|l| [&l[..], b"\r\n"])
            .flatten()
            .copied()
            .collect(),
        tls: c.tls,
        auth_user: c.auth_user.clone(),
        end: end.clone(),
    });
    tokio::time::sleep(delay).await;
    match end {
        DataEnd::Reply(code, text) => {
            c.say(&format!("{code} {text}")).await?;
            Ok(true)
        }
        DataEnd::Drop => Ok(false),
        DataEnd::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(false)
        }
    }
}
