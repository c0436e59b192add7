//! One client connection's bytes: a plain or TLS stream, a bounded read buffer that yields
//! command lines and message data, and the replies waiting to be written.
//!
//! Replies are written when the client has no complete command waiting, so a pipelining
//! client gets its answers in one write, in order, and one that never reads them stops being
//! read in turn (TCP pushes back) instead of growing a buffer here.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Bytes asked of the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// Data lines longer than this are passed on in pieces (they count toward the cap but are not
/// split into lines, SMTP.md §5).
const DATA_PIECE: usize = 64 * 1024;

/// The transport under a session.
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// After STARTTLS, or on an implicit-TLS listener.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why reading stopped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The client closed or reset the connection.
    Closed,
    /// Nothing arrived within the idle time.
    Idle,
    /// The connection outlived its lifetime.
    Lifetime,
}

/// What a command read gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// One line, its line end removed (CRLF or a bare LF).
    Text(Vec<u8>),
    /// A line longer than the limit; it was read through its end and dropped.
    TooLong,
}

/// A message being received: the unstuffed bytes kept up to the cap, and everything counted.
#[derive(Debug)]
pub(crate) struct Data {
    /// What is kept.
    pub(crate) kept: Vec<u8>,
    /// Unstuffed bytes received, line ends included, kept or not.
    pub(crate) received: u64,
    /// More arrived than the cap allows.
    pub(crate) truncated: bool,
    cap: usize,
    /// The last piece ended inside a line (a line longer than a piece).
    mid_line: bool,
}

impl Data {
    /// An empty message that keeps at most `cap` bytes.
    pub(crate) fn new(cap: usize) -> Data {
        Data {
            kept: Vec::new(),
            received: 0,
            truncated: false,
            cap,
            mid_line: false,
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        self.received += bytes.len() as u64;
        let room = self.cap.saturating_sub(self.kept.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Take one complete line (line end included in `line`); `true` at the terminator.
    fn line(&mut self, line: &[u8]) -> bool {
        let content = strip_line_end(line);
        let at_start = !self.mid_line;
        self.mid_line = false;
        if at_start && content == b"." {
            return true;
        }
        // Dot-unstuffing: a leading dot was doubled by the client.
        let content = if at_start && content.first() == Some(&b'.') {
            &content[1..]
        } else {
            content
        };
        self.keep(content);
        self.keep(b"\r\n");
        false
    }

    /// Take the start of a line too long to wait for its end.
    fn piece(&mut self, piece: &[u8]) {
        let piece = if !self.mid_line && piece.first() == Some(&b'.') {
            &piece[1..]
        } else {
            piece
        };
        self.mid_line = true;
        self.keep(piece);
    }
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A connection: its stream, what has been read and not yet used, the replies not yet sent.
pub(crate) struct Conn {
    stream: Stream,
    input: Vec<u8>,
    output: Vec<u8>,
    idle: Duration,
    ends_at: Instant,
}

impl Conn {
    /// Wrap a stream; `lifetime` counts from now.
    pub(crate) fn new(stream: Stream, idle: Duration, lifetime: Duration) -> Conn {
        Conn {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            idle,
            ends_at: Instant::now() + lifetime,
        }
    }

    /// Queue a reply line (`250 2.0.0 Ok`), CRLF added.
    pub(crate) fn reply(&mut self, line: &str) {
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    /// Write what is queued.
    pub(crate) async fn flush(&mut self) -> Result<(), Stop> {
        if self.output.is_empty() {
            return Ok(());
        }
        let deadline = (Instant::now() + self.idle).min(self.ends_at);
        let write = async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(())) => {
                self.output.clear();
                Ok(())
            }
            Ok(Err(_)) => Err(Stop::Closed),
            Err(_) => Err(self.why_late()),
        }
    }

    fn why_late(&self) -> Stop {
        if Instant::now() >= self.ends_at {
            Stop::Lifetime
        } else {
            Stop::Idle
        }
    }

    /// Read more bytes, flushing replies first when nothing complete is waiting.
    async fn fill(&mut self) -> Result<(), Stop> {
        self.flush().await?;
        let deadline = (Instant::now() + self.idle).min(self.ends_at);
        let start = self.input.len();
        self.input.resize(start + READ_CHUNK, 0);
        let read = tokio::time::timeout_at(deadline, self.stream.read(&mut self.input[start..]));
        let n = match read.await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => 0,
            Err(_) => {
                self.input.truncate(start);
                return Err(self.why_late());
            }
        };
        self.input.truncate(start + n);
        if n == 0 {
            return Err(Stop::Closed);
        }
        Ok(())
    }

    /// The next command line, at most `limit` bytes with its line end.
    pub(crate) async fn line(&mut self, limit: usize) -> Result<Line, Stop> {
        let mut too_long = false;
        loop {
            if let Some(end) = self.input.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.input.drain(..=end).collect();
                if too_long || line.len() > limit {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Text(strip_line_end(&line).to_vec()));
            }
            if self.input.len() > limit {
                // Read through to the line end without keeping it.
                too_long = true;
                self.input.clear();
            }
            self.fill().await?;
        }
    }

    /// Receive message data up to the terminator line.
    pub(crate) async fn data(&mut self, data: &mut Data) -> Result<(), Stop> {
        loop {
            let mut used = 0;
            while let Some(end) = self.input[used..].iter().position(|&b| b == b'\n') {
                let line_end = used + end + 1;
                let done = data.line(&self.input[used..line_end]);
                used = line_end;
                if done {
                    self.input.drain(..used);
                    return Ok(());
                }
            }
            self.input.drain(..used);
            if self.input.len() >= DATA_PIECE {
                // Keep the last byte back: it may be the CR of the line end.
                let cut = self.input.len() - 1;
                data.piece(&self.input[..cut]);
                self.input.drain(..cut);
            }
            self.fill().await?;
        }
    }

    /// Forget what the client sent ahead: after STARTTLS nothing read in the clear may be
    /// taken as said under TLS (the command-injection attack on STARTTLS).
    pub(crate) fn discard_input(&mut self) {
        self.input.clear();
    }

    /// The stream, for the TLS upgrade.
    pub(crate) fn into_stream(self) -> Stream {
        self.stream
    }

    /// When the connection must end.
    pub(crate) fn ends_at(&self) -> Instant {
        self.ends_at
    }

    /// Replace the stream (after the TLS handshake), keeping the limits.
    pub(crate) fn with_stream(stream: Stream, idle: Duration, ends_at: Instant) -> Conn {
        Conn {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            idle,
            ends_at,
        }
    }

    /// Close the write side after the last reply.
    pub(crate) async fn close(mut self) {
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.stream.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(chunks: &[&[u8]], cap: usize) -> (Data, Vec<u8>) {
        // The line logic of `Conn::data` without a socket, on everything received at once.
        let mut data = Data::new(cap);
        let mut input = Vec::new();
        for chunk in [chunks.concat()] {
            input.extend_from_slice(&chunk);
            let mut used = 0;
            while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
                let line_end = used + end + 1;
                let done = data.line(&input[used..line_end]);
                used = line_end;
                if done {
                    input.drain(..used);
                    return (data, input);
                }
            }
            input.drain(..used);
        }
        panic!("no terminator")
    }

    #[test]
    fn dots_are_unstuffed_and_bare_lf_becomes_crlf() {
        let (data, rest) = receive(
            &[
                b"Subject: x\r\n\r\n..leading dot\r\n.\n",
                b"middle.\nQUIT\r\n",
            ],
            1000,
        );
        // `.\n` alone is the terminator; what follows is the next command.
        assert_eq!(data.kept, b"Subject: x\r\n\r\n.leading dot\r\n");
        assert_eq!(rest, b"middle.\nQUIT\r\n");
        assert!(!data.truncated);
    }

    #[test]
    fn past_the_cap_bytes_are_counted_not_kept() {
        let (data, _) = receive(&[b"0123456789\r\n", b"abcdef\r\n.\r\n"], 15);
        assert_eq!(data.kept, b"0123456789\r\nabc");
        assert_eq!(data.received, 20);
        assert!(data.truncated);
    }

    #[test]
    fn a_long_line_is_one_line_whatever_its_pieces() {
        let mut data = Data::new(1 << 20);
        data.piece(b".abc");
        data.piece(b".def");
        assert!(!data.line(b"ghi\r\n"));
        assert!(!data.line(b"..\r\n"));
        assert!(data.line(b".\r\n"));
        // Only the dot at the start of the line is a stuffing dot.
        assert_eq!(data.kept, b"abc.defghi\r\n.\r\n");
    }
}
