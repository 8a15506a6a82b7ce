//! What rules read from a request, fetched from the host at most once per request, and the
//! pure parsing of addresses, `x-forwarded-for`, cookies and query strings.

use std::borrow::Cow;

use wasmgate_glue::{Headers, Host};

/// A request's values, fetched on first use. Every host call costs about as much as the
/// rest of the filter, so nothing is fetched that no rule reads, and nothing twice.
#[derive(Debug, Default)]
pub struct Request {
    path: Option<Option<String>>,
    method: Option<Option<String>>,
    host: Option<Option<String>>,
    client_ip: Option<Option<String>>,
    headers: Vec<(String, Option<String>)>,
}

impl Request {
    /// The path without its query.
    pub fn path(&mut self, host: &dyn Host) -> Option<&str> {
        self.full_path(host)
            .map(|p| p.split_once('?').map_or(p, |(path, _)| path))
    }

    /// The query string (after `?`), when there is one.
    pub fn query(&mut self, host: &dyn Host) -> Option<&str> {
        self.full_path(host)
            .and_then(|p| p.split_once('?').map(|(_, query)| query))
    }

    fn full_path(&mut self, host: &dyn Host) -> Option<&str> {
        self.path
            .get_or_insert_with(|| host.header(Headers::Request, ":path"))
            .as_deref()
    }

    pub fn method(&mut self, host: &dyn Host) -> Option<&str> {
        self.method
            .get_or_insert_with(|| host.header(Headers::Request, ":method"))
            .as_deref()
    }

    /// The host, lowercased, without its port.
    pub fn host(&mut self, host: &dyn Host) -> Option<&str> {
        self.host
            .get_or_insert_with(|| {
                host.header(Headers::Request, ":authority")
                    .map(|a| strip_port(&a).to_ascii_lowercase())
            })
            .as_deref()
    }

    /// A request header (`name` lowercased).
    pub fn header(&mut self, host: &dyn Host, name: &str) -> Option<&str> {
        let index = match self.headers.iter().position(|(n, _)| n == name) {
            Some(index) => index,
            None => {
                self.headers
                    .push((name.to_owned(), host.header(Headers::Request, name)));
                self.headers.len() - 1
            }
        };
        self.headers[index].1.as_deref()
    }

    /// The client's address: the `xff_hop`-th from the right of `x-forwarded-for` when that
    /// is set and the header has that many, else the connection's source address.
    pub fn client_ip(&mut self, host: &dyn Host, xff_hop: u32) -> Option<&str> {
        if self.client_ip.is_none() {
            let from_xff = if xff_hop > 0 {
                self.header(host, "x-forwarded-for")
                    .and_then(|xff| xff_hop_from_right(xff, xff_hop))
                    .map(str::to_owned)
            } else {
                None
            };
            let ip = from_xff.or_else(|| {
                host.property(&["source", "address"])
                    .and_then(|a| String::from_utf8(a).ok())
                    .map(|a| strip_port(&a).to_owned())
                    .filter(|a| !a.is_empty())
            });
            self.client_ip = Some(ip);
        }
        self.client_ip.as_ref().and_then(Option::as_deref)
    }
}

/// `1.2.3.4:80` → `1.2.3.4`, `[::1]:80` → `::1`, `example.com:8080` → `example.com`;
/// an address without a port is returned as it is.
pub fn strip_port(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(address, |(ip, _)| ip);
    }
    match address.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((head, _)) if head.contains(':') => address,
        Some((head, port)) if port.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => address,
    }
}

/// The `hop`-th address from the right of an `x-forwarded-for` value (1 is the last one),
/// or `None` when it has fewer addresses or that one is empty.
pub fn xff_hop_from_right(xff: &str, hop: u32) -> Option<&str> {
    let skip = usize::try_from(hop).ok()?.checked_sub(1)?;
    xff.rsplit(',')
        .nth(skip)
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
}

/// The value of cookie `name` in a `cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// The first value of parameter `name` in a query string, percent-decoded, so that
/// `%61pi` and `api` are one key.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<Cow<'a, [u8]>> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(n).as_ref() == name.as_bytes()).then(|| decode(v))
    })
}

/// Percent-decoding, with `+` as a space; a `%` not followed by two hex digits stays.
fn decode(text: &str) -> Cow<'_, [u8]> {
    if !text.contains(['%', '+']) {
        return Cow::Borrowed(text.as_bytes());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            other => out.push(other),
        }
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::FakeHost;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("10.0.0.1:5555"), "10.0.0.1");
        assert_eq!(strip_port("10.0.0.1"), "10.0.0.1");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("Example.com:8080"), "Example.com");
        assert_eq!(strip_port("example.com"), "example.com");
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
    fn cookies_and_query_parameters() {
        let header = "a=1; session=\"abc\"; b=2";
        assert_eq!(cookie(header, "session"), Some("abc"));
        assert_eq!(cookie(header, "b"), Some("2"));
        assert_eq!(cookie(header, "sess"), None);
        let q = "x=1&api_key=%61b+c&api_key=second&flag";
        assert_eq!(query_param(q, "api_key").as_deref(), Some(&b"ab c"[..]));
        assert_eq!(query_param(q, "flag").as_deref(), Some(&b""[..]));
        assert_eq!(query_param(q, "y"), None);
        assert_eq!(query_param("k=100%", "k").as_deref(), Some(&b"100%"[..]));
        assert_eq!(query_param("k=%zz%4", "k").as_deref(), Some(&b"%zz%4"[..]));
    }

    #[test]
    fn a_request_reads_each_value_once_and_finds_the_client() {
        let host = FakeHost::new()
            .with_request("POST", "/api/v1?x=1")
            .with_header("x-forwarded-for", "198.51.100.7, 10.1.1.1")
            .with_property(&["source", "address"], b"127.0.0.1:40000");
        let mut request = Request::default();
        assert_eq!(request.path(&host), Some("/api/v1"));
        assert_eq!(request.query(&host), Some("x=1"));
        assert_eq!(request.method(&host), Some("POST"));
        assert_eq!(request.host(&host), Some("example.com"));
        assert_eq!(request.client_ip(&host, 2), Some("198.51.100.7"));
        assert_eq!(request.header(&host, "x-missing"), None);

        let mut untrusted = Request::default();
        assert_eq!(untrusted.client_ip(&host, 0), Some("127.0.0.1"));
        let mut short = Request::default();
        assert_eq!(short.client_ip(&host, 3), Some("127.0.0.1"), "too few hops");
        let mut none = Request::default();
        assert_eq!(none.client_ip(&FakeHost::new(), 0), None);
    }
}
