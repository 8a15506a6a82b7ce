//! What rules read from a request, fetched from the host at most once per request. Paths,
//! query strings, cookies, hosts and the client behind trusted proxies are parsed by
//! `wasmgate_http`.

use wasmgate_glue::{Headers, Host};
use wasmgate_http::{split, strip_port, ClientIp};

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
        self.full_path(host).map(|p| split(p).0)
    }

    /// The query string (after `?`), when there is one.
    pub fn query(&mut self, host: &dyn Host) -> Option<&str> {
        self.full_path(host).and_then(|p| split(p).1)
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
    /// is set and the header has that many, else the connection's source address
    /// ([`ClientIp::find`]).
    pub fn client_ip(&mut self, host: &dyn Host, xff_hop: u32) -> Option<&str> {
        if self.client_ip.is_none() {
            let finder = ClientIp { xff_hop };
            let xff = if finder.reads_xff() {
                self.header(host, "x-forwarded-for").map(str::to_owned)
            } else {
                None
            };
            let source = host
                .property(&["source", "address"])
                .and_then(|a| String::from_utf8(a).ok());
            let ip = finder
                .find(xff.as_deref(), source.as_deref())
                .map(str::to_owned);
            self.client_ip = Some(ip);
        }
        self.client_ip.as_ref().and_then(Option::as_deref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmgate_glue::FakeHost;

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
