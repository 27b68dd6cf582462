//! One access-log line from one [`Entry`]: JSON (one object per line) or Apache/nginx
//! "combined". Pure functions; they run on the writer thread, never on the request path.
//!
//! What a line may hold is decided by what an [`Entry`] holds: a path without its query, no
//! header but `User-Agent`, identities by name only. The referer of "combined" is always
//! `-`: a referer is a URL whose query can carry an authorization code or a token.

use super::Entry;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `entry` as one JSON object and a newline.
///
/// Written by hand with `itoa` rather than `write!`: the formatting machinery cost more
/// than everything else an access-logged request adds (see benches/README.md).
pub fn json(entry: &Entry, line: &mut String) {
    let (sub, client_id) = identity(entry);
    line.push_str("{\"time\":\"");
    rfc3339(entry.time, line);
    line.push_str("\",\"method\":");
    json_str(entry.method.as_str(), line);
    line.push_str(",\"path\":");
    json_str(&entry.path, line);
    line.push_str(",\"status\":");
    integer(entry.status, line);
    line.push_str(",\"route\":");
    json_opt(entry.route.as_deref(), line);
    line.push_str(",\"client_id\":");
    json_opt(client_id, line);
    line.push_str(",\"sub\":");
    json_opt(sub, line);
    line.push_str(",\"duration_ms\":");
    millis(entry.duration, line);
    line.push_str(",\"upstream_ms\":");
    match entry.upstream_time {
        Some(t) => millis(t, line),
        None => line.push_str("null"),
    }
    line.push_str(",\"bytes_sent\":");
    integer(entry.bytes_sent, line);
    line.push_str(",\"client_addr\":\"");
    address(entry.client_addr, line);
    line.push_str("\",\"request_id\":");
    json_bytes(entry.request_id.as_bytes(), line);
    line.push_str(",\"upstream\":");
    json_opt(entry.upstream.as_deref(), line);
    line.push_str(",\"user_agent\":");
    match &entry.user_agent {
        Some(ua) => json_bytes(ua, line),
        None => line.push_str("null"),
    }
    line.push_str("}\n");
}

/// Appends `entry` in the "combined" format:
/// `ADDR - USER [TIME] "METHOD PATH PROTOCOL" STATUS BYTES "-" "USER-AGENT"`, with the
/// token's `sub` as the user.
pub fn combined(entry: &Entry, line: &mut String) {
    let (sub, _) = identity(entry);
    address(entry.client_addr, line);
    line.push_str(" - ");
    match sub {
        Some(s) if !s.is_empty() => quoted_text(s, line),
        _ => line.push('-'),
    }
    line.push_str(" [");
    clf_time(entry.time, line);
    line.push_str("] \"");
    line.push_str(entry.method.as_str());
    line.push(' ');
    quoted_text(&entry.path, line);
    let _ = write!(
        line,
        " {:?}\" {} {} \"-\" \"",
        entry.version, entry.status, entry.bytes_sent
    );
    match &entry.user_agent {
        Some(ua) => quoted_text(&String::from_utf8_lossy(ua), line),
        None => line.push('-'),
    }
    line.push_str("\"\n");
}

fn identity(entry: &Entry) -> (Option<&str>, Option<&str>) {
    match &entry.principal {
        Some(p) => (Some(p.sub.as_str()), Some(p.client_id.as_str())),
        None => (None, None),
    }
}

/// A duration in milliseconds with three decimals (to the microsecond, rounded).
fn millis(d: std::time::Duration, out: &mut String) {
    // In u64 (a u128 division is a library call): good for 584 000 years.
    let micros = d
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add((u64::from(d.subsec_nanos()) + 500) / 1000);
    integer(micros / 1000, out);
    out.push('.');
    let frac = (micros % 1000) as u32;
    out.push(digit(frac / 100));
    two_digits(frac % 100, out);
}

fn integer(n: impl itoa::Integer, out: &mut String) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// An IPv4 address octet by octet (the common case, without `fmt`); IPv6 by `Display`.
fn address(addr: IpAddr, out: &mut String) {
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            integer(a, out);
            for octet in [b, c, d] {
                out.push('.');
                integer(octet, out);
            }
        }
        IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn digit(n: u32) -> char {
    char::from_digit(n % 10, 10).unwrap_or('0')
}

/// "00" to "99", two bytes each.
const PAIRS: &str = "00010203040506070809101112131415161718192021222324252627282930313233343536373839\
                     40414243444546474849505152535455565758596061626364656667686970717273747576777879\
                     8081828384858687888990919293949596979899";

/// `n` (below 100) as two digits.
fn two_digits(n: impl Into<u64>, out: &mut String) {
    let i = (n.into() % 100) as usize * 2;
    out.push_str(&PAIRS[i..i + 2]);
}

/// A JSON string (RFC 8259 §7): quotes, backslashes and control characters escaped.
fn json_str(s: &str, out: &mut String) {
    out.push('"');
    // Most strings need no escape at all: copy them whole.
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Whether any byte of `bytes` must be escaped in a JSON string as [`json_str`] writes it:
/// a control character (below 0x20, or DEL), `"` or `\\`. Eight bytes at a time (the
/// classic "has a zero byte" and "has a byte less than n" word tricks, exact for the
/// question "any?"), as this check runs over every string of every line.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let has_below_0x20 = |v: u64| v.wrapping_sub(ONES * 0x20) & !v & HIGHS != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        if has_below_0x20(v)
            || has_zero(v ^ (ONES * 0x7f))
            || has_zero(v ^ (ONES * u64::from(b'"')))
            || has_zero(v ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == 0x7f || b == b'"' || b == b'\\')
}

/// Header bytes as a JSON string: as they are when UTF-8 (the usual ASCII), else with
/// U+FFFD for what is not.
fn json_bytes(bytes: &[u8], out: &mut String) {
    match std::str::from_utf8(bytes) {
        Ok(s) => json_str(s, out),
        Err(_) => json_str(&String::from_utf8_lossy(bytes), out),
    }
}

fn json_opt(s: Option<&str>, out: &mut String) {
    match s {
        Some(s) => json_str(s, out),
        None => out.push_str("null"),
    }
}

/// nginx's escaping for its log lines: `"`, `\`, control and non-ASCII bytes as `\xHH`.
fn quoted_text(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(char::from(b));
        }
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day, hour, minute, second, millisecond) in UTC.
fn utc(time: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis(),
    )
}

/// `2026-12-01T15:12:42.123Z`. The part up to the second is formatted once a second (a
/// busy log writes thousands of lines within one) and kept by the writer thread.
fn rfc3339(time: SystemTime, out: &mut String) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(second, text)| {
        if *second != secs {
            text.clear();
            rfc3339_second(secs, text);
            *second = secs;
        }
        out.push_str(text);
    });
    let ms = since.subsec_millis();
    out.push(digit(ms / 100));
    two_digits(ms % 100, out);
    out.push('Z');
}

/// `2026-12-01T15:12:42.` for `secs` since the epoch.
fn rfc3339_second(secs: u64, out: &mut String) {
    let (y, mo, d, h, mi, s, _) = utc(UNIX_EPOCH + std::time::Duration::from_secs(secs));
    if (0..10_000).contains(&y) {
        let y = y as u64;
        two_digits(y / 100, out);
        two_digits(y % 100, out);
    } else {
        let _ = write!(out, "{y:04}");
    }
    out.push('-');
    two_digits(mo, out);
    out.push('-');
    two_digits(d, out);
    out.push('T');
    two_digits(h, out);
    out.push(':');
    two_digits(mi, out);
    out.push(':');
    two_digits(s, out);
    out.push('.');
}

/// `01/Dec/2026:15:12:42 +0000`.
fn clf_time(time: SystemTime, out: &mut String) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, _) = utc(time);
    let month = MONTHS[(mo as usize).saturating_sub(1).min(11)];
    let _ = write!(out, "{d:02}/{month}/{y:04}:{h:02}:{mi:02}:{s:02} +0000");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::{Identity, IdentityHeaders, Principal};
    use bytes::Bytes;
    use http::{HeaderValue, Method, Version};
    use std::sync::Arc;
    use std::time::Duration;

    fn entry() -> Entry {
        let header = |s: &'static str| HeaderValue::from_static(s);
        Entry {
            // 2026-12-01T15:12:42.123Z
            time: UNIX_EPOCH + Duration::from_millis(1_796_137_962_123),
            method: Method::GET,
            version: Version::HTTP_11,
            path: "/api/mail/inbox".to_string(),
            client_addr: "192.0.2.7".parse().expect("address"),
            request_id: header("abc123"),
            user_agent: Some(Bytes::from_static(b"curl/8.5 \"quoted\"")),
            route: Some(Arc::from("mail")),
            principal: Some(Principal {
                identity: Arc::new(Identity {
                    sub: "alice".to_string(),
                    client_id: "mail-app".to_string(),
                    username: Some("alice".to_string()),
                    scopes: vec!["email".to_string()],
                    audiences: Vec::new(),
                    jkt: None,
                    headers: IdentityHeaders {
                        subject: header("alice"),
                        client_id: header("mail-app"),
                        scope: header("email"),
                    },
                }),
                exp: None,
            }),
            upstream: Some(Arc::from("http://127.0.0.1:3000/")),
            upstream_time: Some(Duration::from_micros(1500)),
            status: 200,
            bytes_sent: 42,
            duration: Duration::from_micros(2250),
        }
    }

    #[test]
    fn json_lines_carry_the_contract_fields() {
        let mut text = String::new();
        json(&entry(), &mut text);
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(v["time"], "2026-12-01T15:12:42.123Z");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["path"], "/api/mail/inbox");
        assert_eq!(v["status"], 200);
        assert_eq!(v["route"], "mail");
        assert_eq!(v["client_id"], "mail-app");
        assert_eq!(v["sub"], "alice");
        assert_eq!(v["duration_ms"], 2.25);
        assert_eq!(v["upstream_ms"], 1.5);
        assert_eq!(v["bytes_sent"], 42);
        assert_eq!(v["client_addr"], "192.0.2.7");
        assert_eq!(v["request_id"], "abc123");
        assert_eq!(v["upstream"], "http://127.0.0.1:3000/");
        assert_eq!(v["user_agent"], "curl/8.5 \"quoted\"");
    }

    #[test]
    fn json_lines_have_null_for_what_a_request_did_not_have() {
        let mut e = entry();
        e.principal = None;
        e.route = None;
        e.upstream = None;
        e.upstream_time = None;
        e.user_agent = None;
        let mut out = String::new();
        json(&e, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        for key in [
            "route",
            "client_id",
            "sub",
            "upstream_ms",
            "upstream",
            "user_agent",
        ] {
            assert!(v[key].is_null(), "{key}: {v}");
        }
    }

    #[test]
    fn combined_lines_follow_the_apache_layout_and_escape_quotes() {
        let mut out = String::new();
        combined(&entry(), &mut out);
        assert_eq!(
            out,
            "192.0.2.7 - alice [01/Dec/2026:15:12:42 +0000] \"GET /api/mail/inbox HTTP/1.1\" \
             200 42 \"-\" \"curl/8.5 \\x22quoted\\x22\"\n"
        );
        let mut e = entry();
        e.principal = None;
        e.user_agent = None;
        e.version = Version::HTTP_2;
        let mut out = String::new();
        combined(&e, &mut out);
        assert_eq!(
            out,
            "192.0.2.7 - - [01/Dec/2026:15:12:42 +0000] \"GET /api/mail/inbox HTTP/2.0\" \
             200 42 \"-\" \"-\"\n"
        );
    }

    #[test]
    fn json_strings_escape_what_json_requires() {
        let mut e = entry();
        e.path = "/a\"b\\c\n\u{1}\u{7f}é".to_string();
        let mut out = String::new();
        json(&e, &mut out);
        assert_eq!(out.matches('\n').count(), 1, "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(v["path"], e.path.as_str());
    }

    #[test]
    fn civil_dates_are_right_across_leap_years_and_eras() {
        let cases = [
            (0, (1970, 1, 1)),
            (-1, (1969, 12, 31)),
            (11_016, (2000, 2, 29)),
            (19_782, (2024, 2, 29)),
            (20_788, (2026, 12, 1)),
            (47_540, (2100, 2, 28)),
        ];
        for (days, want) in cases {
            assert_eq!(civil(days), want, "{days}");
        }
    }

    #[test]
    fn durations_are_milliseconds_rounded_to_the_microsecond() {
        let cases = [
            (Duration::ZERO, "0.000"),
            (Duration::from_nanos(499), "0.000"),
            (Duration::from_nanos(500), "0.001"),
            (Duration::from_micros(1_500), "1.500"),
            (Duration::from_nanos(2_999_600), "3.000"),
            (Duration::from_secs(61), "61000.000"),
        ];
        for (d, want) in cases {
            let mut out = String::new();
            millis(d, &mut out);
            assert_eq!(out, want, "{d:?}");
        }
    }

    #[test]
    fn addresses_and_times_are_written_like_display_would() {
        for addr in [
            "192.0.2.7",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::1",
        ] {
            let ip: IpAddr = addr.parse().expect("address");
            let mut out = String::new();
            address(ip, &mut out);
            assert_eq!(out, addr);
        }
        let mut out = String::new();
        rfc3339(UNIX_EPOCH + Duration::from_millis(5), &mut out);
        assert_eq!(out, "1970-01-01T00:00:00.005Z");
        // The second's text is kept: the same second again, then the next ones.
        for (ms, want) in [
            (999, "1970-01-01T00:00:00.999Z"),
            (1_000, "1970-01-01T00:00:01.000Z"),
            (1_796_137_962_123, "2026-12-01T15:12:42.123Z"),
            (1_796_137_962_124, "2026-12-01T15:12:42.124Z"),
            (7, "1970-01-01T00:00:00.007Z"),
        ] {
            let mut out = String::new();
            rfc3339(UNIX_EPOCH + Duration::from_millis(ms), &mut out);
            assert_eq!(out, want);
        }
    }

    proptest::proptest! {
        #[test]
        fn the_word_at_a_time_check_agrees_with_the_byte_at_a_time_one(
            // Mostly printable ASCII, so that both answers come up often.
            bytes in proptest::collection::vec(
                proptest::prop_oneof![9 => 0x20u8..0x7f, 1 => proptest::prelude::any::<u8>()],
                0..40,
            )
        ) {
            let slow = bytes.iter().any(|&b| b < 0x20 || b == 0x7f || b == b'"' || b == b'\\');
            proptest::prop_assert_eq!(needs_escape(&bytes), slow);
        }

        #[test]
        fn any_text_round_trips_through_a_json_line(path in "\\PC*", agent in proptest::prelude::any::<Vec<u8>>()) {
            let mut e = entry();
            e.path = path.clone();
            e.user_agent = Some(Bytes::from(agent.clone()));
            let mut out = String::new();
            json(&e, &mut out);
            let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
            proptest::prop_assert_eq!(v["path"].as_str(), Some(path.as_str()));
            proptest::prop_assert_eq!(v["user_agent"].as_str(), Some(&*String::from_utf8_lossy(&agent)));
        }
    }
}
