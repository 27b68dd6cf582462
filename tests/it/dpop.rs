//! DPoP (RFC 9449, issue 11): proofs built here with an independent JOSE implementation
//! (`jsonwebtoken`, keys made with `ring`), sent to the token endpoint and to the guard on
//! both engines (the fast lane on the plain listener, hyper on the TLS one). Covers: a bound
//! token and its `/verify` answer; the guard's refusals (wrong method, wrong URL, stale
//! `iat`, reused `jti`, wrong `ath`, another key, a bound token as `Bearer`); `dpop =
//! "required"`; a public client's refresh needing the same key; JWT `cnf.jkt`; the
//! metadata; and a proof spent at one instance refused at another sharing Redis.

use crate::common::engines::{Engine, GET_ENGINES as ENGINES};
use crate::common::oauth::{
    AuthConfig, AuthRequest, AuthServer, Browser, Client, TestStore, PUBLIC_APP, REDIRECT_URI,
    REPORTS, RESOURCE_SERVER,
};
use crate::common::redis::OwnRedis;
use crate::common::slapd::free_port;
use crate::common::{client, now, Upstream};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The issuer of the test servers: the token endpoint a proof names is under it.
const TOKEN_ENDPOINT: &str = "http://127.0.0.1:8080/oauth/token";

/// A client that must bind its tokens (`dpop = "required"`), for client_credentials.
const BOUND_ONLY: Client = Client {
    id: "bound-only",
    secret: Some("bound-only-secret"),
};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A P-256 key a client proves possession of.
struct DpopKey {
    encoding: EncodingKey,
    jwk: Value,
    /// RFC 7638, computed here.
    thumbprint: String,
}

impl DpopKey {
    fn new() -> DpopKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generates");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("parses");
        let point = pair.public_key().as_ref();
        let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        DpopKey {
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            thumbprint: b64(&Sha256::digest(canonical.as_bytes())),
        }
    }

    /// A proof for `htm` on `htu` at `iat`, naming `token` in `ath` when given.
    fn proof_at(&self, htm: &str, htu: &str, token: Option<&str>, iat: u64) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".to_string());
        header.jwk = Some(serde_json::from_value(self.jwk.clone()).expect("a JWK"));
        let mut claims = json!({
            "jti": tollgate::secrets::random_token(),
            "htm": htm,
            "htu": htu,
            "iat": iat,
        });
        if let Some(token) = token {
            claims["ath"] = json!(b64(&Sha256::digest(token.as_bytes())));
        }
        jsonwebtoken::encode(&header, &claims, &self.encoding).expect("signs")
    }

    fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        self.proof_at(htm, htu, token, now())
    }
}

/// An answer of the token endpoint or the guard.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

impl Answer {
    async fn read(r: reqwest::Response) -> Answer {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body read");
        Answer {
            status,
            headers,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
        }
    }

    fn challenge(&self) -> &str {
        self.headers
            .get("www-authenticate")
            .map(|v| v.to_str().expect("ASCII"))
            .unwrap_or("")
    }

    #[track_caller]
    fn assert_dpop_refusal(&self, error: &str) {
        assert_eq!(self.status, 401, "{}", self.json);
        let challenge = self.challenge();
        assert!(
            challenge.starts_with("DPoP ") && challenge.contains(&format!("error=\"{error}\"")),
            "{challenge}"
        );
        assert!(challenge.contains("algs=\""), "{challenge}");
    }
}

/// `POST /oauth/token` by `client` with `form` and, when given, a `DPoP` header.
async fn token(
    s: &AuthServer,
    client: Client,
    form: &[(&str, &str)],
    proof: Option<&str>,
) -> Answer {
    let mut fields = form.to_vec();
    let mut req = s.http.post(s.url("/oauth/token"));
    match client.secret {
        Some(secret) => req = req.basic_auth(client.id, Some(secret)),
        None => fields.push(("client_id", client.id)),
    }
    if let Some(proof) = proof {
        req = req.header("DPoP", proof);
    }
    Answer::read(req.form(&fields).send().await.expect("token request sent")).await
}

/// `/verify`'s answer for `token` (the internal listener is plain HTTP).
async fn verify(s: &AuthServer, token: &str) -> Value {
    let r = client()
        .post(s.gw.internal_url("/verify"))
        .basic_auth(RESOURCE_SERVER.id, RESOURCE_SERVER.secret)
        .form(&[("token", token)])
        .send()
        .await
        .expect("verify request sent");
    assert_eq!(r.status(), 200);
    r.json().await.expect("JSON")
}

/// A client_credentials token for `client`, bound to `key` when given.
async fn machine_token(s: &AuthServer, client: Client, key: Option<&DpopKey>) -> Answer {
    let proof = key.map(|k| k.proof("POST", TOKEN_ENDPOINT, None));
    let form = [("grant_type", "client_credentials"), ("scope", "email")];
    token(s, client, &form, proof.as_deref()).await
}

/// The URL of `path` on `engine`'s listener, as the client sends it (and a proof names it).
fn url(s: &AuthServer, engine: Engine, path: &str) -> String {
    match engine {
        Engine::FastLane => s.gw.url(path),
        // The TLS listener: a GET there takes the fast lane over TLS, a POST hyper.
        _ => s.url(path),
    }
}

/// `method path` through `engine` with `Authorization: {scheme} {token}` and a `DPoP`
/// header when `proof` is given.
async fn call(
    s: &AuthServer,
    engine: Engine,
    method: &str,
    path: &str,
    auth: &str,
    proof: Option<&str>,
) -> Answer {
    let http = match engine {
        Engine::FastLane => client(),
        _ => s.http.clone(),
    };
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut req = http
        .request(method, url(s, engine, path))
        .header("Authorization", auth);
    if let Some(proof) = proof {
        req = req.header("DPoP", proof);
    }
    Answer::read(req.send().await.expect("gateway request sent")).await
}

/// A server with TLS (both engines), the extra client `BOUND_ONLY` and `oauth` keys.
async fn server(store: TestStore, oauth: &str) -> AuthServer {
    let extra = format!(
        "[[clients]]\nid = \"{}\"\nsecret_hash = \"{}\"\ngrant_types = [\"client_credentials\"]\nscopes = [\"email\"]\ndpop = \"required\"\n",
        BOUND_ONLY.id,
        tollgate::secrets::fast_secret_hash(BOUND_ONLY.secret.expect("confidential")),
    );
    AuthConfig::default()
        .on(store)
        .tls(true)
        .oauth(oauth)
        .extra(&extra)
        .spawn()
        .await
}

#[tokio::test]
async fn a_proof_at_the_token_endpoint_binds_the_token_to_its_key() {
    let s = server(TestStore::Memory, "").await;
    let key = DpopKey::new();
    let answer = machine_token(&s, REPORTS, Some(&key)).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["token_type"], "DPoP");
    let token = answer.json["access_token"].as_str().expect("a token");
    let seen = verify(&s, token).await;
    assert_eq!(seen["token_type"], "DPoP", "{seen}");
    assert_eq!(seen["cnf"], json!({"jkt": key.thumbprint}), "{seen}");

    // Without a proof: a plain bearer token, as before.
    let plain = machine_token(&s, REPORTS, None).await;
    assert_eq!(plain.json["token_type"], "Bearer", "{}", plain.json);
    let seen = verify(&s, plain.json["access_token"].as_str().expect("a token")).await;
    assert_eq!(seen["token_type"], "Bearer");
    assert!(seen.get("cnf").is_none(), "{seen}");

    let meta: Value = s
        .http
        .get(s.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("JSON");
    let algs = meta["dpop_signing_alg_values_supported"]
        .as_array()
        .expect("advertised");
    assert!(
        algs.contains(&json!("ES256")) && algs.contains(&json!("EdDSA")),
        "{meta}"
    );
}

#[tokio::test]
async fn bad_proofs_at_the_token_endpoint_are_refused() {
    let s = server(TestStore::Memory, "").await;
    let key = DpopKey::new();
    let form = [("grant_type", "client_credentials"), ("scope", "email")];
    let good = key.proof("POST", TOKEN_ENDPOINT, None);
    assert_eq!(token(&s, REPORTS, &form, Some(&good)).await.status, 200);
    let cases = [
        ("reused jti", good),
        ("wrong method", key.proof("GET", TOKEN_ENDPOINT, None)),
        (
            "wrong URL",
            key.proof("POST", "http://127.0.0.1:8080/oauth/revoke", None),
        ),
        (
            "stale iat",
            key.proof_at("POST", TOKEN_ENDPOINT, None, now() - 600),
        ),
        ("not a JWT", "not-a-proof".to_string()),
    ];
    for (why, proof) in cases {
        let answer = token(&s, REPORTS, &form, Some(&proof)).await;
        assert_eq!(answer.status, 400, "{why}: {}", answer.json);
        assert_eq!(answer.json["error"], "invalid_dpop_proof", "{why}");
    }
}

#[tokio::test]
async fn a_client_that_requires_dpop_gets_no_unbound_token() {
    let s = server(TestStore::Memory, "").await;
    let answer = machine_token(&s, BOUND_ONLY, None).await;
    assert_eq!(answer.status, 400, "{}", answer.json);
    assert_eq!(answer.json["error"], "invalid_dpop_proof");
    let key = DpopKey::new();
    let answer = machine_token(&s, BOUND_ONLY, Some(&key)).await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["token_type"], "DPoP");
}

#[tokio::test]
async fn the_guard_takes_a_bound_token_only_with_a_fresh_proof_by_its_key() {
    let s = server(TestStore::Memory, "").await;
    let key = DpopKey::new();
    let answer = machine_token(&s, REPORTS, Some(&key)).await;
    let token = answer.json["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    let auth = format!("DPoP {token}");
    let path = "/api/mail/inbox";
    for engine in ENGINES {
        let htu = url(&s, engine, path);
        // Valid, on each engine, and a POST (which hyper serves) too.
        let proof = key.proof("GET", &htu, Some(&token));
        let ok = call(&s, engine, "GET", path, &auth, Some(&proof)).await;
        assert_eq!(ok.status, 200, "{engine:?}: {}", ok.json);
        assert_eq!(
            ok.json["headers"]["x-auth-subject"][0], REPORTS.id,
            "{engine:?}"
        );
        let post = key.proof("POST", &htu, Some(&token));
        let posted = call(&s, engine, "POST", path, &auth, Some(&post)).await;
        assert_eq!(posted.status, 200, "{engine:?} POST: {}", posted.json);

        let another = DpopKey::new();
        let cases = [
            ("reused jti", proof.clone(), "invalid_dpop_proof"),
            (
                "wrong method",
                key.proof("POST", &htu, Some(&token)),
                "invalid_dpop_proof",
            ),
            (
                "wrong URL",
                key.proof("GET", &url(&s, engine, "/api/send/x"), Some(&token)),
                "invalid_dpop_proof",
            ),
            (
                "stale iat",
                key.proof_at("GET", &htu, Some(&token), now() - 600),
                "invalid_dpop_proof",
            ),
            (
                "wrong ath",
                key.proof("GET", &htu, Some("another-token")),
                "invalid_dpop_proof",
            ),
            (
                "another key",
                another.proof("GET", &htu, Some(&token)),
                "invalid_dpop_proof",
            ),
        ];
        for (why, proof, error) in cases {
            let refused = call(&s, engine, "GET", path, &auth, Some(&proof)).await;
            assert_eq!(refused.json["error"], error, "{engine:?} {why}");
            refused.assert_dpop_refusal(error);
        }
        // No proof at all under the DPoP scheme.
        let bare = call(&s, engine, "GET", path, &auth, None).await;
        bare.assert_dpop_refusal("invalid_dpop_proof");
        // The bound token as a bearer token, even with a good proof beside it.
        let fresh = key.proof("GET", &htu, Some(&token));
        let bearer = call(
            &s,
            engine,
            "GET",
            path,
            &format!("Bearer {token}"),
            Some(&fresh),
        )
        .await;
        bearer.assert_dpop_refusal("invalid_token");
    }
    // Only the valid requests reached the upstream: one GET and one POST per engine.
    assert_eq!(s.up.hits(), 4);
}

#[tokio::test]
async fn an_unbound_token_keeps_working_as_bearer_and_is_refused_as_dpop() {
    let s = server(TestStore::Memory, "").await;
    let answer = machine_token(&s, REPORTS, None).await;
    let token = answer.json["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    let path = "/api/mail/inbox";
    for engine in ENGINES {
        let ok = call(&s, engine, "GET", path, &format!("Bearer {token}"), None).await;
        assert_eq!(ok.status, 200, "{engine:?}: {}", ok.json);
        let key = DpopKey::new();
        let proof = key.proof("GET", &url(&s, engine, path), Some(&token));
        let as_dpop = call(
            &s,
            engine,
            "GET",
            path,
            &format!("DPoP {token}"),
            Some(&proof),
        )
        .await;
        as_dpop.assert_dpop_refusal("invalid_token");
    }
}

#[tokio::test]
async fn a_jwt_bound_token_carries_cnf_jkt_and_passes_the_guard_with_a_proof() {
    let keys = tempfile::tempdir().expect("temp dir");
    let pem = tollgate::jwt::SigningKey::generate_pem(tollgate::jwt::Alg::Es256).expect("key");
    let path = keys.path().join("signing.pem");
    std::fs::write(&path, pem).expect("write key");
    let oauth = format!(
        "token_format = \"jwt\"\nsigning_key = {:?}\n",
        path.display().to_string()
    );
    let s = server(TestStore::Memory, &oauth).await;
    let key = DpopKey::new();
    let answer = machine_token(&s, REPORTS, Some(&key)).await;
    assert_eq!(answer.json["token_type"], "DPoP", "{}", answer.json);
    let token = answer.json["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON");
    assert_eq!(claims["cnf"], json!({"jkt": key.thumbprint}), "{claims}");
    let path = "/api/mail/inbox";
    let engine = Engine::FastLane;
    let proof = key.proof("GET", &url(&s, engine, path), Some(&token));
    let ok = call(
        &s,
        engine,
        "GET",
        path,
        &format!("DPoP {token}"),
        Some(&proof),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    let bearer = call(&s, engine, "GET", path, &format!("Bearer {token}"), None).await;
    bearer.assert_dpop_refusal("invalid_token");
}

#[tokio::test]
async fn a_public_clients_bound_refresh_token_needs_the_same_key() {
    let s = server(TestStore::Memory, "").await;
    let key = DpopKey::new();
    let request = AuthRequest::code(PUBLIC_APP, "email");
    let code = Browser::for_server(&s).code(&s, &request).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", request.verifier()),
    ];
    let proof = key.proof("POST", TOKEN_ENDPOINT, None);
    let first = token(&s, PUBLIC_APP, &form, Some(&proof)).await;
    assert_eq!(first.status, 200, "{}", first.json);
    assert_eq!(first.json["token_type"], "DPoP");
    let refresh = first.json["refresh_token"]
        .as_str()
        .expect("a refresh token");
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];

    // Without a proof, or with another key's: refused, and the refresh token not spent.
    let none = token(&s, PUBLIC_APP, &form, None).await;
    assert_eq!(none.json["error"], "invalid_dpop_proof", "{}", none.json);
    let other = DpopKey::new().proof("POST", TOKEN_ENDPOINT, None);
    let wrong = token(&s, PUBLIC_APP, &form, Some(&other)).await;
    assert_eq!(wrong.json["error"], "invalid_dpop_proof", "{}", wrong.json);

    let same = key.proof("POST", TOKEN_ENDPOINT, None);
    let next = token(&s, PUBLIC_APP, &form, Some(&same)).await;
    assert_eq!(next.status, 200, "{}", next.json);
    assert_eq!(next.json["token_type"], "DPoP");
    let access = next.json["access_token"].as_str().expect("a token");
    assert_eq!(verify(&s, access).await["cnf"]["jkt"], key.thumbprint);
}

#[tokio::test]
async fn a_proof_spent_at_one_instance_is_refused_at_another_on_the_same_redis() {
    replayed_at_another_instance(AuthConfig::default().on(TestStore::Redis)).await;
}

#[tokio::test]
async fn a_proof_spent_at_one_instance_is_refused_at_another_on_the_same_sqlite_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("shared.db");
    replayed_at_another_instance(AuthConfig::default().store(&format!("sqlite:{}", db.display())))
        .await;
}

/// Two instances on the store of `config`: a proof accepted at the first is refused at the
/// second, which has never seen it itself.
async fn replayed_at_another_instance(config: AuthConfig) {
    let first = config.clone().spawn().await;
    let second = config
        .spawn_in(tempfile::tempdir().expect("dir"), Upstream::echo().await)
        .await;
    let key = DpopKey::new();
    let answer = machine_token(&first, REPORTS, Some(&key)).await;
    let token = answer.json["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    let auth = format!("DPoP {token}");
    let path = "/api/mail/inbox";
    // One proof, one URL: both instances are reached as http://127.0.0.1:PORT, so make the
    // proof name the first and send it to the first, then replay it to the second under
    // that URL's authority (a Host header naming the first).
    let htu = first.gw.url(path);
    let proof = key.proof("GET", &htu, Some(&token));
    let ok = call(&first, Engine::FastLane, "GET", path, &auth, Some(&proof)).await;
    assert_eq!(ok.status, 200, "{}", ok.json);
    let host = htu
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("an authority")
        .to_string();
    let replayed = client()
        .get(second.gw.url(path))
        .header("Host", host)
        .header("Authorization", &auth)
        .header("DPoP", &proof)
        .send()
        .await
        .expect("sent");
    let replayed = Answer::read(replayed).await;
    assert_eq!(
        replayed.json["error"], "invalid_dpop_proof",
        "{}",
        replayed.json
    );
    assert!(
        replayed.json["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("used before")),
        "{}",
        replayed.json
    );
}

#[tokio::test]
async fn a_bound_token_without_the_routes_scope_gets_a_dpop_insufficient_scope() {
    let s = server(TestStore::Memory, "").await;
    let key = DpopKey::new();
    let answer = machine_token(&s, REPORTS, Some(&key)).await;
    let token = answer.json["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    // /api/send needs `email.send`; the token has `email` only.
    let path = "/api/send/outbox";
    for engine in ENGINES {
        let proof = key.proof("GET", &url(&s, engine, path), Some(&token));
        let refused = call(
            &s,
            engine,
            "GET",
            path,
            &format!("DPoP {token}"),
            Some(&proof),
        )
        .await;
        assert_eq!(refused.status, 403, "{engine:?}: {}", refused.json);
        let challenge = refused.challenge();
        assert!(
            challenge.starts_with(
                r#"DPoP realm="tollgate", error="insufficient_scope", scope="email.send""#
            ),
            "{engine:?}: {challenge}"
        );
    }
    assert_eq!(s.up.hits(), 0);
}

#[tokio::test]
async fn while_redis_is_down_a_proof_follows_the_routes_when_store_down() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let strict = r#"
[[routes]]
name = "strict"
path_prefix = "/api/strict"
upstream = "UPSTREAM"
auth = "bearer"
scopes = ["email"]
when_store_down = "deny"
"#;
    let up = Upstream::echo().await;
    let s = AuthConfig::default()
        .store(&format!("redis://127.0.0.1:{port}/0"))
        .verify("cache_ttl = \"60s\"\nmax_stale = \"10s\"\nstale_grace = \"60s\"")
        .extra(&strict.replace("UPSTREAM", &up.url()))
        .spawn_in(tempfile::tempdir().expect("dir"), up)
        .await;
    let key = DpopKey::new();
    let answer = machine_token(&s, REPORTS, Some(&key)).await;
    let token = answer.json["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    let auth = format!("DPoP {token}");
    let get = |path: &'static str| {
        let (s, key, token, auth) = (&s, &key, token.clone(), auth.clone());
        async move {
            let proof = key.proof("GET", &s.gw.url(path), Some(&token));
            let answer = call(s, Engine::FastLane, "GET", path, &auth, Some(&proof)).await;
            (answer, proof)
        }
    };
    // Verified (and cached) on both routes while Redis is up.
    assert_eq!(get("/api/mail/inbox").await.0.status, 200);
    assert_eq!(get("/api/strict/x").await.0.status, 200);

    redis.stop();
    // `deny`: a proof that cannot be recorded where every instance sees it is refused.
    let (denied, _) = get("/api/strict/x").await;
    assert_eq!(denied.status, 503, "{}", denied.json);
    // `serve_cached`: the cached verdict and this process's record of the proof suffice...
    let (served, proof) = get("/api/mail/inbox").await;
    assert_eq!(served.status, 200, "{}", served.json);
    // ... and that record still refuses the proof a second time.
    let replay = call(
        &s,
        Engine::FastLane,
        "GET",
        "/api/mail/inbox",
        &auth,
        Some(&proof),
    )
    .await;
    replay.assert_dpop_refusal("invalid_dpop_proof");
}
