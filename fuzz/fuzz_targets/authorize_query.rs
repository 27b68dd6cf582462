//! The authorization request: query parsing (`protocol::Params::parse`) and validation
//! (`authorize::validate`) against registered clients. Never panics; never redirects to
//! a URI that is not registered for the client (RFC 6749 §4.1.2.1); what it accepts names
//! a registered redirect URI, allowed and non-empty scopes, the implicit grant only when
//! switched on and allowed, and a well-formed S256 challenge (always, for public clients).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tollgate::config::{ClientConfig, GrantType};
use tollgate::oauth::authorize::{validate, AuthorizeError, ResponseType};
use tollgate::oauth::protocol::{is_valid_verifier_or_challenge, redirect_with, Params};

fn clients() -> &'static [ClientConfig] {
    static CLIENTS: OnceLock<Vec<ClientConfig>> = OnceLock::new();
    CLIENTS.get_or_init(|| {
        let client =
            |id: &str, secret: bool, uris: &[&str], grants: &[GrantType], scopes: &[&str]| {
                ClientConfig {
                    id: id.to_string(),
                    name: id.to_string(),
                    secret_hash: secret.then(|| "sha256:00".to_string()),
                    redirect_uris: uris.iter().map(|u| u.to_string()).collect(),
                    grant_types: grants.to_vec(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    introspect: false,
                    dpop: tollgate::config::DpopMode::Optional,
                }
            };
        vec![
            client(
                "web",
                true,
                &["https://app.example/cb", "https://app.example/cb?x=1"],
                &[GrantType::AuthorizationCode, GrantType::RefreshToken],
                &["email", "email.send"],
            ),
            client(
                "spa",
                false,
                &["http://127.0.0.1:7000/redirect"],
                &[GrantType::AuthorizationCode, GrantType::Implicit],
                &["email"],
            ),
            client(
                "none",
                true,
                &["https://n.example/"],
                &[GrantType::AuthorizationCode],
                &[],
            ),
        ]
    })
}

fn find(id: &str) -> Option<&'static ClientConfig> {
    clients().iter().find(|c| c.id == id)
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(params) = Params::parse(query) else {
        return;
    };
    for allow_implicit in [false, true] {
        match validate(&params, find, allow_implicit, &Default::default()) {
            Ok(req) => {
                let client = find(&req.client_id).expect("a registered client");
                assert!(client.redirect_uris.contains(&req.redirect_uri));
                assert!(params.duplicated().is_none());
                assert!(!req.scopes.is_empty());
                assert!(req.scopes.iter().all(|s| client.scopes.contains(s)));
                match req.response_type {
                    ResponseType::Token => {
                        assert!(allow_implicit && client.grant_types.contains(&GrantType::Implicit))
                    }
                    ResponseType::Code => {
                        assert!(client.grant_types.contains(&GrantType::AuthorizationCode));
                        if client.secret_hash.is_none() {
                            assert!(req.code_challenge.is_some(), "public client without PKCE");
                        }
                    }
                }
                if let Some(c) = &req.code_challenge {
                    assert!(is_valid_verifier_or_challenge(c));
                }
            }
            Err(AuthorizeError::Redirect { to, error }) => {
                let id = params
                    .get("client_id")
                    .expect("a redirect names its client");
                let client = find(id).expect("a redirect is for a registered client");
                assert!(client.redirect_uris.contains(&to.redirect_uri), "{to:?}");
                assert_eq!(to.state.as_deref(), params.get("state"));
                let mut extra = vec![("error", error.code.as_str())];
                if let Some(state) = &to.state {
                    extra.push(("state", state));
                }
                let url = redirect_with(&to.redirect_uri, &extra, to.in_fragment);
                assert!(url.starts_with(&to.redirect_uri));
                // The parameters read back as sent, whatever the state held.
                let sep = if to.in_fragment {
                    '#'
                } else if to.redirect_uri.contains('?') {
                    '&'
                } else {
                    '?'
                };
                let added = &url[to.redirect_uri.len()..];
                assert!(added.starts_with(sep));
                let back: Vec<(String, String)> =
                    serde_urlencoded::from_str(&added[1..]).expect("our own encoding");
                let want: Vec<(String, String)> = extra
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                assert_eq!(back, want);
            }
            Err(AuthorizeError::Page(_)) => {}
        }
    }
});
