//! The `htu` comparison of RFC 9449 §4.3: the proof's URL and the request's, each without
//! query and fragment, after the syntax-based and scheme-based normalisation of RFC 3986
//! §6.2.2 and §6.2.3 (case of scheme and host, default port, empty path, percent-encoding,
//! dot segments), so that two spellings of one URL compare equal and nothing else does.
//! Pure.

/// The normal form of an absolute `http(s)` URL without its query and fragment, or `None`
/// when it is not one (other schemes, userinfo, no host, bad percent-encoding).
pub fn normalise(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = authority_of(authority, default_port)?;
    let mut out = format!("{scheme}://{authority}");
    out.push_str(&path_of(path)?);
    Some(out)
}

/// The normal form of the URL a request was sent to: `scheme` (`http`/`https`), the
/// request's authority and its path (the query, if any, is dropped here too).
pub fn of_request(scheme: &str, authority: &str, path: &str) -> Option<String> {
    normalise(&format!("{scheme}://{authority}{path}"))
}

/// Lower-case host, no default port, no userinfo.
fn authority_of(authority: &str, default_port: &str) -> Option<String> {
    if authority.is_empty() || authority.contains(['@', ' ', '\\']) {
        return None;
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(':') && !host.starts_with('[') {
        return None;
    }
    let host = host.to_ascii_lowercase();
    match port {
        None | Some("") => Some(host),
        Some(p) if p == default_port => Some(host),
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => Some(format!("{host}:{p}")),
        Some(_) => None,
    }
}

/// Percent-encodings of unreserved characters decoded, the others in upper case; dot
/// segments removed (RFC 3986 §5.2.4); an empty path is `/`.
fn path_of(path: &str) -> Option<String> {
    let mut decoded = String::with_capacity(path.len() + 1);
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let value = u8::from_str_radix(hex, 16).ok()?;
            if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
                decoded.push(value as char);
            } else {
                decoded.push('%');
                decoded.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else if b.is_ascii_graphic() {
            decoded.push(b as char);
            i += 1;
        } else {
            return None;
        }
    }
    Some(remove_dot_segments(&decoded))
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    out.pop();
                }
                // A trailing dot segment leaves a directory: `/a/b/..` is `/a/`.
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_url_normalise_alike() {
        let want = Some("https://api.example/a/b".to_string());
        for url in [
            "https://api.example/a/b",
            "HTTPS://API.Example/a/b",
            "https://api.example:443/a/b",
            "https://api.example/a/b?x=1",
            "https://api.example/a/b#frag",
            "https://api.example/a/./c/../b",
            "https://api.example/%61/b",
        ] {
            assert_eq!(normalise(url), want, "{url}");
        }
        assert_eq!(
            normalise("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:8080/".to_string())
        );
        assert_eq!(
            normalise("http://h/a%2fb"),
            Some("http://h/a%2Fb".to_string())
        );
        assert_eq!(
            normalise("http://[::1]:80/x"),
            Some("http://[::1]/x".to_string())
        );
        assert_eq!(
            of_request("http", "h:8080", "/p?q"),
            Some("http://h:8080/p".to_string())
        );
    }

    #[test]
    fn different_urls_stay_different() {
        let base = normalise("https://api.example/a/b");
        for url in [
            "http://api.example/a/b",
            "https://api.example:8443/a/b",
            "https://other.example/a/b",
            "https://api.example/a/B",
            "https://api.example/a/b/",
            "https://api.example/a",
        ] {
            assert_ne!(normalise(url), base, "{url}");
        }
    }

    #[test]
    fn what_is_not_an_http_url_is_refused() {
        for url in [
            "",
            "/a/b",
            "ftp://h/a",
            "https://user@h/a",
            "https:///a",
            "https://h:x/a",
            "https://h/%zz",
            "https://h/a b",
            "https://h/%4",
        ] {
            assert_eq!(normalise(url), None, "{url}");
        }
    }
}
