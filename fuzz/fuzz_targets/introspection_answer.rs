//! The RFC 7662 answer reader (`verify::verdict_from_answer`): how a 200 answer's JSON
//! becomes a verdict. Never panics; is deterministic; an active verdict is never for an
//! expired token and carries an identity that travels in headers unchanged (scopes
//! non-empty, without spaces, and the scope header is exactly their join).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::verify::{verdict_from_answer, Verdict};

const NOW: u64 = 1_700_000_000;
/// `[verify] issuer`: an active verdict must then come from an answer naming it.
const ISSUER: Option<&str> = Some("https://as.example.com");

fuzz_target!(|data: &[u8]| {
    let Ok(verdict) = verdict_from_answer(data, NOW, ISSUER) else {
        return;
    };
    let Verdict::Active(p) = verdict else {
        return;
    };
    assert!(p.exp.is_none_or(|exp| exp > NOW), "expired token active");
    // serde_json skips members it ignores without checking them fully (a string's UTF-8, a
    // number's range), so a generic parse may refuse what the answer reader took.
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        assert_eq!(json.get("active"), Some(&serde_json::Value::Bool(true)));
        assert_eq!(json.get("iss").and_then(|i| i.as_str()), ISSUER);
    }
    assert!(p.scopes.iter().all(|s| !s.is_empty() && !s.contains(' ')));
    assert_eq!(p.headers.scope.as_bytes(), p.scopes.join(" ").as_bytes());
    assert_eq!(p.headers.subject.as_bytes(), p.sub.as_bytes());
    assert_eq!(p.headers.client_id.as_bytes(), p.client_id.as_bytes());
    match verdict_from_answer(data, NOW, ISSUER) {
        Ok(Verdict::Active(q)) => {
            assert_eq!(
                (&q.sub, &q.client_id, &q.scopes, q.exp),
                (&p.sub, &p.client_id, &p.scopes, p.exp)
            )
        }
        _ => panic!("not deterministic"),
    }
});
