//! Envoy's rate-limit service messages, written by hand with prost derives (no protoc).
//!
//! Field numbers are those of Envoy's `api/envoy/service/ratelimit/v3/rls.proto` and
//! `api/envoy/extensions/common/ratelimit/v3/ratelimit.proto`. Fields this service never reads
//! or writes (quota, headers to add, raw body, dynamic metadata) are left out: prost skips
//! unknown fields when decoding, and an absent field is the protocol's default.

/// `envoy.service.ratelimit.v3.RateLimitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitRequest {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(message, repeated, tag = "2")]
    pub descriptors: Vec<RateLimitDescriptor>,
    /// 0 means 1.
    #[prost(uint32, tag = "3")]
    pub hits_addend: u32,
}

/// `envoy.extensions.common.ratelimit.v3.RateLimitDescriptor`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitDescriptor {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// A limit the client asks for instead of the configured one.
    #[prost(message, optional, tag = "2")]
    pub limit: Option<RateLimitOverride>,
}

/// `RateLimitDescriptor.Entry`.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct Entry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `RateLimitDescriptor.RateLimitOverride`; `unit` is an `envoy.type.v3.RateLimitUnit`
/// (0 unknown, 1 second, 2 minute, 3 hour, 4 day: the same numbers as [`Unit`]).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitOverride {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
}

/// `envoy.service.ratelimit.v3.RateLimitResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimitResponse {
    #[prost(enumeration = "Code", tag = "1")]
    pub overall_code: i32,
    /// One per request descriptor, in the request's order.
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<DescriptorStatus>,
}

/// `RateLimitResponse.Code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Code {
    Unknown = 0,
    Ok = 1,
    OverLimit = 2,
}

/// `RateLimitResponse.RateLimit.Unit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Unit {
    Unknown = 0,
    Second = 1,
    Minute = 2,
    Hour = 3,
    Day = 4,
    Month = 5,
    Year = 6,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RateLimit {
    #[prost(uint32, tag = "1")]
    pub requests_per_unit: u32,
    #[prost(enumeration = "Unit", tag = "2")]
    pub unit: i32,
    #[prost(string, tag = "3")]
    pub name: String,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DescriptorStatus {
    #[prost(enumeration = "Code", tag = "1")]
    pub code: i32,
    /// Absent when no configured limit matched the descriptor.
    #[prost(message, optional, tag = "2")]
    pub current_limit: Option<RateLimit>,
    #[prost(uint32, tag = "3")]
    pub limit_remaining: u32,
    #[prost(message, optional, tag = "4")]
    pub duration_until_reset: Option<Duration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    // Bytes a protoc-generated client would send, written out by field number, so a wrong tag
    // or wire type in the derives above fails here and not only against Envoy.
    #[test]
    fn decodes_a_request_by_field_number() {
        let bytes = [
            0x0a, 0x02, b'r', b'l', // 1: domain "rl"
            0x12, 0x0a, // 2: descriptor, 10 bytes
            0x0a, 0x08, // 1: entry, 8 bytes
            0x0a, 0x03, b'k', b'e', b'y', // 1: key
            0x12, 0x01, b'v', // 2: value
            0x18, 0x05, // 3: hits_addend 5
        ];
        let request = RateLimitRequest::decode(&bytes[..]).expect("decodes");
        assert_eq!(request.domain, "rl");
        assert_eq!(request.hits_addend, 5);
        assert_eq!(
            request.descriptors[0].entries,
            vec![Entry {
                key: "key".into(),
                value: "v".into()
            }]
        );
    }

    #[test]
    fn encodes_a_response_by_field_number() {
        let response = RateLimitResponse {
            overall_code: Code::OverLimit as i32,
            statuses: vec![DescriptorStatus {
                code: Code::OverLimit as i32,
                current_limit: Some(RateLimit {
                    requests_per_unit: 3,
                    unit: Unit::Minute as i32,
                    name: String::new(),
                }),
                limit_remaining: 0,
                duration_until_reset: Some(Duration {
                    seconds: 7,
                    nanos: 0,
                }),
            }],
        };
        let expected = [
            0x08, 0x02, // 1: overall_code OVER_LIMIT
            0x12, 0x0c, // 2: status, 12 bytes
            0x08, 0x02, // 1: code
            0x12, 0x04, 0x08, 0x03, 0x10, 0x02, // 2: current_limit {1: 3, 2: MINUTE}
            0x22, 0x02, 0x08, 0x07, // 4: duration_until_reset {1: 7}
        ];
        assert_eq!(response.encode_to_vec(), expected);
    }
}
