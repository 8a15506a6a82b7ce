//! Request bodies as the handlers see them: every interval must bring a minimum number of bytes,
//! so a client trickling an upload cannot hold a connection for ever, while a slow but steady
//! upload takes as long as it needs (a rate, never a total deadline).

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// Why a request body stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent less than the minimum within one interval.
    #[error("the client sent fewer than {min_bytes} body bytes in {interval:?}")]
    TooSlow { min_bytes: u64, interval: Duration },
    /// The connection failed or the body was malformed.
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

impl BodyError {
    /// Whether the error that ended a body (as a handler sees it) is a too slow client.
    pub fn is_too_slow(error: &axum::Error) -> bool {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = source {
            if matches!(e.downcast_ref(), Some(BodyError::TooSlow { .. })) {
                return true;
            }
            source = e.source();
        }
        false
    }
}

/// A body that fails with [`BodyError::TooSlow`] when, while the registry waits for it, an
/// interval passes with fewer than `min_bytes` received.
pub struct RateGuarded<B> {
    inner: B,
    min_bytes: u64,
    interval: Duration,
    /// Bytes received in the current interval.
    received: u64,
    /// The end of the current interval; starts when the body is first read, so a handler that
    /// never reads the body arms no timer.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> RateGuarded<B> {
    /// Guard `inner`: at least `min_bytes` in every `interval`.
    pub fn new(inner: B, min_bytes: u64, interval: Duration) -> Self {
        RateGuarded {
            inner,
            min_bytes,
            interval,
            received: 0,
            deadline: None,
        }
    }
}

impl<B> Body for RateGuarded<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let interval = this.interval;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received >= this.min_bytes {
                        this.received = 0;
                        deadline.as_mut().reset(Instant::now() + interval);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            // Only time spent waiting on the client counts: data that is there when the
            // registry comes back from the disk is taken above, whatever the clock says.
            Poll::Pending => match deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::TooSlow {
                    min_bytes: this.min_bytes,
                    interval,
                }))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
