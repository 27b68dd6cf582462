//! The JWT reader (`jwt::claims::open` and `ClaimRules::check`): how a bearer token shaped
//! like a compact JWS is split, its header judged and its claims read. Never panics; a
//! token is opened only with `typ` at+jwt and an allowed `alg`; claims pass only with the
//! configured `iss` and an `exp` after now.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::jwt::claims;
use tollgate::jwt::ClaimRules;

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://as.example.com";

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let rules = ClaimRules {
        issuer: ISSUER.to_string(),
        leeway: 30,
    };
    // The payload alone, as if its signature had checked.
    if let Ok(checked) = rules.check(data, NOW) {
        assert!(checked.exp > NOW, "expired claims accepted");
        // A claim we ignore may hold a number no `Value` can (`1e999`): serde skips it in
        // the claims struct, so only a payload that parses as a `Value` is compared.
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
            assert_eq!(json.get("iss").and_then(|i| i.as_str()), Some(ISSUER));
        }
    }
    let Ok((jws, alg)) = claims::open(token) else {
        return;
    };
    assert!(["ES256", "EdDSA", "RS256"].contains(&alg.name()));
    assert_eq!(jws.header.alg, alg.name());
    let typ = jws.header.typ.as_deref().unwrap_or_default().to_ascii_lowercase();
    assert!(typ == "at+jwt" || typ == "application/at+jwt", "{typ}");
    assert!(token.starts_with(jws.signing_input));
});
