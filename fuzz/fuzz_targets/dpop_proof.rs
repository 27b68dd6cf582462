//! The DPoP proof check (`dpop::check`) and the `htu` normaliser (`dpop::htu::normalise`):
//! whatever arrives in a `DPoP` header or an `htu` claim. Never panics; a normalised URL is
//! a fixed point (normalising it again changes nothing) and has no query or fragment; an
//! arbitrary input never passes as a proof (that needs a signature by the `jwk` it names).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::dpop::{self, htu, Expected};

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(url) = htu::normalise(text) {
        assert!(!url.contains(['?', '#']), "{url}");
        assert_eq!(htu::normalise(&url).as_deref(), Some(url.as_str()), "{text}");
    }
    let expected = Expected {
        method: "GET",
        htu: "https://api.example/x",
        access_token: Some("token"),
        now: NOW,
    };
    // A valid proof needs a signature over this exact text by the key it carries, which a
    // fuzzer does not find; if one ever passes, its claims must have been checked.
    if let Ok(proof) = dpop::check(text, &expected) {
        assert!(proof.iat + dpop::MAX_AGE_SECS >= NOW);
    }
});
