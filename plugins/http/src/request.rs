//! One header map as a filter sees it in one callback: every header fetched from the host at
//! most once, and what the filter wrote remembered, so later reads cost no host call and see
//! the new value. Every host call costs about as much as a small filter's own work.

use std::borrow::Cow;

use wasmgate_glue::{Headers, Host};

use crate::{request_host, split, ClientIp};

/// A lazy, write-aware view of one header map (usually the request's).
///
/// Names are lowercase. They borrow from the compiled configuration (`'n`), as do literal
/// values the filter writes, so remembering a header allocates no name.
#[derive(Debug)]
pub struct HeaderView<'n> {
    map: Headers,
    /// Name → first value (`None`: absent), as Envoy's single-value read gives.
    cache: Vec<(Cow<'n, str>, Option<Cow<'n, str>>)>,
    /// The client's address, once found.
    client_ip: Option<Option<String>>,
}

impl<'n> HeaderView<'n> {
    /// A view of `map`, nothing read yet.
    pub fn new(map: Headers) -> Self {
        HeaderView {
            map,
            cache: Vec::new(),
            client_ip: None,
        }
    }

    /// A view of the request's headers.
    pub fn request() -> Self {
        HeaderView::new(Headers::Request)
    }

    /// The map viewed.
    pub fn map(&self) -> Headers {
        self.map
    }

    /// Header `name`'s first value, fetched on first use.
    pub fn get(&mut self, host: &dyn Host, name: &'n str) -> Option<&str> {
        let at = match self.cache.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                let value = host.header(self.map, name).map(Cow::Owned);
                self.cache.push((Cow::Borrowed(name), value));
                self.cache.len() - 1
            }
        };
        self.cache[at].1.as_deref()
    }

    /// What [`get`](Self::get) gave or a write left for `name`, without a host call: `None`
    /// when the header is absent or was never read.
    pub fn cached(&self, name: &str) -> Option<&str> {
        self.cache
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, value)| value.as_deref())
    }

    /// The filter set header `name` to `value` (`None`: removed it): later reads give that.
    pub fn remember(&mut self, name: Cow<'n, str>, value: Option<Cow<'n, str>>) {
        match self.cache.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.cache.push((name, value)),
        }
    }

    /// The filter appended `value` to header `name`: a value already read stays first, an
    /// absent header now has this one.
    pub fn appended(&mut self, name: &str, value: &str) {
        if let Some(entry) = self.cache.iter_mut().find(|(n, _)| n == name) {
            entry.1.get_or_insert_with(|| Cow::Owned(value.to_owned()));
        }
    }

    /// The request target (`:path`: path, query and all).
    pub fn target(&mut self, host: &dyn Host) -> Option<&str> {
        self.get(host, ":path")
    }

    /// The path, without its query.
    pub fn path(&mut self, host: &dyn Host) -> Option<&str> {
        self.target(host).map(|t| split(t).0)
    }

    /// The query (after `?`), when there is one.
    pub fn query(&mut self, host: &dyn Host) -> Option<&str> {
        self.target(host).and_then(|t| split(t).1)
    }

    /// The method.
    pub fn method(&mut self, host: &dyn Host) -> Option<&str> {
        self.get(host, ":method")
    }

    /// The host, as host conditions see it ([`request_host`]: no port, lowercased).
    pub fn host(&mut self, host: &dyn Host) -> Option<Cow<'_, str>> {
        self.get(host, ":authority").map(request_host)
    }

    /// The client's address as `finder` says to find it ([`ClientIp::find`]), from the
    /// request's `x-forwarded-for` as it stands and the connection's source address; found
    /// once per view.
    pub fn client_ip(&mut self, host: &dyn Host, finder: ClientIp) -> Option<&str> {
        if self.client_ip.is_none() {
            let xff = if finder.reads_xff() {
                self.get(host, "x-forwarded-for").map(str::to_owned)
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
    fn each_value_is_read_once_and_the_client_found() {
        let host = FakeHost::new()
            .with_request("POST", "/api/v1?x=1")
            .with_header("x-forwarded-for", "198.51.100.7, 10.1.1.1")
            .with_property(&["source", "address"], b"127.0.0.1:40000");
        let mut request = HeaderView::request();
        assert_eq!(request.path(&host), Some("/api/v1"));
        assert_eq!(request.query(&host), Some("x=1"));
        assert_eq!(request.target(&host), Some("/api/v1?x=1"));
        assert_eq!(request.method(&host), Some("POST"));
        assert_eq!(request.host(&host).as_deref(), Some("example.com"));
        assert_eq!(
            request.client_ip(&host, ClientIp { xff_hop: 2 }),
            Some("198.51.100.7")
        );
        assert_eq!(request.get(&host, "x-missing"), None);
        assert_eq!(request.get(&host, "x-missing"), None);
        assert_eq!(
            host.host_calls(),
            [("header", 5), ("property", 1)].into(),
            ":path, :method, :authority, x-forwarded-for, x-missing: once each"
        );

        let untrusted = ClientIp { xff_hop: 0 };
        assert_eq!(
            HeaderView::request().client_ip(&host, untrusted),
            Some("127.0.0.1")
        );
        let short = ClientIp { xff_hop: 3 };
        assert_eq!(
            HeaderView::request().client_ip(&host, short),
            Some("127.0.0.1"),
            "too few hops"
        );
        assert_eq!(
            HeaderView::request().client_ip(&FakeHost::new(), untrusted),
            None
        );
    }

    #[test]
    fn writes_are_remembered() {
        let host = FakeHost::new().with_header("x-a", "1");
        let mut view = HeaderView::request();
        assert_eq!(view.get(&host, "x-a"), Some("1"));
        view.remember(Cow::Borrowed("x-a"), Some(Cow::Borrowed("2")));
        assert_eq!(view.get(&host, "x-a"), Some("2"));
        view.appended("x-a", "3");
        assert_eq!(view.cached("x-a"), Some("2"), "the first value stays first");
        view.remember(Cow::Borrowed("x-b"), None);
        view.appended("x-b", "4");
        assert_eq!(view.get(&host, "x-b"), Some("4"));
        assert_eq!(view.cached("x-never-read"), None);
        assert_eq!(host.host_calls(), [("header", 1)].into());
    }
}
