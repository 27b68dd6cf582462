//! A request's header lines, whichever engine read them: hyper's `HeaderMap`, or the fast
//! lane's [`RawHeaders`] (where httparse found the lines in the read buffer; no map is
//! built). The phases that read request headers (the request id, the authority, the guard,
//! the access log's entry, the client address, the rewrite) take either, so one rule reads
//! both. Building a `HeaderMap` cost the fast lane about 2,000 instructions a request (a
//! hashed insert, a checked value and a shared-buffer handle per line), more than the guard.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// Read access to a request's header lines.
pub trait HeaderView {
    /// The values of every line named `name`, in order (names match in any case).
    fn values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]>;

    /// Every line in order: its name as sent, its value.
    fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])>;

    /// The first value of `name`.
    fn first(&self, name: HeaderName) -> Option<&[u8]> {
        self.values(name).next()
    }

    /// One of this view's values as a `HeaderValue` the gateway keeps (the authority).
    fn keep(&self, value: &[u8]) -> Option<HeaderValue>;
}

impl HeaderView for HeaderMap {
    fn values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> {
        self.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }

    fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
    }

    fn keep(&self, value: &[u8]) -> Option<HeaderValue> {
        HeaderValue::from_bytes(value).ok()
    }
}

/// Header lines as they lie in a request's bytes: offsets into `buf`, names as the client
/// spelt them. Whoever makes one has checked the lines ([`super::super::fast::wire`]: names
/// are tokens, values hold no control bytes), as a `HeaderMap` would have.
#[derive(Debug, Clone, Default)]
pub struct RawHeaders {
    buf: Bytes,
    lines: Vec<Line>,
}

/// Where one line's name and value lie in the buffer.
#[derive(Debug, Clone, Copy)]
struct Line {
    name: (u32, u32),
    value: (u32, u32),
}

impl RawHeaders {
    /// No lines yet, over `buf`, with room for `lines` of them.
    pub fn with_capacity(buf: Bytes, lines: usize) -> Self {
        RawHeaders {
            buf,
            lines: Vec::with_capacity(lines),
        }
    }

    /// Adds the line whose name and value are these slices of the buffer; false (and
    /// nothing added) when either is not inside it.
    pub fn push(&mut self, name: &[u8], value: &[u8]) -> bool {
        match (self.span(name), self.span(value)) {
            (Some(name), Some(value)) => {
                self.lines.push(Line { name, value });
                true
            }
            _ => false,
        }
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// A value of this head as a `HeaderValue` sharing the buffer (no copy), for a value
    /// the gateway keeps (the authority). `None` for bytes not from this buffer or not a
    /// valid value.
    pub fn shared_value(&self, value: &[u8]) -> Option<HeaderValue> {
        let (start, len) = self.span(value)?;
        let (start, len) = (start as usize, len as usize);
        HeaderValue::from_maybe_shared(self.buf.slice(start..start + len)).ok()
    }

    /// The lines as a `HeaderMap` (names lower-cased, duplicates grouped, as hyper would
    /// hold them); `None` if a name is not a valid header name. For tests and fuzzing, which
    /// compare the fast lane's view with hyper's.
    pub fn to_map(&self) -> Option<HeaderMap> {
        let mut map = HeaderMap::with_capacity(self.lines.len());
        for (name, value) in self.lines() {
            let name = HeaderName::from_bytes(name).ok()?;
            map.append(name, HeaderValue::from_bytes(value).ok()?);
        }
        Some(map)
    }

    /// The offset and length of `part` in the buffer, when it lies inside it.
    fn span(&self, part: &[u8]) -> Option<(u32, u32)> {
        let base = self.buf.as_ptr() as usize;
        let start = (part.as_ptr() as usize).checked_sub(base)?;
        let end = start.checked_add(part.len())?;
        if end > self.buf.len() {
            return None;
        }
        Some((u32::try_from(start).ok()?, u32::try_from(part.len()).ok()?))
    }

    fn slice(&self, (start, len): (u32, u32)) -> &[u8] {
        let start = start as usize;
        self.buf
            .get(start..start + len as usize)
            .unwrap_or_default()
    }
}

impl HeaderView for RawHeaders {
    fn values(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> {
        // Lengths first: most lines are not the one asked for, and that costs no slicing.
        let len = name.as_str().len();
        self.lines.iter().filter_map(move |line| {
            if line.name.1 as usize != len {
                return None;
            }
            let line_name = self.slice(line.name);
            line_name
                .eq_ignore_ascii_case(name.as_str().as_bytes())
                .then(|| self.slice(line.value))
        })
    }

    fn lines(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines
            .iter()
            .map(|line| (self.slice(line.name), self.slice(line.value)))
    }

    fn keep(&self, value: &[u8]) -> Option<HeaderValue> {
        self.shared_value(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{AUTHORIZATION, HOST};

    fn raw(head: &'static str) -> RawHeaders {
        let buf = Bytes::from_static(head.as_bytes());
        let mut headers = RawHeaders::with_capacity(buf.clone(), 4);
        for line in head.split_terminator("\r\n") {
            let (name, value) = line.split_once(": ").expect("a test line");
            assert!(headers.push(name.as_bytes(), value.as_bytes()));
        }
        headers
    }

    #[test]
    fn values_match_names_in_any_case_in_order() {
        let h = raw("Host: a\r\nAUTHORIZATION: Bearer x\r\nhost: b\r\n");
        let hosts: Vec<&[u8]> = h.values(HOST).collect();
        assert_eq!(hosts, [b"a".as_slice(), b"b"]);
        assert_eq!(h.first(AUTHORIZATION), Some(b"Bearer x".as_slice()));
        assert_eq!(h.len(), 3);
    }

    #[test]
    fn only_slices_of_the_buffer_are_taken() {
        let mut h = raw("a: 1\r\n");
        let outside = b"1".to_vec();
        assert!(!h.push(b"elsewhere", &outside));
        assert_eq!(h.len(), 1);
        assert!(h.shared_value(&outside).is_none());
        let value = h.lines().next().expect("one line").1;
        assert_eq!(h.shared_value(value), Some(HeaderValue::from_static("1")));
    }

    #[test]
    fn the_map_groups_and_lower_cases_as_hyper_does() {
        let map = raw("B: 1\r\nA: 2\r\nb: 3\r\n")
            .to_map()
            .expect("valid names");
        let lines: Vec<(&[u8], &[u8])> = map.lines().collect();
        assert_eq!(
            lines,
            [
                (b"b".as_slice(), b"1".as_slice()),
                (b"b", b"3"),
                (b"a", b"2")
            ]
        );
        assert!(raw("bad name: 1\r\n").to_map().is_none());
    }
}
