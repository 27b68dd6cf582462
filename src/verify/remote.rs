//! The remote verifier: RFC 7662 token introspection over a pooled HTTP client.
//!
//! It posts `token=…` with HTTP Basic credentials (RFC 7662 §2.1) and reads the JSON
//! answer (§2.2). Anything but a 200 with a parseable body of at most [`MAX_ANSWER`] bytes
//! is an error (503 upstream of here), never "inactive": a broken introspection endpoint
//! must not look like a revoked token, and must never let a request through.
//!
//! `active: true` alone is not enough, since the endpoint speaks for every token its server
//! issued (§4): the answer must also describe an access token usable as a Bearer token
//! (`token_type` Bearer, or DPoP with a `cnf.jkt` binding that the guard then checks
//! proofs against; any other `cnf` binding is refused), be within its validity window (`exp`, `nbf`), and
//! come from the configured issuer (`iss`) when `[verify] issuer` is set. The token's `aud`
//! travels in the [`Principal`]; routes check it per request (`gateway.rs`).

use super::{Principal, TokenVerifier, Verdict, VerifyError};
use crate::clock::Clock;
use crate::config::RemoteVerifyConfig;
use crate::store::TokenHash;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;

/// The largest introspection answer read; a real one is a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// How far `nbf` may be ahead of our clock (seconds): the issuer's clock may run a little
/// ahead of ours, and a token it has just issued should not bounce for that.
const NBF_LEEWAY: u64 = 60;

/// Calls an RFC 7662 endpoint.
pub struct RemoteVerifier {
    client: reqwest::Client,
    url: String,
    client_id: String,
    client_secret: String,
    /// `[verify] issuer`: the `iss` every active answer must carry, when set.
    issuer: Option<String>,
    clock: Arc<dyn Clock>,
}

/// RFC 7662 §2.2 response; only `active` is required. A member of the wrong JSON type
/// makes the whole answer unreadable (503), never a guess.
#[derive(Debug, Deserialize)]
struct IntrospectionAnswer {
    active: bool,
    scope: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    sub: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iss: Option<String>,
    aud: Option<Audience>,
    token_type: Option<String>,
    /// RFC 7800 confirmation: present only for a sender-constrained token.
    cnf: Option<serde_json::Value>,
}

/// RFC 7519 §4.1.3: `aud` is one string or an array of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// Why an answer with `active: true` (or not) is treated as inactive; logged at debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    NotActive,
    Expired,
    NotYetValid,
    NotAnAccessToken,
    SenderConstrained,
    WrongIssuer,
    /// `sub`, `client_id` or `scope` cannot travel in an identity header.
    UnforwardableIdentity,
}

impl RemoteVerifier {
    pub fn new(cfg: &RemoteVerifyConfig, clock: Arc<dyn Clock>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            url: cfg.url.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.expose().to_string(),
            issuer: cfg.issuer.clone(),
            clock,
        })
    }

    async fn introspect(&self, token: &str) -> Result<Verdict, VerifyError> {
        let mut response = self
            .client
            .post(&self.url)
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await
            .map_err(VerifyError::Unreachable)?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(VerifyError::Status {
                status: status.as_u16(),
            });
        }
        let too_large = VerifyError::TooLarge { limit: MAX_ANSWER };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(VerifyError::Body)? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        verdict_from_answer(&body, self.clock.now_unix(), self.issuer.as_deref())
            .map_err(VerifyError::BadAnswer)
    }
}

/// Reads an RFC 7662 answer body at `now` (Unix seconds) exactly as the verifier does
/// after a 200; `issuer` is `[verify] issuer`. Public for the fuzz target
/// `introspection_answer`.
pub fn verdict_from_answer(
    body: &[u8],
    now: u64,
    issuer: Option<&str>,
) -> Result<Verdict, serde_json::Error> {
    let answer: IntrospectionAnswer = serde_json::from_slice(body)?;
    Ok(match answer.into_principal(now, issuer) {
        Ok(p) => Verdict::Active(p),
        Err(reason) => {
            tracing::debug!(
                ?reason,
                "introspection answer is not an active access token"
            );
            Verdict::Inactive
        }
    })
}

/// RFC 7662 §2.2 `token_type`, with RFC 6749 §7.1 and RFC 8693 §3 names: an access token
/// presented as a Bearer token, or a DPoP-bound one (RFC 9449 §6.2), which the guard then
/// accepts only with a proof by the bound key.
fn is_access_token(token_type: &str) -> bool {
    token_type.eq_ignore_ascii_case("bearer")
        || is_dpop(token_type)
        || token_type == "access_token"
        || token_type == "urn:ietf:params:oauth:token-type:access_token"
}

fn is_dpop(token_type: &str) -> bool {
    token_type.eq_ignore_ascii_case("dpop")
}

/// The DPoP key thumbprint of a `cnf` (RFC 9449 §6.2): `Ok(None)` without one; refused
/// when it binds the token to anything else (mTLS `x5t#S256`, …), whose proof this guard
/// cannot check, or when `token_type` says DPoP and there is no `jkt`.
fn dpop_binding(
    cnf: Option<&serde_json::Value>,
    token_type: Option<&str>,
) -> Result<Option<String>, Refusal> {
    let jkt = match cnf {
        None => None,
        Some(cnf) => {
            let object = cnf.as_object().ok_or(Refusal::SenderConstrained)?;
            let jkt = object.get("jkt").and_then(|j| j.as_str());
            match jkt {
                Some(j) if object.len() == 1 && !j.is_empty() => Some(j.to_string()),
                _ => return Err(Refusal::SenderConstrained),
            }
        }
    };
    if jkt.is_none() && token_type.is_some_and(is_dpop) {
        return Err(Refusal::SenderConstrained);
    }
    Ok(jkt)
}

impl IntrospectionAnswer {
    /// The principal behind an answer, or why it does not let a request through. `issuer`
    /// is `[verify] issuer`: when set, `iss` must be present and equal to it.
    fn into_principal(self, now: u64, issuer: Option<&str>) -> Result<Principal, Refusal> {
        if !self.active {
            return Err(Refusal::NotActive);
        }
        if self.exp.is_some_and(|exp| exp <= now) {
            return Err(Refusal::Expired);
        }
        if self
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(NBF_LEEWAY))
        {
            return Err(Refusal::NotYetValid);
        }
        // RFC 7662 makes `token_type` optional; when it is there it must say "access token".
        if self
            .token_type
            .as_deref()
            .is_some_and(|t| !is_access_token(t))
        {
            return Err(Refusal::NotAnAccessToken);
        }
        // A key-bound token is only as good as the proof of possession checked with it: the
        // guard checks DPoP proofs against `jkt`; other bindings it cannot check are refused.
        let jkt = dpop_binding(self.cnf.as_ref(), self.token_type.as_deref())?;
        if let Some(want) = issuer {
            if self.iss.as_deref() != Some(want) {
                return Err(Refusal::WrongIssuer);
            }
        }
        let client_id = self.client_id.unwrap_or_default();
        let sub = self
            .sub
            .or_else(|| self.username.clone())
            .unwrap_or_else(|| client_id.clone());
        let scopes = self
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let audiences = match self.aud {
            None => Vec::new(),
            Some(Audience::One(a)) => vec![a],
            Some(Audience::Many(all)) => all,
        };
        // An identity we cannot forward faithfully is not one we let through.
        Principal::new(sub, client_id, self.username, scopes, self.exp)
            .map(|p| p.with_audiences(audiences).with_jkt(jkt))
            .ok_or(Refusal::UnforwardableIdentity)
    }
}

impl TokenVerifier for RemoteVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        _hash: &'a TokenHash,
    ) -> BoxFuture<'a, Result<Verdict, VerifyError>> {
        Box::pin(self.introspect(token))
    }

    fn kind(&self) -> &'static str {
        "remote"
    }
}

#[cfg(test)]
mod tests;
