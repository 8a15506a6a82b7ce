//! A client connection as hyper sees it: closed when nothing moves in either direction for the
//! idle timeout while the registry waits on it (not while a handler works), and with hyper's own answers to request heads it
//! cannot parse (400, 414, 431, sent before any handler runs and with an empty body) replaced by
//! the API's JSON error.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// A TCP connection with an idle timeout and JSON bodies on hyper's automatic errors.
pub struct GuardedConn {
    inner: TcpStream,
    idle: Duration,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
    max_header_bytes: usize,
    /// Requests whose handler is running: no idle timeout then (a publish that hashes and
    /// validates a large module moves no byte for a while).
    busy: Busy,
    /// The JSON answer written instead of hyper's, and how much of it is out.
    replacement: Option<(Vec<u8>, usize)>,
}

impl GuardedConn {
    pub fn new(inner: TcpStream, idle: Duration, max_header_bytes: usize, busy: Busy) -> Self {
        let now = Instant::now();
        GuardedConn {
            inner,
            idle,
            last_progress: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
            max_header_bytes,
            busy,
            replacement: None,
        }
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Called when the socket is not ready: an error once the connection has been idle too long.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.busy.is_busy() {
            // The answer's first write counts as progress and restarts the clock.
            self.last_progress = Instant::now();
            return Poll::Pending;
        }
        let deadline = self.last_progress + self.idle;
        // Reset lazily: progress only records a time, the timer moves when the socket blocks.
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("nothing sent or received for {:?}", self.idle),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Write out the replacement answer, if any.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    *written += n;
                    self.progress();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    ready!(self.check_idle(cx))?;
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// If `head` is hyper's own answer to an unparsable request, replace it. Returns whether it
    /// did (then hyper's bytes are swallowed).
    fn replace_automatic_error(&mut self, head: &[u8]) -> bool {
        if self.replacement.is_some() {
            return true;
        }
        let Some(status) = automatic_error(head) else {
            return false;
        };
        self.replacement = Some((json_answer(status, self.max_header_bytes), 0));
        true
    }
}

/// Counts a connection's requests whose handler is running.
#[derive(Debug, Clone, Default)]
pub struct Busy(Arc<AtomicUsize>);

impl Busy {
    /// Mark a handler running until the returned guard drops.
    pub fn enter(&self) -> BusyGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        BusyGuard(self.clone())
    }

    fn is_busy(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// Held while a handler runs.
#[derive(Debug)]
pub struct BusyGuard(Busy);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        (self.0).0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The status of `head` when it is hyper's automatic answer to a request head it could not
/// parse: 400, 414 or 431 with `content-length: 0`. The registry's own answers with those
/// statuses always carry a JSON body, so they never match.
pub fn automatic_error(head: &[u8]) -> Option<StatusCode> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let status = match rest.get(..4)? {
        b"400 " => StatusCode::BAD_REQUEST,
        b"414 " => StatusCode::URI_TOO_LONG,
        b"431 " => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let fields = head[..end + 2].to_ascii_lowercase();
    let empty = fields
        .windows(b"\r\ncontent-length: 0\r\n".len())
        .any(|w| w == b"\r\ncontent-length: 0\r\n");
    empty.then_some(status)
}

/// The complete HTTP answer sent instead of hyper's, with the API's JSON error body.
pub fn json_answer(status: StatusCode, max_header_bytes: usize) -> Vec<u8> {
    let error = match status {
        StatusCode::URI_TOO_LONG => ApiError::new(status, "uri_too_long", "the URL is too long"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ApiError::new(
            status,
            "headers_too_large",
            format!(
                "the request line and headers are limited to {max_header_bytes} bytes and 100 fields"
            ),
        ),
        _ => ApiError::new(
            status,
            "bad_request",
            "malformed request line, header or Content-Length",
        ),
    };
    let body = error.body().to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl AsyncRead for GuardedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.progress();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(this.check_idle(cx))?;
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replace_automatic_error(buf) {
            // Accepted whole: the replacement goes out here or on flush.
            return match this.poll_replacement(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(buf.len())),
            };
        }
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(this.check_idle(cx))?;
                Poll::Pending
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
        if this.replace_automatic_error(first) {
            let total = bufs.iter().map(|b| b.len()).sum();
            return match this.poll_replacement(cx) {
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                _ => Poll::Ready(Ok(total)),
            };
        }
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    this.progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(this.check_idle(cx))?;
                Poll::Pending
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_empty_parse_error_answers_are_replaced() {
        let hyper_431 =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        assert_eq!(
            automatic_error(hyper_431),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_error(hyper_400), Some(StatusCode::BAD_REQUEST));
        for ours in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 57\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n",
            b"\0asm HTTP/1.1 400 ",
            b"",
        ] {
            assert_eq!(automatic_error(ours), None, "{}", String::from_utf8_lossy(ours));
        }
    }

    #[test]
    fn the_replacement_is_a_complete_json_answer() {
        let answer = String::from_utf8(json_answer(StatusCode::URI_TOO_LONG, 65536)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("connection: close"));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "uri_too_long");
    }
}
