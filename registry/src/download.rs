//! Blob downloads streamed from disk: ETag, digests, `Range` and `If-None-Match`.

use std::io::{self, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::io::ReaderStream;

use crate::names::Digest;

/// Read size when streaming a file: large reads keep syscalls per byte low.
const STREAM_CHUNK: usize = 256 * 1024;

/// `Cache-Control` of URLs whose content can never change (they name the digest).
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of name+version URLs: immutable too, but a short TTL keeps a mistyped
/// deployment from being cached for a year.
pub const SHORT: &str = "public, max-age=300";

/// Which part of a file a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No (usable) range: the whole file.
    Full,
    /// Bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// A valid range that lies outside the file: 416.
    Unsatisfiable,
}

/// Decide a `Range` header for a file of `size` bytes. Multiple ranges and malformed headers
/// are ignored (the whole file is sent), as RFC 9110 allows.
pub fn parse_range(value: &str, size: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (digits(first), digits(last)) {
        (true, _) => {
            let Ok(start) = first.parse::<u64>() else {
                return RangeAnswer::Unsatisfiable;
            };
            let end = match last {
                "" => u64::MAX,
                _ if digits(last) => last.parse::<u64>().unwrap_or(u64::MAX),
                _ => return RangeAnswer::Full,
            };
            if end < start {
                return RangeAnswer::Full;
            }
            if start >= size {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Partial {
                start,
                end: end.min(size - 1),
            }
        }
        (false, true) if first.is_empty() => {
            let suffix = last.parse::<u64>().unwrap_or(u64::MAX);
            if suffix == 0 || size == 0 {
                return RangeAnswer::Unsatisfiable;
            }
            RangeAnswer::Partial {
                start: size.saturating_sub(suffix),
                end: size - 1,
            }
        }
        _ => RangeAnswer::Full,
    }
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, as RFC 9110 asks).
pub fn none_match(value: &str, etag: &str) -> bool {
    value.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// The ETag of a blob.
pub fn etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

/// An RFC 9530 digest field value: `sha-256=:<base64>:`.
pub fn digest_field(digest: &Digest) -> String {
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(digest.bytes())
    )
}

/// How to answer for one blob.
#[derive(Debug, Clone)]
pub struct Serve<'a> {
    pub digest: &'a Digest,
    pub content_type: &'static str,
    pub cache_control: &'static str,
    /// More response headers (e.g. `docker-content-digest`).
    pub extra: Vec<(HeaderName, String)>,
    /// Counts the body bytes actually sent.
    pub bytes_served: Arc<AtomicU64>,
}

/// Answer a GET or HEAD for the file at `path`: `Ok(None)` when there is no such file.
pub async fn serve_file(
    path: &Path,
    serve: Serve<'_>,
    request: &HeaderMap,
) -> io::Result<Option<Response>> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = file.metadata().await?.len();
    let etag = etag(serve.digest);
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, serve.cache_control)
        .header(header::ACCEPT_RANGES, "bytes")
        .header("repr-digest", digest_field(serve.digest));
    for (name, value) in &serve.extra {
        builder = builder.header(name, value);
    }
    let header_str = |name: header::HeaderName| request.get(name).and_then(|v| v.to_str().ok());
    if header_str(header::IF_NONE_MATCH).is_some_and(|v| none_match(v, &etag)) {
        return Ok(Some(
            builder
                .status(StatusCode::NOT_MODIFIED)
                .body(Body::empty())
                .map_err(io::Error::other)?,
        ));
    }
    // A range applies only to the representation the client already holds part of.
    let if_range_ok = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match header_str(header::RANGE) {
        Some(value) if if_range_ok => parse_range(value, size),
        _ => RangeAnswer::Full,
    };
    builder = builder.header(header::CONTENT_TYPE, serve.content_type);
    let (status, start, len) = match range {
        RangeAnswer::Full => {
            builder = builder.header("content-digest", digest_field(serve.digest));
            (StatusCode::OK, 0, size)
        }
        RangeAnswer::Partial { start, end } => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            return Ok(Some(
                builder
                    .status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                    .body(Body::empty())
                    .map_err(io::Error::other)?,
            ));
        }
    };
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    let counter = serve.bytes_served;
    let stream = ReaderStream::with_capacity(file.take(len), STREAM_CHUNK).inspect(move |chunk| {
        if let Ok(bytes) = chunk {
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    });
    let response = builder
        .status(status)
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(stream))
        .map_err(io::Error::other)?;
    Ok(Some(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(
            parse_range("bytes=90-", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=90-1000", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        for ignored in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "0-1",
        ] {
            assert_eq!(parse_range(ignored, 100), Full, "{ignored}");
        }
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        let tag = "\"sha256:ab\"";
        assert!(none_match(tag, tag));
        assert!(none_match("\"x\", W/\"sha256:ab\"", tag));
        assert!(none_match("*", tag));
        assert!(!none_match("\"sha256:ac\"", tag));
    }

    #[test]
    fn digest_fields_are_base64_of_the_raw_digest() {
        let digest = Digest::of(b"hello");
        assert_eq!(
            digest_field(&digest),
            "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:"
        );
    }
}
