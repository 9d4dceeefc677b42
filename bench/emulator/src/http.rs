//! The emulators' HTTP/1.1 server: one thread per connection, on loopback only.
//!
//! Both emulators (SIS and Canvas) answer through [`Listening`]. Each accepted connection gets
//! its own thread, which reads a request, asks the emulator for the answer and writes it in one
//! write, then reads the next one (keep-alive). So every connection a client opens is served at
//! once, however many arrive together. tiny_http, used here before, hands connections to a pool
//! that starts four threads and queues a connection when none is seen waiting; a burst of
//! connections (a client starting eight workers) could leave some queued behind connections that
//! stay open for the whole run, so a fresh emulator served five of eight connections until the
//! client closed the others, and a first benchmark run took 25 s instead of 16 s.
//!
//! Invariants: a request's `arrived` is taken when its head has been read, so an emulator's
//! latency counts from there; bodies are read by `Content-Length` (the clients send none) and a
//! chunked body is refused with 501 and the connection closed; HTTP/1.0 and `Connection: close`
//! close the connection after the answer. Dropping [`Listening`] shuts every connection down and
//! joins every thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// A request as an emulator sees it.
pub(crate) struct Incoming {
    pub(crate) method: String,
    /// Path and query, as sent.
    pub(crate) url: String,
    /// Names in lower case, in the order sent.
    pub(crate) headers: Vec<(String, String)>,
    /// When its head had been read.
    pub(crate) arrived: Instant,
}

impl Incoming {
    /// The first value of a header (`name` in lower case).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An emulator's answer; `Content-Length` is added when it is written.
pub(crate) struct Outgoing {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

type Serve = dyn Fn(&Incoming, u16) -> Outgoing + Send + Sync;

/// The open connections: a handle to shut each down, and the thread answering it.
type Connections = Arc<Mutex<Vec<(TcpStream, JoinHandle<()>)>>>;

/// A loopback listener and the threads of its connections, until dropped.
pub(crate) struct Listening {
    pub(crate) port: u16,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    accepting: Option<JoinHandle<()>>,
    connections: Connections,
}

impl Listening {
    /// Listens on `address` (`127.0.0.1:0` picks a free port) and answers every request with
    /// `serve`, which is given the port too (for links back to this server).
    pub(crate) fn start(
        address: &str,
        serve: impl Fn(&Incoming, u16) -> Outgoing + Send + Sync + 'static,
    ) -> Listening {
        let listener = listener(address);
        let port = listener.local_addr().expect("a bound listener").port();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let connections = Connections::default();
        let serve: Arc<Serve> = Arc::new(serve);
        let accepting = {
            let (stop, accepted, connections) =
                (stop.clone(), accepted.clone(), connections.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let Ok(handle) = stream.try_clone() else {
                        continue;
                    };
                    let serve = serve.clone();
                    let thread = std::thread::spawn(move || converse(stream, port, &*serve));
                    let mut open = connections.lock().unwrap();
                    open.retain(|(_, thread)| !thread.is_finished());
                    open.push((handle, thread));
                }
            })
        };
        Listening {
            port,
            stop,
            accepted,
            accepting: Some(accepting),
            connections,
        }
    }

    /// The connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
        let open = std::mem::take(&mut *self.connections.lock().unwrap());
        for (stream, thread) in open {
            // Ends a read the connection's thread is blocked in; an answer being delayed is
            // still written (and fails) first.
            let _ = stream.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
}

/// A loopback listener whose connections have Nagle's algorithm off: an answer larger than a
/// segment would otherwise keep its tail until the client's delayed ACK, about 40 ms per
/// request, which would dominate the benchmark. Linux copies TCP_NODELAY from the listener to
/// the accepted sockets.
fn listener(address: &str) -> TcpListener {
    let listener = TcpListener::bind(address).expect("bind the emulator");
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let on: libc::c_int = 1;
        // SAFETY: the descriptor is an open socket owned by `listener`, and the option
        // value points to a live c_int of the length given.
        let result = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(
            result,
            0,
            "TCP_NODELAY: {}",
            std::io::Error::last_os_error()
        );
    }
    listener
}

/// Answers one connection's requests until the client closes it or asks to, then shuts it
/// down (the handle kept for `Drop` would otherwise hold it open, and a client reading to the
/// end would wait).
fn converse(stream: TcpStream, port: u16, serve: &Serve) {
    if let Ok(reading) = stream.try_clone() {
        answer_requests(BufReader::new(reading), &stream, port, serve);
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn answer_requests(
    mut reader: BufReader<TcpStream>,
    mut writer: &TcpStream,
    port: u16,
    serve: &Serve,
) {
    loop {
        let (answer, close) = match read_request(&mut reader) {
            Ok(Some(Head { request, close })) => (serve(&request, port), close),
            Ok(None) | Err(Unreadable::Closed) => return,
            Err(Unreadable::Refused(status)) => (
                Outgoing {
                    status,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
                true,
            ),
        };
        if writer.write_all(&wire(&answer, close)).is_err() || close {
            return;
        }
    }
}

struct Head {
    request: Incoming,
    /// The client asked for the connection to be closed after the answer.
    close: bool,
}

enum Unreadable {
    /// The connection broke or ended inside a request.
    Closed,
    /// A request this server does not take; answered with this status, then closed.
    Refused(u16),
}

/// The longest request line or header line taken, so a garbled stream cannot grow a line
/// without end.
const MAX_LINE: u64 = 64 * 1024;

/// Reads the next request (head, and a `Content-Length` body, discarded); `None` when the
/// client closed the connection between requests.
fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Head>, Unreadable> {
    let Some(request_line) = read_line(reader)? else {
        return Ok(None);
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(url), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Unreadable::Refused(400));
    };
    let (method, url) = (method.to_string(), url.to_string());
    let mut close = version != "HTTP/1.1";
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or(Unreadable::Closed)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Unreadable::Refused(400));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let arrived = Instant::now();
    let request = Incoming {
        method,
        url,
        headers,
        arrived,
    };
    match request.header("connection").map(str::to_ascii_lowercase) {
        Some(value) if value == "close" => close = true,
        Some(value) if value == "keep-alive" => close = false,
        _ => {}
    }
    if request.header("transfer-encoding").is_some() {
        return Err(Unreadable::Refused(501));
    }
    let length = match request.header("content-length").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(length)) => length,
        Some(Err(_)) => return Err(Unreadable::Refused(400)),
    };
    let copied = std::io::copy(&mut reader.take(length), &mut std::io::sink());
    if copied.ok() != Some(length) {
        return Err(Unreadable::Closed);
    }
    Ok(Some(Head { request, close }))
}

/// One line without its CRLF; `None` at the end of the stream before any byte of it.
fn read_line(reader: &mut BufReader<TcpStream>) -> Result<Option<String>, Unreadable> {
    let mut line = Vec::new();
    let read = reader
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .map_err(|_| Unreadable::Closed)?;
    if read == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(Unreadable::Refused(400));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| Unreadable::Refused(400))
}

/// An answer as written: status line, headers, `Content-Length`, body.
fn wire(answer: &Outgoing, close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(answer.body.len() + 256);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n",
        answer.status,
        reason(answer.status),
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&answer.body);
    out
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn echo_path() -> Listening {
        Listening::start("127.0.0.1:0", |request, _| Outgoing {
            status: 200,
            headers: vec![("X-Method".to_string(), request.method.clone())],
            body: request.url.clone().into_bytes(),
        })
    }

    /// A connection to `listening` that fails a read instead of hanging on it.
    fn connect(listening: &Listening) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", listening.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    #[test]
    fn every_connection_of_a_burst_is_answered_while_all_stay_open() {
        let listening = echo_path();
        let mut streams: Vec<TcpStream> = (0..16).map(|_| connect(&listening)).collect();
        for (n, stream) in streams.iter_mut().enumerate() {
            write!(stream, "GET /{n} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
        for (n, stream) in streams.iter_mut().enumerate() {
            let mut answer = [0u8; 512];
            let read = stream.read(&mut answer).expect("an answer, not a timeout");
            let answer = String::from_utf8_lossy(&answer[..read]);
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
            assert!(answer.ends_with(&format!("\r\n\r\n/{n}")), "{answer}");
        }
        assert_eq!(listening.accepted(), 16);
    }

    #[test]
    fn a_kept_alive_connection_answers_in_turn_and_http_1_0_ends_with_the_answer() {
        let listening = echo_path();
        let mut stream = connect(&listening);
        write!(
            stream,
            "GET /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzPOST /b?q=1 HTTP/1.1\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for (method, url) in [("GET", "/a"), ("POST", "/b?q=1")] {
            let mut head = String::new();
            while !head.ends_with("\r\n\r\n") {
                reader.read_line(&mut head).unwrap();
            }
            assert!(head.contains(&format!("X-Method: {method}\r\n")), "{head}");
            assert!(
                head.contains(&format!("Content-Length: {}\r\n", url.len())),
                "{head}"
            );
            let mut body = vec![0; url.len()];
            reader.read_exact(&mut body).unwrap();
            assert_eq!(body, url.as_bytes());
        }
        let mut old = connect(&listening);
        write!(old, "GET /old HTTP/1.0\r\n\r\n").unwrap();
        let mut whole = String::new();
        old.read_to_string(&mut whole)
            .expect("the end of the stream");
        assert!(whole.contains("Connection: close\r\n"), "{whole}");
        assert!(whole.ends_with("\r\n\r\n/old"), "{whole}");
    }

    #[test]
    fn a_chunked_body_is_refused_and_the_connection_closed() {
        let listening = echo_path();
        let mut stream = connect(&listening);
        write!(
            stream,
            "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        )
        .unwrap();
        let mut whole = String::new();
        stream.read_to_string(&mut whole).unwrap();
        assert!(
            whole.starts_with("HTTP/1.1 501 Not Implemented\r\n"),
            "{whole}"
        );
    }
}
