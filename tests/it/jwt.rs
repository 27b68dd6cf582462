//! JWT access tokens (RFC 9068, issue 11): tollgate's tokens checked by an independent JOSE
//! implementation (`jsonwebtoken`) with the keys from `/.well-known/jwks.json`; the guard's
//! refusals; revocation (at once, via the grant, and across instances); key rollover; and
//! `[verify] source = "jwks"` against a JWKS server on loopback.

use crate::common::oauth::{AuthConfig, AuthServer, TestStore, MAIL_APP, REPORTS, USER};
use crate::common::{now, serve, BoxBody, ServerHandle, TestGateway, Upstream};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The issuer of the test servers (the `[oauth] issuer` default).
const ISSUER: &str = "http://127.0.0.1:8080";
/// The audience of the extra route `aud` (path `/api/aud`).
const ROUTE_AUDIENCE: &str = "https://api.example/aud";

/// A PKCS#8 PEM key written into `dir`: its path and PEM text.
fn key_file(dir: &Path, name: &str, alg: tollgate::jwt::Alg) -> (PathBuf, String) {
    let pem = tollgate::jwt::SigningKey::generate_pem(alg).expect("generates");
    let path = dir.join(name);
    std::fs::write(&path, &pem).expect("write key");
    (path, pem)
}

/// The DER inside a PEM.
fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("base64 PEM body")
}

fn encoding_key(pem: &str, alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_der(&der(pem)),
        Algorithm::EdDSA => EncodingKey::from_ed_der(&der(pem)),
        other => panic!("no key for {other:?}"),
    }
}

/// `[oauth]` keys for JWT access tokens signed with `key` (and `previous`).
fn jwt_keys(key: &Path, previous: &[&Path]) -> String {
    let previous: Vec<String> = previous
        .iter()
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    format!(
        "token_format = \"jwt\"\nsigning_key = {:?}\nsigning_keys_previous = [{}]\n",
        key.display().to_string(),
        previous.join(", ")
    )
}

/// A route `aud` (/api/aud, scope email) whose tokens must carry [`ROUTE_AUDIENCE`].
fn audience_route(upstream: &str) -> String {
    format!(
        "[[routes]]\nname = \"aud\"\npath_prefix = \"/api/aud\"\nupstream = \"{upstream}\"\nauth = \"bearer\"\nscopes = [\"email\"]\naudience = \"{ROUTE_AUDIENCE}\"\n"
    )
}

/// A JWT server on `store`, with the key in a directory the caller keeps.
async fn jwt_server(
    keys: &tempfile::TempDir,
    alg: tollgate::jwt::Alg,
    store: TestStore,
) -> (AuthServer, String) {
    let (path, pem) = key_file(keys.path(), "signing.pem", alg);
    let up = Upstream::echo().await;
    let config = AuthConfig::default()
        .on(store)
        .oauth(&jwt_keys(&path, &[]))
        .extra(&audience_route(&up.url()));
    let dir = tempfile::tempdir().expect("temp dir");
    (config.spawn_in(dir, up).await, pem)
}

async fn client_credentials(s: &AuthServer) -> String {
    let answer = s
        .token(
            REPORTS,
            &[("grant_type", "client_credentials"), ("scope", "email")],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    answer.access_token().to_string()
}

async fn get_json(http: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let r = http.get(url).send().await.expect("request sent");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Checks `token` with jsonwebtoken and the server's published keys; returns its claims.
async fn independently_verified(s: &AuthServer, token: &str, alg: Algorithm) -> Value {
    let (status, meta) = get_json(&s.http, &s.url("/.well-known/oauth-authorization-server")).await;
    assert_eq!(status, 200);
    let jwks_uri = meta["jwks_uri"].as_str().expect("jwks_uri advertised");
    assert_eq!(jwks_uri, format!("{ISSUER}/.well-known/jwks.json"));
    let (status, jwks) = get_json(&s.http, &s.url("/.well-known/jwks.json")).await;
    assert_eq!(status, 200);
    let set: JwkSet = serde_json::from_value(jwks).expect("an RFC 7517 JWK Set");
    let header = jsonwebtoken::decode_header(token).expect("a JOSE header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, alg);
    let kid = header.kid.expect("kid in the header");
    let jwk = set.find(&kid).expect("the kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).expect("a usable JWK");
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("jsonwebtoken accepts the token")
        .claims
}

/// Signs `claims` with `header` fields changed from tollgate's usual ones.
fn forge(pem: &str, alg: Algorithm, kid: &str, typ: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.typ = Some(typ.to_string());
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &encoding_key(pem, alg)).expect("signs")
}

fn good_claims() -> Value {
    json!({
        "iss": ISSUER, "sub": USER, "aud": ISSUER, "client_id": MAIL_APP.id,
        "scope": "email", "iat": now(), "exp": now() + 600, "jti": "forged",
    })
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().expect("object") {
        claims[k] = v.clone();
    }
    claims
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

#[tokio::test]
async fn jwt_access_tokens_verify_with_an_independent_jose_library_and_the_published_jwks() {
    for (alg, jose) in [
        (tollgate::jwt::Alg::Es256, Algorithm::ES256),
        (tollgate::jwt::Alg::EdDsa, Algorithm::EdDSA),
    ] {
        let keys = tempfile::tempdir().expect("temp dir");
        let (s, _) = jwt_server(&keys, alg, TestStore::Memory).await;

        // A user's token, from the code flow: username present, refresh token opaque.
        let tokens = s.tokens("email").await;
        let access = tokens.access_token();
        assert!(
            !tokens.refresh_token().contains('.'),
            "refresh tokens stay opaque"
        );
        let claims = independently_verified(&s, access, jose).await;
        assert_eq!(claims["sub"], USER);
        assert_eq!(claims["username"], USER);
        assert_eq!(claims["client_id"], MAIL_APP.id);
        assert_eq!(claims["scope"], "email");
        let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
        assert!(iat.is_some_and(|iat| iat.abs_diff(now()) <= 5), "{claims}");
        assert_eq!(exp.zip(iat).map(|(e, i)| e - i), Some(3600), "{claims}");
        assert!(
            claims["jti"].as_str().is_some_and(|j| j.len() >= 43),
            "{claims}"
        );
        assert_eq!(s.subject_seen_upstream(access).await, USER);
        let introspected = s.verify(access).await;
        assert_eq!(introspected["active"], true, "{introspected}");
        assert_eq!(introspected["username"], USER);

        // A client's token: sub is the client, no username.
        let cc = client_credentials(&s).await;
        let claims = independently_verified(&s, &cc, jose).await;
        assert_eq!(claims["sub"], REPORTS.id);
        assert!(claims.get("username").is_none(), "{claims}");
        let (status, _) = s.call("/api/mail/inbox", &cc).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn an_opaque_server_publishes_no_jwks() {
    let s = AuthConfig::default().spawn().await;
    let (status, meta) = get_json(&s.http, &s.url("/.well-known/oauth-authorization-server")).await;
    assert_eq!(status, 200);
    assert!(meta.get("jwks_uri").is_none(), "{meta}");
    let (status, body) = get_json(&s.http, &s.url("/.well-known/jwks.json")).await;
    assert_eq!(status, 404, "{body}");
    let token = client_credentials(&s).await;
    assert!(!token.contains('.'), "opaque by default");
}

#[tokio::test]
async fn the_guard_refuses_forged_expired_and_misdirected_jwts() {
    let keys = tempfile::tempdir().expect("temp dir");
    let (s, pem) = jwt_server(&keys, tollgate::jwt::Alg::Es256, TestStore::Memory).await;
    let real = client_credentials(&s).await;
    let kid = kid_of(&real);
    let (_, jwks) = get_json(&s.http, &s.url("/.well-known/jwks.json")).await;
    let (_, other_pem) = key_file(keys.path(), "other.pem", tollgate::jwt::Alg::Es256);

    // Our key and our header: accepted, so each refusal below is for its one change.
    let control = forge(&pem, Algorithm::ES256, &kid, "at+jwt", &good_claims());
    let (status, body) = s.call("/api/mail/inbox", &control).await;
    assert_eq!(status, 200, "{body}");

    let (head, rest) = real.split_once('.').expect("compact JWS");
    let signature = rest.split_once('.').expect("three parts").1;
    let evil_claims = with(
        good_claims(),
        json!({"sub": "mallory", "scope": "email email.send"}),
    );
    let tampered = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(evil_claims.to_string())
    );
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
        URL_SAFE_NO_PAD.encode(good_claims().to_string())
    );
    let none_with_signature = format!("{unsigned}{signature}");
    // The classic confusion: HMAC keyed with the public key, as text and as raw bytes.
    let public_x = jwks["keys"][0]["x"].as_str().expect("x");
    let mut hmac_forgeries = Vec::new();
    for secret in [
        jwks.to_string().into_bytes(),
        jwks["keys"][0].to_string().into_bytes(),
        URL_SAFE_NO_PAD.decode(public_x).expect("x"),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".to_string());
        header.kid = Some(kid.clone());
        let key = EncodingKey::from_secret(&secret);
        hmac_forgeries.push(jsonwebtoken::encode(&header, &good_claims(), &key).expect("signs"));
    }
    let cases: Vec<(&str, String)> = vec![
        ("tampered payload", tampered),
        (
            "another key under our kid",
            forge(&other_pem, Algorithm::ES256, &kid, "at+jwt", &good_claims()),
        ),
        ("alg none", none_with_signature),
        ("alg none without signature", unsigned),
        ("HS256 keyed with the JWKS", hmac_forgeries[0].clone()),
        ("HS256 keyed with the JWK", hmac_forgeries[1].clone()),
        ("HS256 keyed with the public key", hmac_forgeries[2].clone()),
        (
            "expired",
            forge(
                &pem,
                Algorithm::ES256,
                &kid,
                "at+jwt",
                &with(good_claims(), json!({"exp": now() - 1})),
            ),
        ),
        (
            "not yet valid",
            forge(
                &pem,
                Algorithm::ES256,
                &kid,
                "at+jwt",
                &with(good_claims(), json!({"nbf": now() + 300})),
            ),
        ),
        (
            "wrong issuer",
            forge(
                &pem,
                Algorithm::ES256,
                &kid,
                "at+jwt",
                &with(good_claims(), json!({"iss": "https://evil.example"})),
            ),
        ),
        (
            "typ JWT",
            forge(&pem, Algorithm::ES256, &kid, "JWT", &good_claims()),
        ),
    ];
    for (what, token) in &cases {
        let (status, body) = s.call("/api/mail/inbox", token).await;
        assert_eq!(status, 401, "{what}: {body}");
    }

    // The route audience: tollgate's tokens are for the issuer, not for this API.
    let (status, _) = s.call("/api/aud/x", &real).await;
    assert_eq!(status, 401, "aud is the issuer");
    let for_api = forge(
        &pem,
        Algorithm::ES256,
        &kid,
        "at+jwt",
        &with(good_claims(), json!({"aud": [ISSUER, ROUTE_AUDIENCE]})),
    );
    let (status, body) = s.call("/api/aud/x", &for_api).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = s.call("/api/mail/x", &for_api).await;
    assert_eq!(status, 200, "a route without audience accepts any");
}

#[tokio::test]
async fn a_revoked_jwt_is_refused_at_once_and_so_is_one_of_a_revoked_grant() {
    let keys = tempfile::tempdir().expect("temp dir");
    let (s, _) = jwt_server(&keys, tollgate::jwt::Alg::EdDsa, TestStore::Sqlite).await;
    let token = client_credentials(&s).await;
    assert_eq!(s.call("/api/mail/inbox", &token).await.0, 200);
    assert_eq!(s.call("/api/mail/inbox", &token).await.0, 200, "cached");
    let revoked = s.revoke(REPORTS, &token).await;
    assert_eq!(revoked.status, 200, "{}", revoked.json);
    assert_eq!(s.call("/api/mail/inbox", &token).await.0, 401, "at once");
    assert_eq!(s.verify(&token).await["active"], false);

    // Refresh-token reuse revokes the grant: both access JWTs die.
    let first = s.tokens("email").await;
    let second = s.refresh(MAIL_APP, first.refresh_token(), None).await;
    assert_eq!(second.status, 200, "{}", second.json);
    for t in [first.access_token(), second.access_token()] {
        assert_eq!(s.call("/api/mail/inbox", t).await.0, 200);
    }
    s.refresh(MAIL_APP, first.refresh_token(), None)
        .await
        .assert_error(400, "invalid_grant");
    for t in [first.access_token(), second.access_token()] {
        assert_eq!(s.call("/api/mail/inbox", t).await.0, 401);
    }
}

#[tokio::test]
async fn a_jwt_revoked_at_one_instance_is_refused_at_another_within_a_second() {
    let keys = tempfile::tempdir().expect("temp dir");
    let (path, _) = key_file(keys.path(), "signing.pem", tollgate::jwt::Alg::Es256);
    let config = AuthConfig::default()
        .on(TestStore::Redis)
        .oauth(&jwt_keys(&path, &[]))
        .verify("cache_ttl = \"60s\"");
    let a = config.clone().spawn().await;
    let b = config.spawn().await;
    let token = client_credentials(&a).await;
    assert_eq!(b.call("/api/mail/inbox", &token).await.0, 200);
    assert_eq!(b.call("/api/mail/inbox", &token).await.0, 200);

    let revoked = a.revoke(REPORTS, &token).await;
    assert_eq!(revoked.status, 200, "{}", revoked.json);
    let answered = Instant::now();
    assert_eq!(
        a.call("/api/mail/inbox", &token).await.0,
        401,
        "at once at A"
    );
    loop {
        let (status, body) = b.call("/api/mail/inbox", &token).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            answered.elapsed() < Duration::from_secs(1),
            "B still accepts the revoked JWT after a second"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "the JWT revocation reached B after {:?}",
        answered.elapsed()
    );
}

#[tokio::test]
async fn key_rollover_keeps_tokens_of_the_previous_key_until_it_is_dropped() {
    let keys = tempfile::tempdir().expect("temp dir");
    let (old, _) = key_file(keys.path(), "old.pem", tollgate::jwt::Alg::Es256);
    let (new, _) = key_file(keys.path(), "new.pem", tollgate::jwt::Alg::EdDsa);
    let base = AuthConfig::default().on(TestStore::Sqlite);
    let s = base.clone().oauth(&jwt_keys(&old, &[])).spawn().await;
    let old_token = client_credentials(&s).await;

    // Restart on the new key, the old one kept as previous.
    let s = restart_with(s, base.clone().oauth(&jwt_keys(&new, &[&old]))).await;
    let new_token = client_credentials(&s).await;
    assert_ne!(kid_of(&new_token), kid_of(&old_token));
    let (_, jwks) = get_json(&s.http, &s.url("/.well-known/jwks.json")).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(
        kids,
        [kid_of(&new_token), kid_of(&old_token)],
        "current first"
    );
    independently_verified(&s, &old_token, Algorithm::ES256).await;
    independently_verified(&s, &new_token, Algorithm::EdDSA).await;
    assert_eq!(s.call("/api/mail/inbox", &old_token).await.0, 200);
    assert_eq!(s.call("/api/mail/inbox", &new_token).await.0, 200);

    // The old key dropped: its tokens are refused.
    let s = restart_with(s, base.oauth(&jwt_keys(&new, &[]))).await;
    assert_eq!(s.call("/api/mail/inbox", &old_token).await.0, 401);
    assert_eq!(s.call("/api/mail/inbox", &new_token).await.0, 200);
}

/// Stops `s` and starts `config` in its directory, in front of its upstream.
async fn restart_with(s: AuthServer, config: AuthConfig) -> AuthServer {
    let AuthServer { mut gw, up, .. } = s;
    gw.shutdown().await;
    let TestGateway { dir, .. } = gw;
    config.spawn_in(dir, up).await
}

// ---------------------------------------------------------------- [verify] source = "jwks"

const IDP: &str = "https://idp.example";

/// A third-party issuer's JWKS endpoint: serves `body` (or fails with `status`), counts hits.
struct JwksServer {
    server: ServerHandle,
    body: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn spawn(jwks: &Value) -> JwksServer {
        let body = Arc::new(Mutex::new((200, jwks.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (b, h) = (body.clone(), hits.clone());
        let server = serve(move |_req| {
            h.fetch_add(1, Ordering::SeqCst);
            let (status, text) = b.lock().expect("not poisoned").clone();
            async move {
                let body: BoxBody = Full::new(Bytes::from(text))
                    .map_err(|never| match never {})
                    .boxed();
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .header("cache-control", "public, max-age=3600")
                    .body(body)
                    .expect("response builds")
            }
        })
        .await;
        JwksServer { server, body, hits }
    }

    fn url(&self) -> String {
        format!("{}/jwks.json", self.server.url())
    }

    fn publish(&self, jwks: &Value) {
        *self.body.lock().expect("not poisoned") = (200, jwks.to_string());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An issuer key: its PEM, its public JWK (derived with ring, not tollgate) and kid.
struct IdpKey {
    pem: String,
    jwk: Value,
    alg: Algorithm,
}

impl IdpKey {
    fn new(kid: &str, alg: Algorithm) -> IdpKey {
        use ring::signature::KeyPair;
        let tg = match alg {
            Algorithm::ES256 => tollgate::jwt::Alg::Es256,
            _ => tollgate::jwt::Alg::EdDsa,
        };
        let pem = tollgate::jwt::SigningKey::generate_pem(tg).expect("generates");
        let rng = ring::rand::SystemRandom::new();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let jwk = match alg {
            Algorithm::ES256 => {
                let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &der(&pem),
                    &rng,
                )
                .expect("P-256");
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]),
                       "y": b64(&point[33..65]), "kid": kid, "use": "sig", "alg": "ES256"})
            }
            _ => {
                let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der(&pem))
                    .expect("Ed25519");
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref()),
                       "kid": kid})
            }
        };
        IdpKey { pem, jwk, alg }
    }

    fn kid(&self) -> &str {
        self.jwk["kid"].as_str().expect("kid")
    }

    fn sign(&self, claims: &Value) -> String {
        forge(&self.pem, self.alg, self.kid(), "at+jwt", claims)
    }
}

fn idp_claims() -> Value {
    json!({
        "iss": IDP, "sub": "bob@idp", "aud": ["https://other.example", ROUTE_AUDIENCE],
        "azp": "spa-client", "scp": ["email", "profile"],
        "iat": now(), "exp": now() + 600, "jti": "idp-1",
    })
}

fn jwks_of(keys: &[&IdpKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

/// A gateway that checks bearer tokens with the JWKS at `jwks_url`.
async fn jwks_gateway(jwks_url: &str) -> AuthServer {
    let up = Upstream::echo().await;
    let config = AuthConfig::default()
        .verify(&format!(
            "source = \"jwks\"\njwks_url = \"{jwks_url}\"\nissuer = \"{IDP}\"\ntimeout = \"2s\"\n"
        ))
        .extra(&audience_route(&up.url()));
    let dir = tempfile::tempdir().expect("temp dir");
    config.spawn_in(dir, up).await
}

#[tokio::test]
async fn jwks_source_accepts_the_issuers_tokens_and_refetches_for_an_unknown_kid() {
    let (k1, k2) = (
        IdpKey::new("k1", Algorithm::ES256),
        IdpKey::new("k2", Algorithm::EdDSA),
    );
    let idp = JwksServer::spawn(&jwks_of(&[&k1])).await;
    let s = jwks_gateway(&idp.url()).await;

    let token = k1.sign(&idp_claims());
    let (status, echo) = s.call("/api/aud/inbox", &token).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["headers"]["x-auth-subject"][0], "bob@idp");
    assert_eq!(echo["headers"]["x-auth-client-id"][0], "spa-client");
    assert_eq!(echo["headers"]["x-auth-scope"][0], "email profile");
    assert_eq!(idp.hits(), 1, "fetched once, on first use");

    // Refusals, with the right key.
    let cases = [
        (
            "wrong issuer",
            k1.sign(&with(idp_claims(), json!({"iss": "https://evil"}))),
        ),
        (
            "expired",
            k1.sign(&with(idp_claims(), json!({"exp": now() - 5}))),
        ),
        (
            "not yet valid",
            k1.sign(&with(idp_claims(), json!({"nbf": now() + 300}))),
        ),
        ("no exp", k1.sign(&with(idp_claims(), json!({"exp": null})))),
        (
            "typ JWT",
            forge(&k1.pem, Algorithm::ES256, "k1", "JWT", &idp_claims()),
        ),
        (
            "EdDSA under an ES256 key's kid",
            forge(&k2.pem, Algorithm::EdDSA, "k1", "at+jwt", &idp_claims()),
        ),
    ];
    for (what, token) in &cases {
        let (status, body) = s.call("/api/aud/inbox", token).await;
        assert_eq!(status, 401, "{what}: {body}");
    }
    assert_eq!(idp.hits(), 1, "refusals under known kids fetch nothing");
    let elsewhere = k1.sign(&with(idp_claims(), json!({"aud": "https://other.example"})));
    assert_eq!(
        s.call("/api/aud/inbox", &elsewhere).await.0,
        401,
        "route audience"
    );
    assert_eq!(s.call("/api/mail/inbox", &elsewhere).await.0, 200);
    let mut hs = Header::new(Algorithm::HS256);
    hs.typ = Some("at+jwt".to_string());
    hs.kid = Some("k1".to_string());
    let hmac = jsonwebtoken::encode(
        &hs,
        &idp_claims(),
        &EncodingKey::from_secret(k1.jwk.to_string().as_bytes()),
    )
    .expect("signs");
    assert_eq!(s.call("/api/aud/inbox", &hmac).await.0, 401, "HS256");

    // The issuer rotates to k2: the unknown kid makes one refetch, at once.
    idp.publish(&jwks_of(&[&k1, &k2]));
    let before = idp.hits();
    let rotated = k2.sign(&idp_claims());
    let (status, body) = s.call("/api/aud/inbox", &rotated).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(idp.hits(), before + 1);
    // More unknown kids within the interval do not hammer the issuer.
    let k3 = IdpKey::new("k3", Algorithm::ES256);
    for i in 0..5 {
        let t = k3.sign(&with(idp_claims(), json!({"jti": format!("k3-{i}")})));
        assert_eq!(s.call("/api/aud/inbox", &t).await.0, 401);
    }
    assert_eq!(idp.hits(), before + 1, "no refetch within the interval");

    // The issuer goes down: the last good set stays in use.
    idp.server.stop();
    let fresh = k2.sign(&with(idp_claims(), json!({"jti": "after-outage"})));
    assert_eq!(s.call("/api/aud/inbox", &fresh).await.0, 200);
}

#[tokio::test]
async fn jwks_source_answers_503_while_no_key_set_was_ever_fetched() {
    let idp = JwksServer::spawn(&json!({"keys": []})).await;
    *idp.body.lock().expect("not poisoned") = (500, "oops".to_string());
    let s = jwks_gateway(&idp.url()).await;
    let k1 = IdpKey::new("k1", Algorithm::ES256);
    let (status, _) = s.call("/api/aud/inbox", &k1.sign(&idp_claims())).await;
    assert_eq!(status, 503, "the verifier cannot tell: fail closed");
    let (status, _) = s.call("/api/aud/inbox", "not-a-jwt").await;
    assert_eq!(status, 401, "a malformed token needs no keys");
}

#[tokio::test]
async fn a_stale_key_set_is_refetched_and_kept_when_the_issuer_is_down() {
    use tollgate::store::token_hash;
    use tollgate::verify::jwks::{JwksVerifier, Timing};
    use tollgate::verify::{TokenVerifier, Verdict};
    let k1 = IdpKey::new("k1", Algorithm::EdDSA);
    let idp = JwksServer::spawn(&jwks_of(&[&k1])).await;
    let cfg = tollgate::config::JwksVerifyConfig {
        jwks_url: idp.url(),
        issuer: IDP.to_string(),
        timeout: Duration::from_secs(2),
    };
    // Keys are stale 200 ms after each fetch (the server says an hour: the ceiling wins).
    let timing = Timing {
        min_max_age: Duration::ZERO,
        max_max_age: Duration::from_millis(200),
        default_max_age: Duration::from_millis(200),
        unknown_kid_interval: Duration::from_secs(5),
        retry_after_failure: Duration::from_millis(100),
    };
    let clock = Arc::new(tollgate::clock::SystemClock);
    let v = JwksVerifier::with_timing(&cfg, clock, timing).expect("builds");
    let active = |r: Result<Verdict, _>| matches!(r, Ok(Verdict::Active(_)));
    let token = k1.sign(&idp_claims());
    assert!(active(v.verify(&token, &token_hash(&token)).await));
    assert_eq!(idp.hits(), 1);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(active(v.verify(&token, &token_hash(&token)).await));
    assert_eq!(idp.hits(), 2, "a stale set is refetched");

    idp.server.stop();
    tokio::time::sleep(Duration::from_millis(250)).await;
    for _ in 0..3 {
        assert!(
            active(v.verify(&token, &token_hash(&token)).await),
            "last good set"
        );
    }
}

// ---------------------------------------------------------------- a cut-off instance

/// B reaches Redis through a proxy the test cuts while A revokes a JWT B has cached. As for
/// opaque tokens: once the revocation stream has been silent `max_stale`, a `deny` route
/// refuses (503) and a JWT B has never seen is not taken on its signature alone (the store
/// cannot be asked: 503); once the link is back the revoked JWT is refused (401) everywhere.
#[tokio::test]
async fn a_jwt_revoked_while_an_instance_is_cut_off_is_honoured_there() {
    let keys = tempfile::tempdir().expect("temp dir");
    let (path, _) = key_file(keys.path(), "signing.pem", tollgate::jwt::Alg::Es256);
    let redis: std::net::SocketAddr = "127.0.0.1:6379".parse().expect("address");
    let proxy = crate::common::tcp_proxy::TcpProxy::start(redis).await;
    let config = AuthConfig::default()
        .on(TestStore::Redis)
        .oauth(&jwt_keys(&path, &[]))
        .verify("cache_ttl = \"60s\"\nmax_stale = \"300ms\"\nstale_grace = \"2s\"");
    let a = config.clone().spawn().await;
    let up = Upstream::echo().await;
    let strict = format!(
        "[[routes]]\nname = \"strict\"\npath_prefix = \"/api/strict\"\nupstream = \"{}\"\n\
         auth = \"bearer\"\nscopes = [\"email\"]\nwhen_store_down = \"deny\"\n",
        up.url()
    );
    let b = config
        .clone()
        .store(&format!("redis://{}/0", proxy.addr))
        .extra(&strict)
        .spawn_in(tempfile::tempdir().expect("temp dir"), up)
        .await;
    let token = client_credentials(&a).await;
    for path in ["/api/mail/inbox", "/api/strict/x"] {
        assert_eq!(b.call(path, &token).await.0, 200, "cached at B: {path}");
    }

    proxy.cut();
    let cut = Instant::now();
    let revoked = a.revoke(REPORTS, &token).await;
    assert_eq!(revoked.status, 200, "{}", revoked.json);
    let unseen = client_credentials(&a).await;
    let mut refused_at = None;
    while cut.elapsed() < Duration::from_secs(2) {
        let (status, body) = b.call("/api/strict/x", &token).await;
        match (status.as_u16(), refused_at) {
            (503, None) => refused_at = Some(cut.elapsed()),
            (503, Some(_)) | (200, None) => {}
            other => panic!("strict route at B: {other:?} {body}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refused_at = refused_at.expect("the deny route refused the JWT while cut off");
    assert!(refused_at <= Duration::from_millis(800), "{refused_at:?}");
    for path in ["/api/mail/inbox", "/api/strict/x"] {
        let (status, body) = b.call(path, &unseen).await;
        assert_eq!(status, 503, "an unseen JWT while cut off at {path}: {body}");
    }

    proxy.restore();
    let restored = Instant::now();
    let mut seen_401 = [false, false];
    while restored.elapsed() < Duration::from_secs(3) && seen_401 != [true, true] {
        for (i, path) in ["/api/mail/inbox", "/api/strict/x"].iter().enumerate() {
            let (status, body) = b.call(path, &token).await;
            assert_ne!(
                status, 200,
                "{path} served a revoked JWT after the link came back: {body}"
            );
            seen_401[i] |= status == 401;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen_401,
        [true, true],
        "both routes refuse the revoked JWT with 401"
    );
    assert_eq!(
        b.call("/api/mail/inbox", &unseen).await.0,
        200,
        "the other JWT is fine"
    );
}

/// RFC 8707: a JWT asked for with `resource` carries it as `aud` (checked by jsonwebtoken
/// with that audience), and the route whose `audience` it is admits it.
#[tokio::test]
async fn a_jwt_asked_for_a_resource_carries_it_as_aud() {
    let keys = tempfile::tempdir().expect("temp dir");
    let (s, _) = jwt_server(&keys, tollgate::jwt::Alg::Es256, TestStore::Memory).await;
    let answer = s
        .token(
            REPORTS,
            &[
                ("grant_type", "client_credentials"),
                ("scope", "email"),
                ("resource", ROUTE_AUDIENCE),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    let token = answer.access_token();
    let (status, jwks) = get_json(&s.http, &s.url("/.well-known/jwks.json")).await;
    assert_eq!(status, 200);
    let set: JwkSet = serde_json::from_value(jwks).expect("an RFC 7517 JWK Set");
    let kid = jsonwebtoken::decode_header(token)
        .expect("a JOSE header")
        .kid
        .expect("kid");
    let key = DecodingKey::from_jwk(set.find(&kid).expect("kid in the JWKS")).expect("JWK");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[ROUTE_AUDIENCE]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("jsonwebtoken accepts it for the route's audience")
        .claims;
    assert_eq!(claims["aud"], ROUTE_AUDIENCE);
    assert_eq!(s.call("/api/aud/x", token).await.0, 200);
    assert_eq!(s.verify(token).await["aud"], ROUTE_AUDIENCE);
}
