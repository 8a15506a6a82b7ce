//! Addresses: the host of an `:authority`, and the client's address behind trusted proxies.

use serde::Deserialize;
use wasmgate_glue::FromJson;

/// The host of an authority or socket address, without its port:
/// `example.com:8080` → `example.com`, `10.0.0.1:5555` → `10.0.0.1`, `[::1]:80` and `[::1]`
/// → `::1`. A port is zero or more digits after the last `:` (RFC 3986: `host:` has an
/// empty port). Anything else is returned as it is: a bare IPv6 address (`::1`), a host
/// without a port, and text that is not `host:port` at all (`host:abc`, `[::1]x`), which
/// then matches no host pattern written as a name.
pub fn strip_port(address: &str) -> &str {
    let is_port = |port: &str| port.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = address.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, "")) => ip,
            Some((ip, after)) if after.strip_prefix(':').is_some_and(is_port) => ip,
            _ => address,
        };
    }
    match address.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        // (bytes: `str::contains` would bring its char searcher into the Wasm modules.)
        Some((head, _)) if head.bytes().any(|b| b == b':') => address,
        Some((head, port)) if is_port(port) => head,
        _ => address,
    }
}

/// How the client's address is found, for the `client_ip` of every plugin (rate-limit's
/// key part, header-rewrite's `${client_ip}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, FromJson)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClientIp {
    /// 0 (default): the connection's source address. `n` ≥ 1: the `n`-th address from the
    /// right of `x-forwarded-for`, for when `n` proxies you trust each append one; with
    /// fewer addresses than that, the connection's source address.
    #[serde(default)]
    pub xff_hop: u32,
}

impl ClientIp {
    /// Whether `x-forwarded-for` is read at all.
    pub fn reads_xff(&self) -> bool {
        self.xff_hop > 0
    }

    /// The client's address from the request's `x-forwarded-for` (when [`reads_xff`]) and
    /// the connection's source address (`source.address`, port and all); `None` when
    /// neither gives one.
    ///
    /// [`reads_xff`]: ClientIp::reads_xff
    pub fn find<'a>(&self, xff: Option<&'a str>, source: Option<&'a str>) -> Option<&'a str> {
        xff.filter(|_| self.reads_xff())
            .and_then(|xff| xff_hop_from_right(xff, self.xff_hop))
            .or_else(|| source.map(strip_port).filter(|ip| !ip.is_empty()))
    }
}

/// The `hop`-th address from the right of an `x-forwarded-for` value (1 is the last one),
/// trimmed, or `None` when it has fewer addresses or that one is empty.
pub fn xff_hop_from_right(xff: &str, hop: u32) -> Option<&str> {
    let skip = usize::try_from(hop).ok()?.checked_sub(1)?;
    xff.rsplit(',')
        .nth(skip)
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped() {
        for (address, host) in [
            ("10.0.0.1:5555", "10.0.0.1"),
            ("10.0.0.1", "10.0.0.1"),
            ("[::1]:80", "::1"),
            ("[::1]", "::1"),
            ("[::1]:", "::1"),
            ("::1", "::1"),
            ("2001:db8::1", "2001:db8::1"),
            ("Example.com:8080", "Example.com"),
            ("example.com:", "example.com"),
            ("example.com", "example.com"),
            ("", ""),
        ] {
            assert_eq!(strip_port(address), host, "{address}");
        }
    }

    #[test]
    fn what_is_not_host_port_stays_as_it_is() {
        for address in [
            "host:abc", "host:80x", "[::1]x", "[::1]:8o", "[::1", "a:b:c",
        ] {
            assert_eq!(strip_port(address), address);
        }
    }

    #[test]
    fn xff_hops_count_from_the_right() {
        let xff = "203.0.113.9, 10.0.0.1 ,10.0.0.2";
        assert_eq!(xff_hop_from_right(xff, 1), Some("10.0.0.2"));
        assert_eq!(xff_hop_from_right(xff, 2), Some("10.0.0.1"));
        assert_eq!(xff_hop_from_right(xff, 3), Some("203.0.113.9"));
        assert_eq!(xff_hop_from_right(xff, 4), None);
        assert_eq!(xff_hop_from_right("a,,b", 2), None);
        assert_eq!(xff_hop_from_right(xff, 0), None);
    }

    #[test]
    fn the_client_is_found_behind_trusted_proxies_only() {
        let xff = Some("198.51.100.7, 10.1.1.1");
        let source = Some("127.0.0.1:40000");
        let hop = |xff_hop| ClientIp { xff_hop };
        assert_eq!(hop(0).find(xff, source), Some("127.0.0.1"), "untrusted");
        assert_eq!(hop(1).find(xff, source), Some("10.1.1.1"));
        assert_eq!(hop(2).find(xff, source), Some("198.51.100.7"));
        assert_eq!(hop(3).find(xff, source), Some("127.0.0.1"), "too few hops");
        assert_eq!(hop(1).find(None, Some("[::1]:9")), Some("::1"));
        assert_eq!(hop(0).find(xff, None), None);
        assert_eq!(hop(0).find(None, Some("")), None);
        assert!(!hop(0).reads_xff());
    }
}
