//! Which rules apply to a request, and the key each counts it under: a fingerprint for the
//! local buckets, the descriptor entries for the rate limit service.

use std::borrow::Cow;

use wasmgate_glue::Host;
use wasmgate_http::{cookie, query_param_bytes, ClientIp, HeaderView};

use crate::bucket::{Fingerprint, KeyHasher, Seed};
use crate::config::KeyPart;
use crate::rules::CompiledRule;
use crate::shared::Shared;

/// Whether every condition of the rule holds for the request.
#[inline(never)]
pub(crate) fn matches<'n>(
    rule: &'n CompiledRule,
    host: &dyn Host,
    request: &mut HeaderView<'n>,
) -> bool {
    let when = &rule.when;
    if let Some(want) = &when.path {
        let Some(path) = request.path(host) else {
            return false;
        };
        if !want.matches(path) {
            return false;
        }
    }
    if !when.methods.is_empty() && !when.methods.matches(request.method(host)) {
        return false;
    }
    if when.reads_host() && !when.matches_host(request.host(host).as_deref()) {
        return false;
    }
    when.headers
        .iter()
        .all(|want| want.test.holds(request.get(host, &want.name)))
}

/// Tags of key parts in the fingerprint, so `path=/a` and `header=/a` differ.
pub(crate) const TAG_MISSING: u8 = 0;
pub(crate) const TAG_CLIENT_IP: u8 = 1;
pub(crate) const TAG_PATH: u8 = 2;
pub(crate) const TAG_METHOD: u8 = 3;
pub(crate) const TAG_HOST: u8 = 4;
pub(crate) const TAG_HEADER: u8 = 5;
pub(crate) const TAG_QUERY: u8 = 6;
pub(crate) const TAG_COOKIE: u8 = 7;

/// One key part's value in the request (`None` when the request lacks it), with the tag
/// that sets it apart in the fingerprint.
pub(crate) fn part_value<'r, 'n: 'r>(
    part: &'n KeyPart,
    client_ip: ClientIp,
    host: &dyn Host,
    request: &'r mut HeaderView<'n>,
) -> Option<(u8, Cow<'r, [u8]>)> {
    let text = |s: &'r str| Cow::Borrowed(s.as_bytes());
    Some(match part {
        KeyPart::ClientIp => (TAG_CLIENT_IP, text(request.client_ip(host, client_ip)?)),
        KeyPart::Path => (TAG_PATH, text(request.path(host)?)),
        KeyPart::Method => (TAG_METHOD, text(request.method(host)?)),
        KeyPart::Host => match request.host(host)? {
            Cow::Borrowed(h) => (TAG_HOST, text(h)),
            Cow::Owned(h) => (TAG_HOST, Cow::Owned(h.into_bytes())),
        },
        KeyPart::Header(name) => (TAG_HEADER, text(request.get(host, name)?)),
        KeyPart::Query(name) => (TAG_QUERY, query_param_bytes(request.query(host)?, name)?),
        KeyPart::Cookie(name) => (
            TAG_COOKIE,
            text(cookie(request.get(host, "cookie")?, name)?),
        ),
    })
}

/// The fingerprint of the request's key, or `None` when a part is missing.
#[inline(never)]
pub(crate) fn fingerprint<'n>(
    shared: &Shared,
    key: &'n [KeyPart],
    host: &dyn Host,
    request: &mut HeaderView<'n>,
) -> Option<Fingerprint> {
    let mut hasher = KeyHasher::new(&shared.seed);
    for part in key {
        let (tag, value) = part_value(part, shared.client_ip, host, request)?;
        hasher.part(tag, &value);
    }
    Some(hasher.finish())
}

/// The values of a global rule's key parts for its descriptor; empty when a part is missing
/// (the rule counts it as shared, or the request would not be asked about).
pub(crate) fn key_values<'n>(
    shared: &Shared,
    key: &'n [KeyPart],
    host: &dyn Host,
    request: &mut HeaderView<'n>,
) -> Vec<String> {
    let mut values = Vec::with_capacity(key.len());
    for part in key {
        match part_value(part, shared.client_ip, host, request) {
            Some((_, value)) => values.push(String::from_utf8_lossy(&value).into_owned()),
            None => return Vec::new(),
        }
    }
    values
}

/// The entry key of a key part in a rate limit descriptor. `client_ip` is Envoy's own
/// `remote_address`, so a limits file written for Envoy's native filter applies as well.
pub(crate) fn entry_key(part: &KeyPart) -> &str {
    match part {
        KeyPart::ClientIp => "remote_address",
        KeyPart::Path => "path",
        KeyPart::Method => "method",
        KeyPart::Host => "host",
        KeyPart::Header(name) | KeyPart::Query(name) | KeyPart::Cookie(name) => name,
    }
}

/// A global rule's descriptor: `generic_key` = the rule's name, so that each rule has its
/// own limits in the service, then one entry per key part (none for a missing key).
pub(crate) fn descriptor<'a>(
    rule: &'a CompiledRule,
    values: &'a [String],
) -> Vec<(&'a str, &'a str)> {
    // A loop, not `chain`/`zip`/`collect`: smaller in Wasm (issue 14).
    let mut entries = Vec::with_capacity(1 + values.len());
    entries.push(("generic_key", rule.name.as_str()));
    for (part, value) in rule.key.iter().zip(values) {
        entries.push((entry_key(part), value.as_str()));
    }
    entries
}

/// The one key of every request that lacks its rule's key (`missing_key: shared`).
pub(crate) fn missing_fingerprint(seed: &Seed) -> Fingerprint {
    let mut hasher = KeyHasher::new(seed);
    hasher.part(TAG_MISSING, b"");
    hasher.finish()
}
