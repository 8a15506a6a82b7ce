//! Global rules: their limit is kept by a rate limit service speaking Envoy's RLS gRPC API
//! (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`).
//!
//! - the request and response messages, encoded and decoded by hand: four small messages
//!   do not need a protobuf runtime in every module;
//! - [`Memory`]: `OVER_LIMIT` verdicts remembered in shared data until the service's reset
//!   time, so a flood from one key costs one call per window per Envoy, not one per request.

use wasmgate_glue::Host;

use crate::bucket::{home_slot, Fingerprint};
use crate::store::push_decimal;

/// The gRPC service and method every global rule calls.
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// `RateLimitResponse.Code`.
const CODE_OK: u64 = 1;
const CODE_OVER_LIMIT: u64 = 2;

/// Protobuf wire types used here.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn push_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn push_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | LEN);
    push_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `RateLimitRequest { domain, descriptors, hits_addend }`; a descriptor is a list of
/// `(key, value)` entries.
pub fn encode_request<'a>(
    domain: &str,
    descriptors: impl IntoIterator<Item = &'a [(&'a str, &'a str)]>,
    hits: u32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    push_bytes(&mut out, 1, domain.as_bytes());
    let (mut descriptor, mut entry) = (Vec::new(), Vec::new());
    for entries in descriptors {
        descriptor.clear();
        for (key, value) in entries {
            entry.clear();
            push_bytes(&mut entry, 1, key.as_bytes());
            push_bytes(&mut entry, 2, value.as_bytes());
            push_bytes(&mut descriptor, 1, &entry);
        }
        push_bytes(&mut out, 2, &descriptor);
    }
    // 0 (absent) means 1 to the service.
    if hits > 1 {
        out.push(3 << 3 | VARINT);
        push_varint(&mut out, u64::from(hits));
    }
    out
}

/// One protobuf field: its number and its value.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width value, which none of the fields read here have.
    Fixed,
}

/// The fields of a message, in order; `Err` on bytes that are not protobuf.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Result<u64, &'static str> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or("truncated varint")?;
            self.0 = rest;
            n |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(n);
            }
        }
        Err("varint longer than 10 bytes")
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], &'static str> {
        let len = usize::try_from(len).map_err(|_| "length overflow")?;
        if len > self.0.len() {
            return Err("truncated field");
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = (|| {
            let tag = self.varint()?;
            let value = match (tag & 7) as u8 {
                VARINT => Value::Varint(self.varint()?),
                LEN => {
                    let len = self.varint()?;
                    Value::Bytes(self.take(len)?)
                }
                FIXED64 => self.take(8).map(|_| Value::Fixed)?,
                FIXED32 => self.take(4).map(|_| Value::Fixed)?,
                _ => return Err("unsupported wire type"),
            };
            Ok((tag >> 3, value))
        })();
        if field.is_err() {
            // Stop after the first error: the rest of the bytes cannot be framed.
            self.0 = &[];
        }
        Some(field)
    }
}

/// What the service said about one descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    pub over_limit: bool,
    /// `current_limit.requests_per_unit`, when the service named a limit.
    pub limit: Option<u32>,
    pub remaining: u32,
    /// `duration_until_reset`, in nanoseconds, when the service sent it.
    pub reset_ns: Option<u64>,
}

/// A `RateLimitResponse`, reduced to what the filter uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// One per descriptor sent, in the same order.
    pub statuses: Vec<Status>,
    pub response_headers: Vec<(String, String)>,
    pub request_headers: Vec<(String, String)>,
}

fn code(code: u64) -> Result<bool, &'static str> {
    match code {
        CODE_OK => Ok(false),
        CODE_OVER_LIMIT => Ok(true),
        _ => Err("a status code that is neither OK nor OVER_LIMIT"),
    }
}

/// Decode a `RateLimitResponse` to `descriptors` descriptors. A response without statuses
/// gives every descriptor the overall code; any other count of statuses is an error.
pub fn decode_response(bytes: &[u8], descriptors: usize) -> Result<Response, &'static str> {
    let mut overall = 0;
    let mut response = Response::default();
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(n)) => overall = n,
            (2, Value::Bytes(b)) => response.statuses.push(decode_status(b)?),
            (3, Value::Bytes(b)) => response.response_headers.push(decode_header(b)?),
            (4, Value::Bytes(b)) => response.request_headers.push(decode_header(b)?),
            _ => {}
        }
    }
    if response.statuses.is_empty() {
        let status = Status {
            over_limit: code(overall)?,
            ..Status::default()
        };
        response.statuses = vec![status; descriptors];
    }
    if response.statuses.len() != descriptors {
        return Err("not one status per descriptor");
    }
    Ok(response)
}

fn decode_status(bytes: &[u8]) -> Result<Status, &'static str> {
    let mut status = Status::default();
    let mut code_seen = 0;
    for field in Fields(bytes) {
        match field? {
            (1, Value::Varint(n)) => code_seen = n,
            (2, Value::Bytes(limit)) => {
                for f in Fields(limit) {
                    if let (1, Value::Varint(n)) = f? {
                        status.limit = Some(u32::try_from(n).unwrap_or(u32::MAX));
                    }
                }
                // A limit message without requests_per_unit says 0 requests.
                status.limit.get_or_insert(0);
            }
            (3, Value::Varint(n)) => status.remaining = u32::try_from(n).unwrap_or(u32::MAX),
            (4, Value::Bytes(duration)) => {
                let (mut secs, mut nanos) = (0u64, 0u64);
                for f in Fields(duration) {
                    match f? {
                        // int64 and int32: a negative duration is sent as a huge varint.
                        (1, Value::Varint(n)) if (n as i64) >= 0 => secs = n,
                        (2, Value::Varint(n)) if (n as i64) >= 0 => nanos = n.min(999_999_999),
                        (1 | 2, Value::Varint(_)) => return Err("negative duration_until_reset"),
                        _ => {}
                    }
                }
                status.reset_ns = Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos));
            }
            _ => {}
        }
    }
    status.over_limit = code(code_seen)?;
    Ok(status)
}

/// `config.core.v3.HeaderValue { key = 1, value = 2, raw_value = 3 }`.
fn decode_header(bytes: &[u8]) -> Result<(String, String), &'static str> {
    let (mut key, mut value) = (String::new(), String::new());
    for field in Fields(bytes) {
        match field? {
            (1, Value::Bytes(b)) => key = String::from_utf8_lossy(b).into_owned(),
            (2 | 3, Value::Bytes(b)) => value = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
    }
    // No pseudo-headers: a service may add headers, not reroute the request.
    let valid_name = !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic() && b != b':');
    if !valid_name || wasmgate_http::breaks_header(&value) {
        return Err("a header to add that is not a valid header");
    }
    Ok((key.to_ascii_lowercase(), value))
}

/// An `OVER_LIMIT` verdict: the limit the service named and when its window resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub limit: Option<u32>,
    pub until_ns: u64,
}

/// Bytes of a remembered verdict: fingerprint, reset time, limit (`u32::MAX`: none).
const VERDICT_LEN: usize = 16 + 8 + 4;

/// A global rule's remembered verdicts: a fixed table of `slots` shared-data entries, one
/// per fingerprint's home slot. Entries are made on a key's first `OVER_LIMIT` and reused
/// after, so memory stays bounded by `max_keys` however many keys arrive. A collision
/// overwrites: forgetting a verdict only costs one more call.
#[derive(Debug)]
pub struct Memory {
    prefix: String,
    slots: u32,
}

impl Memory {
    pub fn new(domain: &str, rule: &str, slots: u32) -> Memory {
        Memory {
            prefix: format!("rate_limit/{domain}/{rule}/verdict/"),
            slots: slots.max(1),
        }
    }

    fn key(&self, fingerprint: Fingerprint) -> String {
        let mut key = self.prefix.clone();
        push_decimal(&mut key, u64::from(home_slot(fingerprint, self.slots)));
        key
    }

    /// The verdict remembered for `fingerprint`, if it still holds at `now`.
    pub fn recall(&self, host: &dyn Host, fingerprint: Fingerprint, now: u64) -> Option<Verdict> {
        let value = host.shared_data(&self.key(fingerprint)).0?;
        let value: &[u8; VERDICT_LEN] = value.as_slice().try_into().ok()?;
        let (stored, rest) = value.split_at(16);
        if stored != fingerprint.to_le_bytes() {
            return None;
        }
        let (until, limit) = rest.split_at(8);
        let until_ns = u64::from_le_bytes(until.try_into().ok()?);
        let limit = u32::from_le_bytes(limit.try_into().ok()?);
        (until_ns > now).then_some(Verdict {
            limit: (limit != u32::MAX).then_some(limit),
            until_ns,
        })
    }

    /// Remember a verdict; a failed write is only a call more later, so it is not an error.
    pub fn remember(&self, host: &mut dyn Host, fingerprint: Fingerprint, verdict: Verdict) {
        let mut value = Vec::with_capacity(VERDICT_LEN);
        value.extend_from_slice(&fingerprint.to_le_bytes());
        value.extend_from_slice(&verdict.until_ns.to_le_bytes());
        value.extend_from_slice(&verdict.limit.unwrap_or(u32::MAX).to_le_bytes());
        let _ = host.set_shared_data(&self.key(fingerprint), &value, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::FakeHost;

    #[test]
    fn a_request_is_written_by_field_number() {
        let bytes = encode_request("rl", [&[("key", "v")][..]], 5);
        // The same bytes the service's own test decodes (ratelimit/src/proto.rs).
        let expected = [
            0x0a, 0x02, b'r', b'l', 0x12, 0x0a, 0x0a, 0x08, 0x0a, 0x03, b'k', b'e', b'y', 0x12,
            0x01, b'v', 0x18, 0x05,
        ];
        assert_eq!(bytes, expected);
        assert!(!encode_request("rl", [&[("k", "v")][..]], 1).ends_with(&[0x18, 0x01]));
    }

    #[test]
    fn a_response_is_read_by_field_number() {
        // The service's encoding of an OVER_LIMIT answer (ratelimit/src/proto.rs), plus a
        // header of each kind and an unknown field.
        let mut bytes = vec![
            0x08, 0x02, 0x12, 0x0c, 0x08, 0x02, 0x12, 0x04, 0x08, 0x03, 0x10, 0x02, 0x22, 0x02,
            0x08, 0x07,
        ];
        bytes.extend([0x1a, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'1']);
        bytes.extend([0x22, 0x06, 0x0a, 0x01, b'b', 0x12, 0x01, b'2']);
        bytes.extend([0x3d, 0, 0, 0, 0]);
        let response = decode_response(&bytes, 1).unwrap();
        assert_eq!(
            response.statuses,
            [Status {
                over_limit: true,
                limit: Some(3),
                remaining: 0,
                reset_ns: Some(7_000_000_000)
            }]
        );
        assert_eq!(response.response_headers, [("a".into(), "1".into())]);
        assert_eq!(response.request_headers, [("b".into(), "2".into())]);
        // Only an overall code: it holds for every descriptor.
        let ok = decode_response(&[0x08, 0x01], 2).unwrap();
        assert_eq!(ok.statuses, [Status::default(); 2]);
    }

    #[test]
    fn bad_responses_are_errors_not_answers() {
        for (bytes, descriptors) in [
            (&[0x08][..], 1),                         // truncated varint
            (&[0x12, 0x05, 0x08][..], 1),             // truncated status
            (&[][..], 1),                             // UNKNOWN overall code
            (&[0x12, 0x02, 0x08, 0x01][..], 2),       // one status for two descriptors
            (&[0x1a, 0x03, 0x0a, 0x01, b':'][..], 1), // a pseudo-header
            (&[0x0f][..], 1),                         // wire type 7
        ] {
            assert!(decode_response(bytes, descriptors).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn verdicts_are_remembered_until_their_reset_in_bounded_slots() {
        let mut host = FakeHost::new();
        let memory = Memory::new("d", "r", 4);
        let verdict = Verdict {
            limit: Some(10),
            until_ns: 100,
        };
        memory.remember(&mut host, 7, verdict);
        assert_eq!(memory.recall(&host, 7, 99), Some(verdict));
        assert_eq!(memory.recall(&host, 7, 100), None, "reset: ask again");
        assert_eq!(memory.recall(&host, 11, 50), None, "same slot, other key");
        for key in 0..100u128 {
            memory.remember(&mut host, key, verdict);
        }
        assert_eq!(host.proxy.peek().shared.len(), 4);
    }
}
