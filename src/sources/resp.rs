//! A RESP2 reader for the one reply the live run reads in bulk: XREADGROUP's entries.
//!
//! The redis crate turns every reply into its generic `Value` through a parser-combinator decoder,
//! about 0.3 µs per value. A read of 2,048 bar messages is some 31,000 values, 10 ms of a worker's
//! time before anything is decided (measured 2026-12-06). This reader parses the reply's bytes in
//! one pass straight into [`Entry`]s. It speaks only what it needs: the handshake (AUTH, SELECT)
//! and commands the redis crate packs; every other command stays with the redis crate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::entry::{Entry, Fields};

/// What went wrong on the raw connection.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    /// The connection failed or timed out (reconnect and retry).
    #[error("redis connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server answered with an error.
    #[error("redis: {code}: {message}")]
    Server {
        /// The error's first word (`NOGROUP`, `LOADING`, `ERR`, ...).
        code: String,
        /// The rest of its line.
        message: String,
    },
    /// The bytes are not the reply expected here.
    #[error("redis reply: {what}")]
    Protocol {
        /// What was wrong.
        what: String,
    },
    /// The URL names an address this reader does not speak to (TLS).
    #[error("redis: {what} is not supported by the stream reader")]
    Unsupported {
        /// What.
        what: &'static str,
    },
}

impl RespError {
    /// Whether a reconnect or a short wait cures it: a lost connection, or a server still
    /// loading its data after a restart.
    pub fn transient(&self) -> bool {
        match self {
            RespError::Io(_) => true,
            RespError::Server { code, .. } => code == "LOADING",
            _ => false,
        }
    }
}

/// One reply, as RESP2 sends it.
#[derive(Debug, PartialEq)]
enum Reply {
    Simple(String),
    Int(i64),
    /// A bulk string (`None`: the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// An array (`None`: the null array).
    Array(Option<Vec<Reply>>),
}

/// Parses one reply at the start of `buf`: the reply and the bytes it took, or `None` while more
/// bytes are needed (as [`parse_entries`]). A reply that arrives in pieces is first only walked
/// ([`whole`]), so its values are built once, when all of it is here.
fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, RespError> {
    let mut at = 0;
    if !whole(buf, &mut at)? {
        return Ok(None);
    }
    at = 0;
    Ok(value(buf, &mut at)?.map(|r| (r, at)))
}

/// Walks one reply from `*at` without building it: whether all of it is in `buf`.
fn whole(buf: &[u8], at: &mut usize) -> Result<bool, RespError> {
    let Some(&kind) = buf.get(*at) else {
        return Ok(false);
    };
    *at += 1;
    let Some(head) = line(buf, at) else {
        return Ok(false);
    };
    match kind {
        b'$' => {
            let n = int(head)?;
            if n >= 0 {
                *at += n as usize + 2;
            }
            Ok(*at <= buf.len())
        }
        b'*' => {
            for _ in 0..int(head)?.max(0) {
                if !whole(buf, at)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        // Errors, simple strings, integers and unknown types: the parse says what they are.
        _ => Ok(true),
    }
}

/// The line from `*at` to its CRLF (`None`: not all here yet).
fn line<'a>(buf: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let rest = buf.get(*at..)?;
    let mut from = 0;
    loop {
        let cr = from + rest.get(from..)?.iter().position(|&b| b == b'\r')?;
        if rest.get(cr + 1) == Some(&b'\n') {
            *at += cr + 2;
            return Some(&rest[..cr]);
        }
        if cr + 1 >= rest.len() {
            return None;
        }
        from = cr + 1;
    }
}

/// A length or integer line: an optional `-` and at most 18 digits (no `i64` overflows).
fn int(text: &[u8]) -> Result<i64, RespError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let bad = || RespError::Protocol {
        what: format!("not a length: {:?}", String::from_utf8_lossy(text)),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(bad());
    }
    let mut n = 0i64;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(bad());
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Ok(if negative { -n } else { n })
}

fn value(buf: &[u8], at: &mut usize) -> Result<Option<Reply>, RespError> {
    let Some(&kind) = buf.get(*at) else {
        return Ok(None);
    };
    *at += 1;
    let Some(head) = line(buf, at) else {
        return Ok(None);
    };
    match kind {
        b'+' => Ok(Some(Reply::Simple(
            String::from_utf8_lossy(head).into_owned(),
        ))),
        b'-' => {
            let text = String::from_utf8_lossy(head);
            let (code, message) = text.split_once(' ').unwrap_or((&text, ""));
            Err(RespError::Server {
                code: code.to_string(),
                message: message.to_string(),
            })
        }
        b':' => Ok(Some(Reply::Int(int(head)?))),
        b'$' => {
            let n = int(head)?;
            if n < 0 {
                return Ok(Some(Reply::Bulk(None)));
            }
            Ok(bulk_body(buf, at, n as usize)?.map(|b| Reply::Bulk(Some(b.to_vec()))))
        }
        b'*' => {
            let n = int(head)?;
            if n < 0 {
                return Ok(Some(Reply::Array(None)));
            }
            // Not more elements than bytes left could hold: a corrupt length allocates nothing.
            let mut items = Vec::with_capacity((n as usize).min(buf.len() - *at));
            for _ in 0..n {
                match value(buf, at)? {
                    Some(v) => items.push(v),
                    None => return Ok(None),
                }
            }
            Ok(Some(Reply::Array(Some(items))))
        }
        other => Err(RespError::Protocol {
            what: format!("unknown reply type {:?}", other as char),
        }),
    }
}

/// The body of a bulk string of `n` bytes at `*at` (past its header), and past it (`None`: not
/// all of it is here).
fn bulk_body<'a>(buf: &'a [u8], at: &mut usize, n: usize) -> Result<Option<&'a [u8]>, RespError> {
    let Some(body) = buf.get(*at..*at + n + 2) else {
        return Ok(None);
    };
    if &body[n..] != b"\r\n" {
        return Err(RespError::Protocol {
            what: "a bulk string without its CRLF".into(),
        });
    }
    *at += n + 2;
    Ok(Some(&body[..n]))
}

/// A reply that is not the shape XREADGROUP answers with.
fn shape(what: &str) -> RespError {
    RespError::Protocol {
        what: format!("XREADGROUP: {what}"),
    }
}

/// XREADGROUP's reply as entries: `[[stream, [[id, [field, value, ...]], ...]], ...]`, a null
/// array when nothing came; an entry whose fields are null was trimmed from the stream. Read
/// straight from the bytes once [`whole`] found all of them here (`None` otherwise), each entry's
/// fields into one [`Fields`]: no reply tree is built.
fn parse_entries(buf: &[u8]) -> Result<Option<(Vec<Entry>, usize)>, RespError> {
    let mut end = 0;
    if !whole(buf, &mut end)? {
        return Ok(None);
    }
    let buf = &buf[..end];
    let mut at = 0;
    let out = entries_at(buf, &mut at)?;
    Ok(Some((out, end)))
}

fn entries_at(buf: &[u8], at: &mut usize) -> Result<Vec<Entry>, RespError> {
    let Some(streams) = array(buf, at).map_err(|what| shape(&what))? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for _ in 0..streams {
        let pair = array(buf, at)
            .ok()
            .flatten()
            .ok_or_else(|| shape("a stream that is not [name, entries]"))?;
        if pair < 2 {
            return Err(shape("a stream without entries"));
        }
        skip(buf, at)?;
        let list = array(buf, at).map_err(|_| shape("a stream without entries"))?;
        for _ in 0..list.unwrap_or(0) {
            out.push(entry_at(buf, at)?);
        }
        for _ in 2..pair {
            skip(buf, at)?;
        }
    }
    Ok(out)
}

/// One `[id, fields]` of XREADGROUP's reply.
fn entry_at(buf: &[u8], at: &mut usize) -> Result<Entry, RespError> {
    let parts = array(buf, at)
        .ok()
        .flatten()
        .ok_or_else(|| shape("an entry that is not [id, fields]"))?;
    if parts == 0 {
        return Err(shape("an entry without id"));
    }
    let id = match piece(buf, at)? {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => return Err(shape("an entry without id")),
    };
    let fields = if parts >= 2 {
        fields_at(buf, at)?
    } else {
        None
    };
    for _ in 2..parts {
        skip(buf, at)?;
    }
    Ok(Entry { id, fields })
}

/// An entry's `[field, value, ...]` (`None`: a null array, or not an array); a field without its
/// value gets the empty one.
fn fields_at(buf: &[u8], at: &mut usize) -> Result<Option<Fields>, RespError> {
    let n = match array(buf, at) {
        Ok(Some(n)) => n,
        Ok(None) => return Ok(None),
        Err(_) => {
            skip(buf, at)?;
            return Ok(None);
        }
    };
    let mut fields = Fields::with_capacity(n.div_ceil(2).min(buf.len()), 0);
    let mut k = 0;
    while k < n {
        let name = piece(buf, at)?.unwrap_or_default();
        let value = if k + 1 < n {
            piece(buf, at)?.unwrap_or_default()
        } else {
            &[]
        };
        fields.push_bytes(name, value);
        k += 2;
    }
    Ok(Some(fields))
}

/// The length of the array at `*at` (`None`: the null array), past its header. `Err` with what
/// is there instead, the position left unchanged.
fn array(buf: &[u8], at: &mut usize) -> Result<Option<usize>, String> {
    if buf.get(*at) != Some(&b'*') {
        let mut probe = *at;
        return Err(match value(buf, &mut probe) {
            Ok(Some(r)) => format!("{r:?}"),
            Ok(None) => "nothing".into(),
            Err(e) => e.to_string(),
        });
    }
    let mut next = *at + 1;
    let head = line(buf, &mut next).ok_or("a cut array header")?;
    let n = int(head).map_err(|e| e.to_string())?;
    *at = next;
    Ok(usize::try_from(n).ok())
}

/// The bytes of the text value at `*at`, past it: a bulk string's body, a simple string's or an
/// integer's line (`None`: a null bulk string, or an array, which is skipped).
fn piece<'a>(buf: &'a [u8], at: &mut usize) -> Result<Option<&'a [u8]>, RespError> {
    let protocol = |what: &str| RespError::Protocol { what: what.into() };
    match buf.get(*at) {
        Some(b'$') => {
            *at += 1;
            let head = line(buf, at).ok_or_else(|| protocol("a cut bulk header"))?;
            let Ok(n) = usize::try_from(int(head)?) else {
                return Ok(None);
            };
            bulk_body(buf, at, n)?
                .map(Some)
                .ok_or_else(|| protocol("a cut bulk string"))
        }
        Some(b'+' | b':') => {
            *at += 1;
            line(buf, at)
                .map(Some)
                .ok_or_else(|| protocol("a cut line"))
        }
        _ => {
            skip(buf, at)?;
            Ok(None)
        }
    }
}

/// Steps over the value at `*at`, checking it as [`value`] does.
fn skip(buf: &[u8], at: &mut usize) -> Result<(), RespError> {
    match value(buf, at)? {
        Some(_) => Ok(()),
        None => Err(RespError::Protocol {
            what: "a cut reply".into(),
        }),
    }
}

/// The socket under a raw connection.
enum Socket {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Socket::Tcp(s) => s,
            #[cfg(unix)]
            Socket::Unix(s) => s,
        }
    }

    fn set_read_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(Some(t)),
            #[cfg(unix)]
            Socket::Unix(s) => s.set_read_timeout(Some(t)),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 1 << 16;

/// A connection that sends packed commands and reads their replies with this module's parser.
pub struct RawConn {
    socket: Socket,
    /// Bytes read and not yet parsed: the rest of a reply, or the start of the next one of a
    /// pipelined pair.
    buf: Vec<u8>,
    /// Replies asked for and not yet read.
    outstanding: usize,
}

impl RawConn {
    /// Connects to what `info` names and authenticates and selects its database as the redis
    /// crate would.
    ///
    /// # Errors
    /// The server unreachable within `timeout`, a refused AUTH or SELECT, or a TLS address.
    pub fn open(info: &redis::ConnectionInfo, timeout: Duration) -> Result<RawConn, RespError> {
        let socket = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => {
                let mut last = None;
                let mut socket = None;
                for a in std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))? {
                    match TcpStream::connect_timeout(&a, timeout) {
                        Ok(s) => {
                            socket = Some(s);
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                let s = socket.ok_or_else(|| {
                    last.unwrap_or_else(|| std::io::Error::other("no address to connect to"))
                })?;
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(Duration::from_secs(10)))?;
                Socket::Tcp(s)
            }
            #[cfg(unix)]
            redis::ConnectionAddr::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path)?;
                s.set_write_timeout(Some(Duration::from_secs(10)))?;
                Socket::Unix(s)
            }
            _ => return Err(RespError::Unsupported { what: "TLS" }),
        };
        let mut c = RawConn {
            socket,
            buf: Vec::with_capacity(1 << 16),
            outstanding: 0,
        };
        let r = info.redis_settings();
        if let Some(password) = r.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = r.username() {
                auth.arg(user);
            }
            auth.arg(password);
            c.request(&auth, Duration::from_secs(10))?;
        }
        if r.db() != 0 {
            c.request(redis::cmd("SELECT").arg(r.db()), Duration::from_secs(10))?;
        }
        Ok(c)
    }

    /// Sends `cmd` and reads its reply, waiting up to `timeout` for it.
    fn request(&mut self, cmd: &redis::Cmd, timeout: Duration) -> Result<Reply, RespError> {
        self.send(cmd)?;
        self.receive(timeout)
    }

    /// Sends `cmd` without reading its reply.
    fn send(&mut self, cmd: &redis::Cmd) -> Result<(), RespError> {
        self.socket.io().write_all(&cmd.get_packed_command())?;
        self.outstanding += 1;
        Ok(())
    }

    /// Reads the reply to the oldest command not answered yet, waiting up to `timeout` for it.
    /// Bytes past it stay for the next reply when one is still expected; otherwise they are a
    /// protocol error.
    fn receive(&mut self, timeout: Duration) -> Result<Reply, RespError> {
        self.receive_as(timeout, parse)
    }

    /// As [`RawConn::receive`], the reply built by `build` (`None`: not all of it is here).
    fn receive_as<T>(
        &mut self,
        timeout: Duration,
        build: impl Fn(&[u8]) -> Result<Option<(T, usize)>, RespError>,
    ) -> Result<T, RespError> {
        self.socket.set_read_timeout(timeout)?;
        loop {
            if self.buf.first() == Some(&b'-') {
                // An error reply is whole at its line's end; it is taken off like any reply, so
                // the connection stays in step with its requests.
                let mut at = 1;
                if line(&self.buf, &mut at).is_some() {
                    let err = parse(&self.buf[..at]).err();
                    self.buf.drain(..at);
                    self.outstanding = self.outstanding.saturating_sub(1);
                    return Err(err.unwrap_or_else(|| RespError::Protocol {
                        what: "an error reply that did not parse".into(),
                    }));
                }
            } else if self.buf.ends_with(b"\r\n")
                // A whole reply ends with CRLF: a buffer that does not is not walked again.
                && let Some((reply, used)) = build(&self.buf)?
            {
                self.buf.drain(..used);
                self.outstanding = self.outstanding.saturating_sub(1);
                if self.outstanding == 0 && !self.buf.is_empty() {
                    return Err(RespError::Protocol {
                        what: format!("{} bytes after the reply", self.buf.len()),
                    });
                }
                return Ok(reply);
            }
            let start = self.buf.len();
            self.buf.resize(start + READ_CHUNK, 0);
            let n = self.socket.io().read(&mut self.buf[start..]);
            self.buf.truncate(start + *n.as_ref().unwrap_or(&0));
            if n? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }

    /// Sends an XREADGROUP without waiting for its answer ([`RawConn::receive_entries`] takes
    /// it).
    ///
    /// # Errors
    /// The connection failed.
    pub fn send_read(&mut self, read: &redis::Cmd) -> Result<(), RespError> {
        self.send(read)
    }

    /// This connection's id on the server (`CLIENT ID`), which `CLIENT UNBLOCK` names.
    ///
    /// # Errors
    /// As [`RespError`]; a server that refuses `CLIENT ID` (an ACL) answers a server error.
    pub fn client_id(&mut self) -> Result<i64, RespError> {
        match self.request(redis::cmd("CLIENT").arg("ID"), Duration::from_secs(10))? {
            Reply::Int(id) => Ok(id),
            other => Err(RespError::Protocol {
                what: format!("CLIENT ID: {other:?}"),
            }),
        }
    }

    /// Sends `score` (a `ZSCORE`) and `read` (a blocking XREADGROUP) in one write, so the server
    /// runs them back to back: what the score says held when the read began to wait. Their
    /// replies follow: [`RawConn::receive_score`], then [`RawConn::receive_entries`].
    ///
    /// # Errors
    /// The connection failed.
    pub fn send_watched(&mut self, score: &redis::Cmd, read: &redis::Cmd) -> Result<(), RespError> {
        let mut bytes = score.get_packed_command();
        bytes.extend_from_slice(&read.get_packed_command());
        self.socket.io().write_all(&bytes)?;
        self.outstanding += 2;
        Ok(())
    }

    /// The reply to a `ZSCORE` sent by [`RawConn::send_watched`] (`None`: no such member).
    ///
    /// # Errors
    /// As [`RespError`]; after one, the connection must be dropped.
    pub fn receive_score(&mut self, timeout: Duration) -> Result<Option<f64>, RespError> {
        match self.receive(timeout)? {
            Reply::Bulk(None) => Ok(None),
            Reply::Bulk(Some(b)) => std::str::from_utf8(&b)
                .ok()
                .and_then(|t| t.parse().ok())
                .map(Some)
                .ok_or_else(|| RespError::Protocol {
                    what: format!("ZSCORE: {:?}", String::from_utf8_lossy(&b)),
                }),
            other => Err(RespError::Protocol {
                what: format!("ZSCORE: {other:?}"),
            }),
        }
    }

    /// The entries of the XREADGROUP sent last, waiting up to `timeout` for them.
    ///
    /// # Errors
    /// As [`RespError`]; after one, the connection must be dropped.
    pub fn receive_entries(&mut self, timeout: Duration) -> Result<Vec<Entry>, RespError> {
        self.receive_as(timeout, parse_entries)
    }

    /// Runs an XREADGROUP built by the caller and returns its entries.
    ///
    /// # Errors
    /// As [`RespError`]; after one, the connection must be dropped (a reply may be half read).
    pub fn xreadgroup(
        &mut self,
        cmd: &redis::Cmd,
        timeout: Duration,
    ) -> Result<Vec<Entry>, RespError> {
        self.send(cmd)?;
        self.receive_entries(timeout)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    /// A reply with a bar entry, a trimmed one and a symbol with '/' and '.'.
    fn reply() -> String {
        let mut r = String::from("*1\r\n*2\r\n");
        r += &bulk("fdp:stream");
        r += "*3\r\n";
        r += "*2\r\n";
        r += &bulk("1700000000000-0");
        r += "*4\r\n";
        r += &bulk("ticker");
        r += &bulk("EUR/USD");
        r += &bulk("close");
        r += &bulk("1.08735");
        r += "*2\r\n";
        r += &bulk("1700000000000-1");
        r += "*-1\r\n";
        r += "*2\r\n";
        r += &bulk("1700000000001-0");
        r += "*2\r\n";
        r += &bulk("ticker");
        r += &bulk("BRK.B");
        r
    }

    #[test]
    fn an_xreadgroup_reply_becomes_entries_with_trimmed_ones_kept() {
        let r = reply();
        let (e, used) = parse_entries(r.as_bytes())
            .expect("parses")
            .expect("complete");
        assert_eq!(used, r.len());
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].id, "1700000000000-0");
        assert_eq!(
            e[0].fields,
            Some(
                [("ticker", "EUR/USD"), ("close", "1.08735")]
                    .into_iter()
                    .collect()
            )
        );
        assert_eq!(e[1].fields, None, "a trimmed entry");
        assert_eq!(e[2].map().get("ticker"), Some(&"BRK.B"));
    }

    #[test]
    fn every_cut_of_a_reply_is_incomplete_never_an_error() {
        let r = reply();
        for cut in 0..r.len() {
            assert!(
                matches!(parse(&r.as_bytes()[..cut]), Ok(None)),
                "cut at {cut}"
            );
            assert!(
                matches!(parse_entries(&r.as_bytes()[..cut]), Ok(None)),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn nothing_read_errors_and_garbage_are_told_apart() {
        let (e, _) = parse_entries(b"*-1\r\n").expect("null").expect("complete");
        assert!(e.is_empty());
        match parse(b"-NOGROUP No such key 'k' or consumer group 'g'\r\n") {
            Err(e @ RespError::Server { .. }) => {
                assert!(!e.transient());
                assert!(
                    e.to_string().starts_with("redis: NOGROUP: No such key"),
                    "{e}"
                );
            }
            _ => panic!("a server error"),
        }
        assert!(matches!(
            parse(b"-LOADING Redis is loading the dataset in memory\r\n"),
            Err(e) if e.transient()
        ));
        assert!(matches!(parse(b"?x\r\n"), Err(RespError::Protocol { .. })));
        assert!(matches!(parse(b"$x\r\n"), Err(RespError::Protocol { .. })));
        assert!(matches!(
            parse(b"$2\r\nabcd"),
            Err(RespError::Protocol { .. })
        ));
        // A huge declared length with few bytes behind it waits for them, allocating nothing.
        assert!(matches!(parse(b"*2000000000\r\n:1\r\n"), Ok(None)));
        assert!(parse_entries(b"+OK\r\n").is_err(), "not XREADGROUP's shape");
        assert!(
            parse_entries(b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n:5\r\n").is_err(),
            "an entry that is not [id, fields]"
        );
        assert!(
            parse_entries(
                b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nk\r\n-ERR x\r\n"
            )
            .is_err(),
            "an error inside the reply"
        );
    }

    #[test]
    fn a_non_utf8_value_is_kept_lossily_for_the_dead_letter() {
        let mut r =
            b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nk\r\n$2\r\n".to_vec();
        r.extend_from_slice(&[0xff, b'a']);
        r.extend_from_slice(b"\r\n");
        let (e, _) = parse_entries(&r).expect("parses").expect("complete");
        assert_eq!(e[0].map().get("k"), Some(&"\u{fffd}a"));
    }

    /// A server on loopback that answers the first request with `reply`, whole, in one write.
    fn answering(reply: &'static [u8]) -> RawConn {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut req = [0u8; 256];
            let _ = s.read(&mut req);
            let _ = s.write_all(reply);
            // Keep the socket open until the client is done.
            let _ = s.read(&mut req);
        });
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("url");
        RawConn::open(client.get_connection_info(), Duration::from_secs(5)).expect("connects")
    }

    #[test]
    fn pipelined_replies_are_read_one_by_one_and_an_error_reply_is_taken_off() {
        let mut c = answering(b"$10\r\n1700000000\r\n*-1\r\n");
        let score = redis::cmd("ZSCORE");
        let read = redis::cmd("XREADGROUP");
        c.send_watched(&score, &read).expect("sent");
        let t = Duration::from_secs(5);
        assert_eq!(c.receive_score(t).expect("score"), Some(1.7e9));
        assert!(c.receive_entries(t).expect("entries").is_empty());
        let mut c = answering(b"-NOPERM no client for you\r\n:42\r\n");
        c.outstanding = 1;
        c.send(&redis::cmd("CLIENT")).expect("sent");
        match c.receive(t) {
            Err(RespError::Server { code, .. }) => assert_eq!(code, "NOPERM"),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.receive(t).expect("the next reply"), Reply::Int(42));
    }

    /// An entry's id and fields (`None`: trimmed).
    type Sent = (String, Option<Vec<(String, String)>>);

    /// Entries as XREADGROUP would send them.
    fn encode(entries: &[Sent]) -> Vec<u8> {
        let mut r = format!("*1\r\n*2\r\n{}*{}\r\n", bulk("k"), entries.len());
        for (id, fields) in entries {
            r += "*2\r\n";
            r += &bulk(id);
            match fields {
                None => r += "*-1\r\n",
                Some(f) => {
                    r += &format!("*{}\r\n", f.len() * 2);
                    for (k, v) in f {
                        r += &bulk(k);
                        r += &bulk(v);
                    }
                }
            }
        }
        r.into_bytes()
    }

    proptest! {
        /// Whatever the values hold (CR, LF, '$', '*', any text) and wherever the bytes are cut,
        /// a reply reads back as the entries sent, and every cut before its end is incomplete.
        #[test]
        fn entries_read_back_exactly_wherever_the_reply_is_cut(
            sent in prop::collection::vec(
                (
                    "[0-9]{1,13}-[0-9]{1,3}",
                    prop::option::of(prop::collection::vec((".{0,8}", "[\\PC\r\n$*:+-]{0,12}"), 0..8)),
                ),
                0..20,
            ),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode(&sent);
            let at = cut.index(bytes.len());
            prop_assert!(matches!(parse_entries(&bytes[..at]), Ok(None)));
            let Ok(Some((got, used))) = parse_entries(&bytes) else {
                return Err(TestCaseError::fail("a whole reply did not parse"));
            };
            prop_assert_eq!(used, bytes.len());
            let got: Vec<Sent> = got
                .into_iter()
                .map(|e| {
                    let fields = e.fields.map(|f| {
                        f.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
                    });
                    (e.id, fields)
                })
                .collect();
            prop_assert_eq!(got, sent);
        }
    }
}
