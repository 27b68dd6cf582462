//! Route matching: optional host plus the longest `path_prefix` on segment boundaries.
//!
//! Pure: no IO, no hyper. The request path is normalised first (RFC 3986 §6.2.2:
//! percent-decoding of unreserved characters, then dot-segment removal per §5.2.4), empty
//! segments are collapsed, and encoded `/`, `\` or NUL are refused. The gateway routes on the
//! normalised path *and forwards that same path*, so `/api/mail/../admin`, `%2e%2e` or `//`
//! tricks can never reach a route, or an upstream path, that the plain path would not.
//!
//! A raw `\` and a raw `;` are refused too, as Spring Security's `StrictHttpFirewall` does:
//! some upstreams read `\` as `/` and most Java servers cut `;` path parameters off a segment
//! before resolving dots, so `/open/..;/admin` would route under the open route here and be
//! `/admin` there. `%3B` stays encoded (it is never decoded), so to either side it is only a
//! literal `;` inside a segment.

use std::borrow::Cow;

/// Why a request path cannot be routed (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("the path has a malformed percent-encoding")]
    BadEscape,
    #[error("the path encodes '/', '\\' or NUL")]
    EncodedSeparator,
    #[error("the path contains a raw '\\'")]
    Backslash,
    #[error("the path contains a raw ';' (path parameters are refused; '%3B' is a literal ';')")]
    Semicolon,
}

/// Routes sorted so the first match is the best: longest prefix, then host-specific.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: Vec<Entry>,
    any_host: bool,
}

#[derive(Debug)]
struct Entry {
    host: Option<String>,
    prefix: String,
    index: usize,
}

impl RouteTable {
    /// Builds the table from `(host, prefix)` pairs; a match returns the pair's index.
    pub fn new<'a>(routes: impl IntoIterator<Item = (Option<&'a str>, &'a str)>) -> Self {
        let mut entries: Vec<Entry> = routes
            .into_iter()
            .enumerate()
            .map(|(index, (host, prefix))| Entry {
                host: host.map(str::to_ascii_lowercase),
                prefix: prefix.to_string(),
                index,
            })
            .collect();
        entries.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then_with(|| b.host.is_some().cmp(&a.host.is_some()))
        });
        let any_host = entries.iter().any(|e| e.host.is_some());
        Self { entries, any_host }
    }

    /// False when no route names a host, so the request's host need not be looked at.
    pub fn needs_host(&self) -> bool {
        self.any_host
    }

    /// The index of the best route for `host` (lower-case, no port) and a normalised path.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<usize> {
        self.entries
            .iter()
            .find(|e| {
                let host_ok = match &e.host {
                    Some(h) => host == Some(h.as_str()),
                    None => true,
                };
                host_ok && prefix_matches(&e.prefix, path)
            })
            .map(|e| e.index)
    }
}

/// `/api/mail` matches `/api/mail` and `/api/mail/…`, never `/api/mailbox`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The path an upstream sees after `strip_prefix`: never empty.
pub fn strip_prefix<'a>(prefix: &str, path: &'a str) -> &'a str {
    if prefix == "/" {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") | None => "/",
        Some(rest) => rest,
    }
}

/// The host a request is for: lower-case, port and trailing dot removed.
pub fn normalise_host(authority: &str) -> String {
    let host = match authority.rsplit_once(':') {
        // An IPv6 literal keeps its brackets; only strip a port after the closing one.
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => authority,
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Normalises a request path as the module comment describes.
pub fn normalise_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_normal(raw)? {
        return Ok(Cow::Borrowed(raw));
    }
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for raw_segment in raw[1..].split('/') {
        let segment = decode_unreserved(raw_segment)?;
        trailing_slash = true;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(raw.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// One pass over the raw path: refuses a raw `\` or `;` anywhere, and says whether the
/// path is already normal (the common case, checked without allocating): nothing to decode,
/// collapse or resolve.
fn is_already_normal(raw: &str) -> Result<bool, PathError> {
    let mut normal = true;
    // Where the current segment starts (just after its '/').
    let mut segment = 0;
    for (i, b) in raw.bytes().enumerate() {
        match b {
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            b'%' => normal = false,
            // The segment before the leading '/' is not a segment.
            b'/' if i > 0 => {
                normal &= !matches!(&raw[segment..i], "" | "." | "..");
                segment = i + 1;
            }
            b'/' => segment = 1,
            _ => {}
        }
    }
    Ok(normal && !matches!(&raw[segment..], "." | ".."))
}

/// Decodes `%XX` of unreserved characters, upper-cases the hex of the rest, and refuses
/// encodings whose meaning would change between us and the upstream.
fn decode_unreserved(segment: &str) -> Result<String, PathError> {
    if !segment.contains('%') {
        return Ok(segment.to_string());
    }
    let bytes = segment.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(segment.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(PathError::BadEscape)?;
        match value {
            b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
            v if v.is_ascii_alphanumeric() || b"-._~".contains(&v) => out.push(v),
            v => out.extend_from_slice(format!("%{v:02X}").as_bytes()),
        }
        i += 3;
    }
    // Only ASCII was added and the rest copied whole, so this stays valid UTF-8.
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

#[cfg(test)]
mod tests;
