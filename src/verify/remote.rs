//! The remote verifier: RFC 7662 token introspection over a pooled HTTP client.
//!
//! It posts `token=…` with HTTP Basic credentials (RFC 7662 §2.1) and reads the JSON
//! answer (§2.2). Anything but a 200 with a parseable body is an error (503 upstream of
//! here), never "inactive": a broken introspection endpoint must not look like a
//! revoked token, and must never let a request through.

use super::{Principal, TokenVerifier, Verdict, VerifyError};
use crate::clock::Clock;
use crate::config::RemoteVerifyConfig;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::sync::Arc;

/// Calls an RFC 7662 endpoint.
pub struct RemoteVerifier {
    client: reqwest::Client,
    url: String,
    client_id: String,
    client_secret: String,
    clock: Arc<dyn Clock>,
}

/// RFC 7662 §2.2 response; only `active` is required.
#[derive(Debug, Deserialize)]
struct IntrospectionAnswer {
    active: bool,
    scope: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    sub: Option<String>,
    exp: Option<u64>,
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
            clock,
        })
    }

    async fn introspect(&self, token: &str) -> Result<Verdict, VerifyError> {
        let response = self
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
        let answer: IntrospectionAnswer = response.json().await.map_err(VerifyError::BadAnswer)?;
        Ok(answer.into_verdict(self.clock.now_unix()))
    }
}

/// Reads an RFC 7662 answer body at `now` (Unix seconds) exactly as the verifier does
/// after a 200 (reqwest's `json()` is `serde_json::from_slice`). Public for the fuzz
/// target `introspection_answer`.
pub fn verdict_from_answer(body: &[u8], now: u64) -> Result<Verdict, serde_json::Error> {
    serde_json::from_slice::<IntrospectionAnswer>(body).map(|answer| answer.into_verdict(now))
}

impl IntrospectionAnswer {
    fn into_verdict(self, now: u64) -> Verdict {
        if !self.active || self.exp.is_some_and(|exp| exp <= now) {
            return Verdict::Inactive;
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
        match Principal::new(sub, client_id, self.username, scopes, self.exp) {
            Some(p) => Verdict::Active(Arc::new(p)),
            // An identity we cannot forward faithfully is not one we let through.
            None => Verdict::Inactive,
        }
    }
}

impl TokenVerifier for RemoteVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, VerifyError>> {
        Box::pin(self.introspect(token))
    }

    fn kind(&self) -> &'static str {
        "remote"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> Verdict {
        serde_json::from_str::<IntrospectionAnswer>(json)
            .expect("test JSON is valid")
            .into_verdict(1_000)
    }

    #[test]
    fn active_answer_becomes_principal_with_scopes() {
        let Verdict::Active(p) = answer(
            r#"{"active":true,"scope":"email email.send","client_id":"app","sub":"alice","exp":2000}"#,
        ) else {
            panic!("expected active");
        };
        assert_eq!(p.sub, "alice");
        assert_eq!(p.client_id, "app");
        assert_eq!(p.scopes, ["email", "email.send"]);
        assert_eq!(p.headers.scope, "email email.send");
    }

    #[test]
    fn inactive_or_expired_answers_are_inactive() {
        assert!(matches!(answer(r#"{"active":false}"#), Verdict::Inactive));
        assert!(matches!(
            answer(r#"{"active":true,"sub":"a","client_id":"c","exp":999}"#),
            Verdict::Inactive
        ));
    }

    #[test]
    fn subject_falls_back_to_username_then_client() {
        let Verdict::Active(p) = answer(r#"{"active":true,"client_id":"svc"}"#) else {
            panic!("expected active");
        };
        assert_eq!(p.sub, "svc");
        assert!(p.scopes.is_empty());
    }

    #[test]
    fn identity_that_cannot_be_a_header_is_refused() {
        assert!(matches!(
            answer(r#"{"active":true,"sub":"a\nb","client_id":"c"}"#),
            Verdict::Inactive
        ));
    }
}
