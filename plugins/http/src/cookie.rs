//! Cookies of a `cookie` header (RFC 6265 §4.2).

/// Every cookie of a `cookie` header as (name, value), in order. Cookies are separated by
/// `;`, and by `,`, which joins repeated headers (RFC 6265 allows neither in a cookie);
/// names and values are trimmed, and a part without `=` is skipped. Values are as sent,
/// quotes included.
pub fn cookies(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split([';', ',']).filter_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        Some((name.trim(), value.trim()))
    })
}

/// Every value of cookie `name`, in order, without surrounding quotes.
pub fn cookie_values<'h>(header: &'h str, name: &'h str) -> impl Iterator<Item = &'h str> + 'h {
    cookies(header)
        .filter(move |(n, _)| *n == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The value of the first cookie `name`, without surrounding quotes.
pub fn cookie<'h>(header: &'h str, name: &'h str) -> Option<&'h str> {
    cookie_values(header, name).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_by_name() {
        let header = "a=1; session=\"abc\"; b=2";
        assert_eq!(cookie(header, "session"), Some("abc"));
        assert_eq!(cookie(header, "b"), Some("2"));
        assert_eq!(cookie(header, "sess"), None);
    }

    #[test]
    fn every_value_and_joined_headers() {
        let header = "session=a; flag; other=x,session=\"b\" ; =y";
        assert_eq!(
            cookie_values(header, "session").collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            cookies(header).collect::<Vec<_>>(),
            [
                ("session", "a"),
                ("other", "x"),
                ("session", "\"b\""),
                ("", "y")
            ]
        );
        assert_eq!(cookie("", "a"), None);
    }
}
