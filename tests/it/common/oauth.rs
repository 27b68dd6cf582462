//! The authorization server seen from outside: a config builder (a users file, registered
//! clients, bearer routes to an echo upstream) and a cookie-keeping [`Browser`] that reads
//! the one `<form method="post">` of a page and submits it the way a person's browser would.

pub use super::browser::{Browser, Page};
use super::{metric, TestGateway, Upstream};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The user in the users file, with their password and display name.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland";
pub const USER_NAME: &str = "Alice Liddell";

/// Redirect URIs registered for the code clients. Nothing listens there: the browser
/// stops at the redirect to the client, as the tests read the `Location` instead.
pub const REDIRECT_URI: &str = "http://127.0.0.1:7000/redirect";
pub const SECOND_REDIRECT_URI: &str = "http://127.0.0.1:7000/second";
pub const SPA_REDIRECT_URI: &str = "http://127.0.0.1:7200/app";

/// Consent texts of the two scopes in `[oauth.scopes]`.
pub const EMAIL_TEXT: &str = "Read your email";
pub const SEND_TEXT: &str = "Send email as you";

/// A registered client and the secret it presents (`None`: a public client).
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub id: &'static str,
    pub secret: Option<&'static str>,
}

/// Confidential code client named "Awesome Mail": both scopes, code + refresh.
pub const MAIL_APP: Client = Client {
    id: "mail-app",
    secret: Some("mail-app-secret"),
};
/// A second confidential code client without a `name`, scope `email` only.
pub const OTHER_APP: Client = Client {
    id: "other-app",
    secret: Some("other-app-secret"),
};
/// A public code client (no secret: PKCE required).
pub const PUBLIC_APP: Client = Client {
    id: "public-app",
    secret: None,
};
/// A machine client for client_credentials.
pub const REPORTS: Client = Client {
    id: "reports",
    secret: Some("reports-secret"),
};
/// A resource server allowed to call `/verify`.
pub const RESOURCE_SERVER: Client = Client {
    id: "resource-server",
    secret: Some("resource-server-secret"),
};
/// A first-party client registered for the password grant.
pub const CLI_APP: Client = Client {
    id: "cli-app",
    secret: Some("cli-app-secret"),
};
/// A browser app registered for the implicit grant.
pub const SPA: Client = Client {
    id: "spa",
    secret: None,
};

/// The argon2id hash of [`PASSWORD`], computed once per test process (it is slow).
fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| tollgate::secrets::hash_password(PASSWORD).expect("argon2 hashes"))
}

/// Writes a users file with `names`, each with [`PASSWORD`]; [`USER`] also gets
/// [`USER_NAME`] and an email.
pub fn write_users(path: &std::path::Path, names: &[&str]) {
    let text: String = names
        .iter()
        .map(|name| {
            let extra = if *name == USER {
                format!("name = \"{USER_NAME}\"\nemail = \"alice@example.org\"\n")
            } else {
                String::new()
            };
            format!(
                "[[users]]\nusername = \"{name}\"\npassword_hash = \"{}\"\n{extra}\n",
                password_hash()
            )
        })
        .collect();
    std::fs::write(path, text).expect("write users file");
}

/// `secret_hash = "…"` for a client, or nothing for a public one.
fn secret_line(client: Client) -> String {
    client
        .secret
        .map(|s| {
            format!(
                "secret_hash = \"{}\"\n",
                tollgate::secrets::fast_secret_hash(s)
            )
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- the config

/// The token stores the authorization-server tests run against (one set of tests for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Memory,
    Sqlite,
    /// The machine's Redis, under a key prefix of the test's own.
    Redis,
    /// A Redis Cluster shared by this test process, under a key prefix of the test's own.
    Cluster,
}

impl TestStore {
    pub const ALL: [TestStore; 4] = [
        TestStore::Memory,
        TestStore::Sqlite,
        TestStore::Redis,
        TestStore::Cluster,
    ];
}

/// What varies between the tests' authorization servers.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    store: String,
    /// Redis: the prefix (keys removed when the last clone of the config is dropped).
    redis: Option<Arc<super::redis::RedisPrefix>>,
    code_ttl: String,
    access_token_ttl: String,
    grant_max_lifetime: String,
    allow_implicit: bool,
    allow_password_grant: bool,
    /// Serve over the HTTPS listener too, and talk to it there (see [`AuthServer::url`]).
    tls: bool,
    /// Extra `[server]` keys (limits); none by default.
    server: String,
    /// Extra `[verify]` keys (cache lifetimes); none by default.
    verify: String,
    /// More config after the two standard routes (more `[[routes]]`); none by default.
    extra: String,
    /// Extra `[oauth]` keys (token format, signing keys); none by default.
    oauth: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            store: "memory".to_string(),
            redis: None,
            code_ttl: "60s".to_string(),
            access_token_ttl: "1h".to_string(),
            grant_max_lifetime: "90d".to_string(),
            allow_implicit: false,
            allow_password_grant: false,
            tls: false,
            server: String::new(),
            verify: String::new(),
            extra: String::new(),
            oauth: String::new(),
        }
    }
}

impl AuthConfig {
    pub fn store(mut self, store: &str) -> Self {
        self.store = store.to_string();
        self
    }

    /// Runs on `store`: SQLite in the server's directory, Redis under a fresh prefix.
    pub fn on(mut self, store: TestStore) -> Self {
        self.redis = None;
        self.store = match store {
            TestStore::Memory => "memory".to_string(),
            TestStore::Sqlite => "sqlite:tollgate.db".to_string(),
            TestStore::Redis => {
                self.redis = Some(Arc::new(super::redis::RedisPrefix::new()));
                super::redis::url()
            }
            TestStore::Cluster => self.on_redis(&super::redis::shared_cluster().url()),
        };
        self
    }

    /// Runs on the Redis `url` names (a test's own servers), under a fresh prefix; returns
    /// the store setting.
    fn on_redis(&mut self, url: &str) -> String {
        self.redis = Some(Arc::new(super::redis::RedisPrefix::elsewhere()));
        url.to_string()
    }

    /// Runs on the Redis `url` names (a test's own Sentinel or Cluster) under a fresh prefix.
    pub fn on_url(mut self, url: &str) -> Self {
        self.store = self.on_redis(url);
        self
    }

    /// The Redis key prefix, when the server runs on Redis.
    pub fn redis_prefix(&self) -> Option<&str> {
        self.redis.as_deref().map(|r| r.prefix.as_str())
    }

    pub fn code_ttl(mut self, ttl: &str) -> Self {
        self.code_ttl = ttl.to_string();
        self
    }

    pub fn access_token_ttl(mut self, ttl: &str) -> Self {
        self.access_token_ttl = ttl.to_string();
        self
    }

    pub fn grant_max_lifetime(mut self, lifetime: &str) -> Self {
        self.grant_max_lifetime = lifetime.to_string();
        self
    }

    /// Adds an HTTPS listener (certificate made at run time); the server's `url`, its HTTP
    /// client and [`Browser::for_server`] then all go through it.
    pub fn tls(mut self, on: bool) -> Self {
        self.tls = on;
        self
    }

    pub fn allow_implicit(mut self, on: bool) -> Self {
        self.allow_implicit = on;
        self
    }

    pub fn allow_password_grant(mut self, on: bool) -> Self {
        self.allow_password_grant = on;
        self
    }

    /// Adds `keys` to the `[server]` section.
    pub fn server(mut self, keys: &str) -> Self {
        self.server = keys.to_string();
        self
    }

    /// Adds `keys` to the `[verify]` section.
    pub fn verify(mut self, keys: &str) -> Self {
        self.verify = keys.to_string();
        self
    }

    /// Adds `keys` to the `[oauth]` section.
    pub fn oauth(mut self, keys: &str) -> Self {
        self.oauth = keys.to_string();
        self
    }

    /// Appends `toml` after the standard routes (e.g. another `[[routes]]`).
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra = toml.to_string();
        self
    }

    /// The config body: `[oauth]`, `[users]`, the clients, and two bearer routes to
    /// `upstream`: `mail` (/api/mail, scope `email`) and `send` (/api/send, `email.send`).
    pub fn toml(&self, upstream: &str) -> String {
        let AuthConfig {
            store,
            redis,
            code_ttl,
            access_token_ttl,
            grant_max_lifetime,
            allow_implicit,
            allow_password_grant,
            tls,
            server,
            verify,
            extra,
            oauth,
        } = self;
        let tls_table = if *tls {
            "[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n"
        } else {
            ""
        };
        // Tests that name their own verifier source say so in `verify`.
        let verify_source = if verify.contains("source =") {
            ""
        } else {
            "source = \"local\"\n"
        };
        let store_prefix = redis
            .as_ref()
            .map(|r| format!("store_prefix = \"{}\"\n", r.prefix))
            .unwrap_or_default();
        format!(
            r#"{server}[oauth]
store = "{store}"
{store_prefix}code_ttl = "{code_ttl}"
access_token_ttl = "{access_token_ttl}"
grant_max_lifetime = "{grant_max_lifetime}"
allow_implicit = {allow_implicit}
allow_password_grant = {allow_password_grant}
{oauth}

[oauth.scopes]
email = "{EMAIL_TEXT}"
"email.send" = "{SEND_TEXT}"

[users]
source = "file"
file = "users.toml"

[[clients]]
id = "{mail}"
name = "Awesome Mail"
{mail_secret}redirect_uris = ["{REDIRECT_URI}", "{SECOND_REDIRECT_URI}"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["email", "email.send"]

[[clients]]
id = "{other}"
{other_secret}redirect_uris = ["{REDIRECT_URI}"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["email"]

[[clients]]
id = "{public}"
name = "Pocket Mail"
redirect_uris = ["{REDIRECT_URI}"]
grant_types = ["authorization_code", "refresh_token"]
scopes = ["email"]

[[clients]]
id = "{reports}"
name = "Nightly reports"
{reports_secret}grant_types = ["client_credentials"]
scopes = ["email"]

[[clients]]
id = "{rs}"
name = "Resource server"
{rs_secret}introspect = true

[[clients]]
id = "{cli}"
name = "Mail CLI"
{cli_secret}grant_types = ["password", "refresh_token"]
scopes = ["email", "email.send"]

[[clients]]
id = "{spa}"
name = "Mail SPA"
redirect_uris = ["{SPA_REDIRECT_URI}"]
grant_types = ["implicit"]
scopes = ["email"]

[verify]
{verify_source}{verify}

[[routes]]
name = "mail"
path_prefix = "/api/mail"
upstream = "{upstream}"
auth = "bearer"
scopes = ["email"]

[[routes]]
name = "send"
path_prefix = "/api/send"
upstream = "{upstream}"
auth = "bearer"
scopes = ["email.send"]

{extra}
"#,
            mail = MAIL_APP.id,
            mail_secret = secret_line(MAIL_APP),
            other = OTHER_APP.id,
            other_secret = secret_line(OTHER_APP),
            public = PUBLIC_APP.id,
            reports = REPORTS.id,
            reports_secret = secret_line(REPORTS),
            rs = RESOURCE_SERVER.id,
            rs_secret = secret_line(RESOURCE_SERVER),
            cli = CLI_APP.id,
            cli_secret = secret_line(CLI_APP),
            spa = SPA.id,
            server = super::server_section(&format!("{server}\n{tls_table}")),
        )
    }

    /// Starts an echo upstream and tollgate in a fresh directory with a users file.
    pub async fn spawn(self) -> AuthServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let up = Upstream::echo().await;
        self.spawn_in(dir, up).await
    }

    /// Starts tollgate in `dir` (writing the users file there unless it exists) in front of `up`.
    pub async fn spawn_in(self, dir: tempfile::TempDir, up: Upstream) -> AuthServer {
        let users = dir.path().join("users.toml");
        if !users.exists() {
            write_users(&users, &[USER]);
        }
        let cert = self.tls.then(
            || match std::fs::read_to_string(dir.path().join("cert.pem")) {
                Ok(pem) => pem,
                Err(_) => super::tls::write_self_signed(dir.path()),
            },
        );
        let gw = TestGateway::spawn_in(dir, &self.toml(&up.url())).await;
        let http = match &cert {
            Some(pem) => super::tls::builder(pem, &gw)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("TLS client builds"),
            None => super::client(),
        };
        AuthServer {
            gw,
            up,
            config: self,
            http,
            cert,
        }
    }
}

// ---------------------------------------------------------------- the server

/// tollgate as an authorization server, its echo upstream, and a plain HTTP client.
pub struct AuthServer {
    pub gw: TestGateway,
    pub up: Upstream,
    pub config: AuthConfig,
    pub http: reqwest::Client,
    /// The certificate of the HTTPS listener, when the server was started with TLS.
    pub cert: Option<String>,
}

/// How a client authenticates at the token, revoke and introspection endpoints.
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth {
    /// `client_secret_basic`; for a public client, `client_id` in the body.
    Basic,
    /// `client_id` and `client_secret` in the body.
    Post,
    /// Both at once (not allowed).
    Both,
}

/// An answer of a JSON endpoint.
#[derive(Debug)]
pub struct JsonAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl JsonAnswer {
    async fn read(r: reqwest::Response) -> JsonAnswer {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body read");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
        JsonAnswer {
            status,
            headers,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// The `error` code of an RFC 6749 §5.2 answer.
    pub fn error(&self) -> Option<&str> {
        self.json["error"].as_str()
    }

    pub fn access_token(&self) -> &str {
        self.json["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token ({}): {}", self.status, self.json))
    }

    pub fn refresh_token(&self) -> &str {
        self.json["refresh_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no refresh_token ({}): {}", self.status, self.json))
    }

    /// Asserts an RFC 6749 §5.2 error answer with this status and code, not cacheable.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error: &str) {
        assert_eq!(self.status, status, "{}", self.json);
        assert_eq!(self.error(), Some(error), "{}", self.json);
        assert!(self.json.get("access_token").is_none(), "{}", self.json);
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert!(self
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")));
    }
}

impl AuthServer {
    /// `path` on the public listener: the HTTPS one when started with TLS.
    pub fn url(&self, path: &str) -> String {
        match self.cert {
            Some(_) => super::tls::url(&self.gw, path),
            None => self.gw.url(path),
        }
    }

    /// The users file tollgate reads.
    pub fn users_file(&self) -> std::path::PathBuf {
        self.gw.dir.path().join("users.toml")
    }

    /// Stops tollgate and starts it again in the same directory (same config, same files).
    pub async fn restart(self) -> AuthServer {
        let AuthServer {
            mut gw, up, config, ..
        } = self;
        gw.shutdown().await;
        let TestGateway { dir, .. } = gw;
        config.spawn_in(dir, up).await
    }

    /// `POST /oauth/token` with `form`, the client authenticating the `how` way.
    pub async fn token_as(
        &self,
        client: Client,
        how: ClientAuth,
        form: &[(&str, &str)],
    ) -> JsonAnswer {
        let r = self.authenticated_post(&self.url("/oauth/token"), client, how, form);
        JsonAnswer::read(r.send().await.expect("token request sent")).await
    }

    /// `POST /oauth/token` with Basic client credentials.
    pub async fn token(&self, client: Client, form: &[(&str, &str)]) -> JsonAnswer {
        self.token_as(client, ClientAuth::Basic, form).await
    }

    /// Exchanges a code the way a correct client would (redirect URI, PKCE verifier).
    pub async fn exchange(&self, client: Client, code: &str, verifier: &str) -> JsonAnswer {
        self.token(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    /// `grant_type=refresh_token`, optionally asking for `scope`.
    pub async fn refresh(&self, client: Client, token: &str, scope: Option<&str>) -> JsonAnswer {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        self.token(client, &form).await
    }

    /// Runs the whole browser flow for `MAIL_APP` and exchanges the code: fresh tokens.
    pub async fn tokens(&self, scope: &str) -> JsonAnswer {
        let request = AuthRequest::code(MAIL_APP, scope);
        let code = Browser::for_server(self).code(self, &request).await;
        let answer = self.exchange(MAIL_APP, &code, request.verifier()).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        answer
    }

    /// `POST /oauth/revoke` by `client` (Basic).
    pub async fn revoke(&self, client: Client, token: &str) -> JsonAnswer {
        let r = self.authenticated_post(
            &self.url("/oauth/revoke"),
            client,
            ClientAuth::Basic,
            &[("token", token)],
        );
        JsonAnswer::read(r.send().await.expect("revoke request sent")).await
    }

    /// `POST /verify` on the internal listener as `client`.
    pub async fn verify_as(&self, client: Client, token: &str) -> JsonAnswer {
        let r = self.authenticated_post(
            &self.gw.internal_url("/verify"),
            client,
            ClientAuth::Basic,
            &[("token", token)],
        );
        JsonAnswer::read(r.send().await.expect("verify request sent")).await
    }

    /// `POST /verify` as the resource server; asserts a 200 and returns the answer.
    pub async fn verify(&self, token: &str) -> Value {
        let answer = self.verify_as(RESOURCE_SERVER, token).await;
        assert_eq!(answer.status, 200, "{}", answer.json);
        answer.json
    }

    /// `GET path` through the gateway with `Authorization: Bearer token`.
    pub async fn call(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("gateway request sent");
        let status = r.status();
        let text = r.text().await.expect("body read");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// How long this instance keeps accepting `token` on `/api/mail/inbox` after `since`
    /// (polled every 5 ms); panics past `limit`, or on an answer other than 200 or 401.
    pub async fn refused_after(&self, token: &str, since: Instant, limit: Duration) -> Duration {
        loop {
            let (status, body) = self.call("/api/mail/inbox", token).await;
            if status == 401 {
                return since.elapsed();
            }
            assert_eq!(status, 200, "{body}");
            assert!(since.elapsed() < limit, "still accepted after {limit:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The `X-Auth-Subject` the upstream saw for a successful call.
    pub async fn subject_seen_upstream(&self, token: &str) -> String {
        let (status, echo) = self.call("/api/mail/inbox", token).await;
        assert_eq!(status, 200, "{echo}");
        let subjects = echo["headers"]["x-auth-subject"]
            .as_array()
            .unwrap_or_else(|| panic!("no X-Auth-Subject upstream: {echo}"));
        assert_eq!(subjects.len(), 1, "{echo}");
        subjects[0].as_str().expect("a string").to_string()
    }

    /// A one-label counter on `/metrics`, zero when never bumped.
    pub async fn counter(&self, name: &str, label: &str, value: &str) -> u64 {
        let text = self.gw.metrics().await;
        metric(&text, &format!("{name}{{{label}=\"{value}\"}}")).unwrap_or(0.0) as u64
    }

    fn authenticated_post(
        &self,
        url: &str,
        client: Client,
        how: ClientAuth,
        form: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let mut req = self.http.post(url);
        match (how, client.secret) {
            (ClientAuth::Basic, Some(secret)) => req = req.basic_auth(client.id, Some(secret)),
            (ClientAuth::Basic, None) | (ClientAuth::Post, None) => {
                fields.push(("client_id", client.id))
            }
            (ClientAuth::Post, Some(secret)) => {
                fields.push(("client_id", client.id));
                fields.push(("client_secret", secret));
            }
            (ClientAuth::Both, secret) => {
                let secret = secret.expect("Both needs a confidential client");
                req = req.basic_auth(client.id, Some(secret));
                fields.push(("client_id", client.id));
                fields.push(("client_secret", secret));
            }
        }
        req.form(&fields)
    }
}

// ---------------------------------------------------------------- authorization requests

/// The S256 PKCE challenge of `verifier` (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The query of a `GET /oauth/authorize`, kept as an ordered list so tests can repeat,
/// drop or change any parameter.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub params: Vec<(String, String)>,
    verifier: String,
}

impl AuthRequest {
    /// `response_type=code` for `client` with the registered [`REDIRECT_URI`], a random
    /// `state` and an S256 challenge.
    pub fn code(client: Client, scope: &str) -> AuthRequest {
        let verifier = tollgate::secrets::random_token();
        let params = [
            ("response_type", "code"),
            ("client_id", client.id),
            ("redirect_uri", REDIRECT_URI),
            ("scope", scope),
            ("state", &tollgate::secrets::random_token()),
            ("code_challenge", &pkce_challenge(&verifier)),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        AuthRequest { params, verifier }
    }

    /// `response_type=token` for the implicit client.
    pub fn implicit(scope: &str) -> AuthRequest {
        AuthRequest::code(SPA, scope)
            .set("response_type", "token")
            .set("redirect_uri", SPA_REDIRECT_URI)
            .without("code_challenge")
            .without("code_challenge_method")
    }

    /// Replaces `name`'s value (adding it when absent).
    pub fn set(mut self, name: &str, value: &str) -> AuthRequest {
        self.params.retain(|(k, _)| k != name);
        self.params.push((name.to_string(), value.to_string()));
        self
    }

    /// Adds `name=value` even if `name` is there already.
    pub fn repeat(mut self, name: &str, value: &str) -> AuthRequest {
        self.params.push((name.to_string(), value.to_string()));
        self
    }

    pub fn without(mut self, name: &str) -> AuthRequest {
        self.params.retain(|(k, _)| k != name);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn state(&self) -> &str {
        self.get("state").expect("the request has a state")
    }

    /// The PKCE verifier whose challenge the request carries.
    pub fn verifier(&self) -> &str {
        &self.verifier
    }

    pub fn url(&self, server: &AuthServer) -> String {
        let query = serde_urlencoded::to_string(&self.params).expect("encodable");
        server.url(&format!("/oauth/authorize?{query}"))
    }
}

/// The query parameters of a URL (a repeated name keeps its last value).
pub fn query_params(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The parameters in a URL's fragment (implicit grant answers).
pub fn fragment_params(url: &Url) -> HashMap<String, String> {
    serde_urlencoded::from_str(url.fragment().unwrap_or("")).expect("fragment is form-encoded")
}

/// True when `url` is `redirect_uri` with only a query (or fragment) added.
pub fn is_redirect_to(url: &Url, redirect_uri: &str) -> bool {
    let mut bare = url.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    bare.as_str() == redirect_uri
}
