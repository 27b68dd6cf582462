//! What an active introspection answer must also say before the guard lets a request through
//! (issue 8, finding 8): an access token usable as a Bearer token (`token_type`), within its
//! validity window (`nbf`), from `[verify] issuer` when set (`iss`), and meant for the route
//! when the route names an `audience` (`aud`). Every case runs through both HTTP/1.1 engines.

use crate::common::engines::{Engine, Engines, GET_ENGINES};
use crate::common::{self, now, remote_verify, route, Introspector, Upstream};
use serde_json::{json, Value};
use std::time::Duration;

const ISSUER: &str = "https://as.example.com";
const MAIL_AUD: &str = "https://api.example.com/mail";
const CHALLENGE_INVALID: &str = r#"Bearer realm="tollgate", error="invalid_token""#;

/// An introspector, an echo upstream and a gateway (plain + TLS) with two bearer routes:
/// `mail` (/api/mail, audience [`MAIL_AUD`]) and `any` (/api/any, no audience), both
/// needing scope `email`.
struct Setup {
    introspector: Introspector,
    up: Upstream,
    gw: Engines,
}

impl Setup {
    async fn new(verify_extra: &str) -> Setup {
        let introspector = Introspector::spawn(Duration::ZERO).await;
        let up = Upstream::echo().await;
        let gw = Engines::spawn(&format!(
            "{}{}{}",
            remote_verify(&introspector, verify_extra),
            route(
                "mail",
                "/api/mail",
                &up.url(),
                &format!("scopes = [\"email\"]\naudience = \"{MAIL_AUD}\"")
            ),
            route("any", "/api/any", &up.url(), "scopes = [\"email\"]"),
        ))
        .await;
        Setup {
            introspector,
            up,
            gw,
        }
    }

    /// Adds `token` as an active access token of alice with scope `email`, from [`ISSUER`],
    /// for [`MAIL_AUD`]; `changes` overrides or (with `null`) removes members.
    fn token(&self, token: &str, changes: Value) {
        let mut answer = json!({
            "active": true, "sub": "alice", "username": "alice", "client_id": "mail-app",
            "scope": "email", "exp": now() + 3600, "iat": now(), "token_type": "Bearer",
            "iss": ISSUER, "aud": MAIL_AUD,
        });
        for (k, v) in changes.as_object().expect("an object of changes") {
            match v {
                Value::Null => answer.as_object_mut().expect("object").remove(k),
                v => answer
                    .as_object_mut()
                    .expect("object")
                    .insert(k.clone(), v.clone()),
            };
        }
        self.introspector.insert(token, answer);
    }

    /// Asserts `token` on `path` gets `status` through `engine`; a refusal must be a 401
    /// `invalid_token` that reached no upstream.
    async fn expect(&self, engine: Engine, path: &str, token: &str, status: u16) {
        let hits = self.up.hits();
        let r = self.gw.bearer(engine, path, token).await;
        let got = r.status().as_u16();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| common::without_resource_metadata(v.to_str().expect("ASCII")));
        let body = r.text().await.expect("body");
        assert_eq!(got, status, "{engine:?} {path} {token}: {body}");
        if status == 401 {
            assert_eq!(
                challenge.as_deref(),
                Some(CHALLENGE_INVALID),
                "{engine:?} {token}"
            );
            let json: Value = serde_json::from_str(&body).expect("JSON error body");
            assert_eq!(json["error"], "invalid_token", "{engine:?} {token}");
            assert_eq!(
                self.up.hits(),
                hits,
                "{engine:?} {token} reached the upstream"
            );
        } else {
            assert_eq!(self.up.hits(), hits + 1, "{engine:?} {token}");
        }
    }
}

#[tokio::test]
async fn answers_for_other_token_types_are_refused_on_both_engines() {
    let s = Setup::new(&format!("issuer = \"{ISSUER}\"")).await;
    let cases = [
        ("bearer-type", json!({"token_type": "Bearer"}), 200),
        ("lower-bearer", json!({"token_type": "bearer"}), 200),
        ("access-type", json!({"token_type": "access_token"}), 200),
        ("no-type", json!({"token_type": null}), 200),
        ("refresh", json!({"token_type": "refresh_token"}), 401),
        (
            "refresh-urn",
            json!({"token_type": "urn:ietf:params:oauth:token-type:refresh_token"}),
            401,
        ),
        ("id-token", json!({"token_type": "id_token"}), 401),
        ("bound-bearer", json!({"cnf": {"x5t#S256": "abc"}}), 401),
        ("dpop-no-key", json!({"token_type": "DPoP"}), 401),
    ];
    for (token, changes, status) in cases {
        s.token(token, changes);
        for engine in GET_ENGINES {
            s.expect(engine, "/api/any/inbox", token, status).await;
        }
    }
    // A DPoP-bound token (RFC 9449 §7.1) is accepted only with a proof by its key (see
    // tests/it/dpop.rs); as a bearer token it is refused with a DPoP challenge.
    s.token("dpop", json!({"token_type": "DPoP", "cnf": {"jkt": "abc"}}));
    for engine in GET_ENGINES {
        let hits = s.up.hits();
        let r = s.gw.bearer(engine, "/api/any/inbox", "dpop").await;
        assert_eq!(r.status(), 401, "{engine:?}");
        let challenge = r.headers()["www-authenticate"].to_str().expect("ASCII");
        assert!(
            challenge.starts_with(r#"DPoP realm="tollgate", error="invalid_token""#),
            "{engine:?}: {challenge}"
        );
        assert_eq!(s.up.hits(), hits, "{engine:?}");
    }
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused_on_both_engines() {
    let s = Setup::new("").await;
    s.token("future", json!({"nbf": now() + 3600, "exp": now() + 7200}));
    s.token("current", json!({"nbf": now() - 10}));
    for engine in GET_ENGINES {
        s.expect(engine, "/api/any", "future", 401).await;
        s.expect(engine, "/api/any", "current", 200).await;
    }
}

#[tokio::test]
async fn with_an_issuer_set_answers_from_elsewhere_or_without_iss_are_refused() {
    let s = Setup::new(&format!("issuer = \"{ISSUER}\"")).await;
    s.token("ours", json!({}));
    s.token("theirs", json!({"iss": "https://evil.example.com"}));
    s.token("slash", json!({"iss": format!("{ISSUER}/")}));
    s.token("no-iss", json!({"iss": null}));
    for engine in GET_ENGINES {
        s.expect(engine, "/api/any", "ours", 200).await;
        for token in ["theirs", "slash", "no-iss"] {
            s.expect(engine, "/api/any", token, 401).await;
        }
    }
}

#[tokio::test]
async fn without_an_issuer_set_any_iss_is_accepted() {
    let s = Setup::new("").await;
    s.token("theirs", json!({"iss": "https://evil.example.com"}));
    s.token("no-iss", json!({"iss": null}));
    for engine in GET_ENGINES {
        s.expect(engine, "/api/any", "theirs", 200).await;
        s.expect(engine, "/api/any", "no-iss", 200).await;
    }
}

#[tokio::test]
async fn a_route_with_an_audience_refuses_tokens_for_others_and_a_route_without_takes_any() {
    let s = Setup::new("").await;
    s.token("for-mail", json!({}));
    s.token(
        "among-many",
        json!({"aud": ["https://api.example.com/other", MAIL_AUD]}),
    );
    s.token(
        "for-calendar",
        json!({"aud": "https://api.example.com/calendar"}),
    );
    s.token("no-aud", json!({"aud": null}));
    s.token("prefix-only", json!({"aud": "https://api.example.com"}));
    for engine in GET_ENGINES {
        for token in ["for-mail", "among-many"] {
            s.expect(engine, "/api/mail/inbox", token, 200).await;
            s.expect(engine, "/api/any/inbox", token, 200).await;
        }
        for token in ["for-calendar", "no-aud", "prefix-only"] {
            s.expect(engine, "/api/mail/inbox", token, 401).await;
            s.expect(engine, "/api/any/inbox", token, 200).await;
        }
    }
}

#[tokio::test]
async fn a_cached_answer_never_skips_the_audience_check() {
    let s = Setup::new("").await;
    s.token(
        "for-calendar",
        json!({"aud": "https://api.example.com/calendar"}),
    );
    // The first request caches an active answer; the audience route must still refuse it.
    for engine in GET_ENGINES {
        s.expect(engine, "/api/any", "for-calendar", 200).await;
        s.expect(engine, "/api/mail", "for-calendar", 401).await;
    }
    assert_eq!(
        s.introspector.calls(),
        1,
        "one introspection call: later answers came from the cache"
    );
    let m = s.gw.gw.metrics().await;
    assert_eq!(
        common::count(
            &m,
            "tollgate_guard_decisions_total",
            &[("route", "mail"), ("outcome", "invalid")]
        ),
        2
    );
}

// ---------------------------------------------------------------- the local verifier

const SERVICE_SECRET: &str = "service-secret";

/// A gateway verifying its own tokens: a `client_credentials` client `service` with scope
/// `email`, and routes `own` (audience = the issuer), `other` (another audience) and `any`.
async fn local_gateway(up: &Upstream) -> Engines {
    let secret = tollgate::secrets::fast_secret_hash(SERVICE_SECRET);
    let issuer = "https://gw.example.com";
    Engines::spawn(&format!(
        "[oauth]\nissuer = \"{issuer}\"\nstore = \"memory\"\n[oauth.scopes]\nemail = \"Read your email\"\n\
         [[clients]]\nid = \"service\"\nsecret_hash = \"{secret}\"\ngrant_types = [\"client_credentials\"]\n\
         scopes = [\"email\"]\nintrospect = true\n{}{}{}",
        route("own", "/api/own", &up.url(), &format!("scopes = [\"email\"]\naudience = \"{issuer}\"")),
        route("other", "/api/other", &up.url(), "audience = \"https://elsewhere.example.com\""),
        route("any", "/api/any", &up.url(), ""),
    ))
    .await
}

#[tokio::test]
async fn local_tokens_are_for_the_issuer_and_verify_says_so() {
    let up = Upstream::echo().await;
    let gw = local_gateway(&up).await;
    let token = common::access_token(
        &gw.gw,
        ("service", SERVICE_SECRET),
        &[("grant_type", "client_credentials")],
    )
    .await;
    for engine in GET_ENGINES {
        assert_eq!(gw.bearer(engine, "/api/own", &token).await.status(), 200);
        assert_eq!(gw.bearer(engine, "/api/any", &token).await.status(), 200);
        let r = gw.bearer(engine, "/api/other", &token).await;
        assert_eq!(r.status(), 401, "{engine:?}");
        assert_eq!(
            r.headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(common::without_resource_metadata)
                .as_deref(),
            Some(CHALLENGE_INVALID)
        );
    }
    assert_eq!(up.hits(), 4);
    let answer: Value = common::client()
        .post(gw.gw.internal_url("/verify"))
        .basic_auth("service", Some(SERVICE_SECRET))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .expect("verify")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["active"], true);
    assert_eq!(answer["iss"], "https://gw.example.com");
    assert_eq!(answer["aud"], "https://gw.example.com");
}
