//! `Authorization: Basic` client credentials (`oauth::basic_credentials`, RFC 6749 §2.3.1:
//! base64 of the form-encoded id, `:`, the form-encoded secret). Never panics; a header
//! that is present never reads as "no credentials"; what it decodes, encoded again the
//! RFC's way, decodes to the same pair.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use libfuzzer_sys::fuzz_target;
use tollgate::oauth::basic_credentials;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let Ok(found) = basic_credentials(&headers(value)) else {
        return;
    };
    let (id, secret) = found.expect("a present header is never 'no credentials'");
    let encoded = format!("{}:{}", form_encode(&id), form_encode(&secret));
    let value = HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(encoded)))
        .expect("base64 is a valid header value");
    let again = basic_credentials(&headers(value)).expect("our own encoding decodes");
    assert_eq!(again, Some((id, secret)));
});

fn headers(value: HeaderValue) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(AUTHORIZATION, value);
    map
}

fn form_encode(s: &str) -> String {
    let pair = serde_urlencoded::to_string([("v", s)]).expect("a string pair encodes");
    pair["v=".len()..].to_string()
}
