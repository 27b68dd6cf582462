//! `[verify] source = "jwks"`: RFC 9068 access tokens of a third-party issuer, checked with
//! the keys it publishes at `jwks_url` (RFC 7517), with no call per token.
//!
//! Keys: fetched on first use, kept for the answer's `Cache-Control: max-age` (clamped to
//! [`MIN_MAX_AGE`]..[`MAX_MAX_AGE`], [`DEFAULT_MAX_AGE`] without one). A token naming a
//! `kid` the set lacks (the issuer rotated) refetches at once, at most once per
//! [`UNKNOWN_KID_INTERVAL`]. When a refetch fails the last good set stays in use (logged),
//! and is tried again after [`RETRY_AFTER_FAILURE`]; only when no set was ever had does
//! the guard answer 503. While a stale set is being refetched, other requests go on with
//! it rather than wait.
//!
//! Tokens: `typ` must be `at+jwt` (RFC 9068 §4; tokens typed plain `JWT`, such as ID
//! tokens, are refused, which is what keeps an ID token from opening an API); `alg` ES256,
//! EdDSA or RS256 and the key's own; `iss` exactly `[verify] issuer`; `exp` required and in
//! the future; `nbf`/`iat` not in the future (30 s leeway); `sub` and `client_id` (or
//! `azp`) required. Scopes from `scope` (space-separated) or `scp` (array or string);
//! audiences from `aud` for the routes' `audience` check. A token without `kid` is checked
//! only when the set has exactly one key of its `alg`.

use super::{Principal, TokenVerifier, Verdict, VerifyError};
use crate::clock::Clock;
use crate::config::JwksVerifyConfig;
use crate::jwt::claims::{self, Checked};
use crate::jwt::compact::Header;
use crate::jwt::{Alg, ClaimRules, PublicKey, Refusal};
use crate::store::TokenHash;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Shortest time a fetched key set is kept, whatever the issuer says.
pub const MIN_MAX_AGE: Duration = Duration::from_secs(60);
/// Longest time a fetched key set is kept before it is fetched again.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long a key set without `Cache-Control: max-age` is kept.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// Least time between two refetches caused by unknown `kid`s.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(5);
/// After a failed fetch, the next one waits this long.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Largest key set read.
const MAX_JWKS_BYTES: usize = 512 * 1024;
/// Seconds an `nbf`/`iat` may be ahead of this clock.
const LEEWAY_SECS: u64 = 30;

/// Timing of key-set refreshes (the defaults above; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub min_max_age: Duration,
    pub max_max_age: Duration,
    pub default_max_age: Duration,
    pub unknown_kid_interval: Duration,
    pub retry_after_failure: Duration,
}

/// Why the key set could not be had.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS URL is unreachable")]
    Unreachable(#[source] reqwest::Error),
    #[error("the JWKS URL answered {status}")]
    Status { status: u16 },
    #[error("the JWKS could not be read")]
    Body(#[source] reqwest::Error),
    #[error("the JWKS is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the answer is not a JWK Set")]
    NotJwks(#[source] serde_json::Error),
    #[error("no key was fetched yet, and the last attempt failed moments ago")]
    NotYet,
}

/// Checks third-party JWTs with the issuer's published keys.
pub struct JwksVerifier {
    http: reqwest::Client,
    url: String,
    rules: ClaimRules,
    clock: Arc<dyn Clock>,
    timing: Timing,
    state: RwLock<KeyState>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeyState {
    keys: Arc<Vec<PublicKey>>,
    /// Whether a set was ever fetched.
    fetched: bool,
    /// Fetch again after this.
    fresh_until: Option<Instant>,
    /// No fetch before this (after a failure).
    hold_until: Option<Instant>,
    /// The last refetch caused by an unknown `kid`.
    unknown_kid_at: Option<Instant>,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<serde_json::Value>,
}

/// Why a refetch is attempted.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reason {
    Stale,
    UnknownKid,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            min_max_age: MIN_MAX_AGE,
            max_max_age: MAX_MAX_AGE,
            default_max_age: DEFAULT_MAX_AGE,
            unknown_kid_interval: UNKNOWN_KID_INTERVAL,
            retry_after_failure: RETRY_AFTER_FAILURE,
        }
    }
}

// === impl JwksVerifier ===

impl JwksVerifier {
    pub fn new(cfg: &JwksVerifyConfig, clock: Arc<dyn Clock>) -> Result<Self, reqwest::Error> {
        Self::with_timing(cfg, clock, Timing::default())
    }

    pub fn with_timing(
        cfg: &JwksVerifyConfig,
        clock: Arc<dyn Clock>,
        timing: Timing,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()?;
        Ok(Self {
            http,
            url: cfg.jwks_url.clone(),
            rules: ClaimRules {
                issuer: cfg.issuer.clone(),
                leeway: LEEWAY_SECS,
            },
            clock,
            timing,
            state: RwLock::new(KeyState::default()),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    async fn check(&self, token: &str) -> Result<Verdict, VerifyError> {
        let checked = match self.checked(token).await? {
            Ok(c) => c,
            Err(refusal) => {
                tracing::debug!(%refusal, "JWT refused");
                return Ok(Verdict::Inactive);
            }
        };
        let principal = Principal::new(
            checked.sub,
            checked.client_id,
            checked.username,
            checked.scopes,
            Some(checked.exp),
        );
        Ok(match principal {
            Some(p) => Verdict::Active(p.with_audiences(checked.audiences).with_jkt(checked.jkt)),
            None => Verdict::Inactive,
        })
    }

    /// The outer error is "cannot tell" (503), the inner one "not an active token".
    async fn checked(&self, token: &str) -> Result<Result<Checked, Refusal>, VerifyError> {
        let (jws, alg) = match claims::open(token) {
            Ok(opened) => opened,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let Some(key) = self.key_for(&jws.header, alg).await? else {
            return Ok(Err(Refusal::UnknownKey));
        };
        if let Err(refusal) = claims::check_signature(&jws, alg, &key) {
            return Ok(Err(refusal));
        }
        Ok(self.rules.check(&jws.payload, self.clock.now_unix()))
    }

    /// The key a token's header names, refetching the set when it is stale or lacks the
    /// `kid`. `Err` only when no set was ever had.
    async fn key_for(&self, header: &Header, alg: Alg) -> Result<Option<PublicKey>, VerifyError> {
        let (keys, fetched, stale) = self.snapshot();
        let keys = if !fetched {
            self.refresh(Reason::Stale, true).await?;
            self.snapshot().0
        } else if stale {
            // Others go on with the stale set while one request refetches it.
            self.refresh(Reason::Stale, false).await?;
            self.snapshot().0
        } else {
            keys
        };
        if let Some(key) = find(&keys, header.kid.as_deref(), alg) {
            return Ok(Some(key.clone()));
        }
        if header.kid.is_none() || !self.refresh(Reason::UnknownKid, true).await? {
            return Ok(None);
        }
        Ok(find(&self.snapshot().0, header.kid.as_deref(), alg).cloned())
    }

    /// The current keys, whether any were fetched, and whether they are due a refetch.
    fn snapshot(&self) -> (Arc<Vec<PublicKey>>, bool, bool) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let stale =
            state.fresh_until.is_none_or(|t| now >= t) && state.hold_until.is_none_or(|t| now >= t);
        (state.keys.clone(), state.fetched, stale)
    }

    /// Refetches the set if `reason` still calls for it; `wait` says whether to wait for a
    /// fetch another request is making. Returns whether a new set was fetched.
    async fn refresh(&self, reason: Reason, wait: bool) -> Result<bool, VerifyError> {
        let _guard = if wait {
            self.fetching.lock().await
        } else {
            match self.fetching.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(false),
            }
        };
        let now = Instant::now();
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            let held = state.hold_until.is_some_and(|t| now < t);
            let due = match reason {
                Reason::Stale => state.fresh_until.is_none_or(|t| now >= t) && !held,
                Reason::UnknownKid => {
                    !held
                        && state
                            .unknown_kid_at
                            .is_none_or(|t| now >= t + self.timing.unknown_kid_interval)
                }
            };
            if !due {
                return match state.fetched {
                    true => Ok(false),
                    false => Err(VerifyError::Keys(JwksError::NotYet)),
                };
            }
        }
        if reason == Reason::UnknownKid {
            self.state_mut().unknown_kid_at = Some(now);
        }
        match self.fetch().await {
            Ok((keys, max_age)) => {
                let mut state = self.state_mut();
                state.keys = Arc::new(keys);
                state.fetched = true;
                state.fresh_until = Some(Instant::now() + max_age);
                state.hold_until = None;
                Ok(true)
            }
            Err(e) => {
                let mut state = self.state_mut();
                state.hold_until = Some(Instant::now() + self.timing.retry_after_failure);
                if state.fetched {
                    tracing::warn!(url = %self.url, error = %crate::error::error_chain(&e),
                        "cannot refetch the issuer's JWKS; keeping the last good set");
                    Ok(false)
                } else {
                    Err(VerifyError::Keys(e))
                }
            }
        }
    }

    fn state_mut(&self) -> std::sync::RwLockWriteGuard<'_, KeyState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// GETs the key set: its usable signature keys and how long to keep them.
    async fn fetch(&self) -> Result<(Vec<PublicKey>, Duration), JwksError> {
        let mut response = self
            .http
            .get(&self.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(JwksError::Unreachable)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                status: response.status().as_u16(),
            });
        }
        let max_age = max_age(response.headers().get(http::header::CACHE_CONTROL))
            .unwrap_or(self.timing.default_max_age)
            .clamp(self.timing.min_max_age, self.timing.max_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(JwksError::Body)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::TooLarge {
                    limit: MAX_JWKS_BYTES,
                });
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(JwksError::NotJwks)?;
        let keys: Vec<PublicKey> = set.keys.iter().filter_map(PublicKey::from_jwk).collect();
        tracing::debug!(url = %self.url, keys = keys.len(), ?max_age, "fetched the issuer's JWKS");
        Ok((keys, max_age))
    }
}

impl TokenVerifier for JwksVerifier {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        _hash: &'a TokenHash,
    ) -> BoxFuture<'a, Result<Verdict, VerifyError>> {
        Box::pin(self.check(token))
    }

    fn kind(&self) -> &'static str {
        "jwks"
    }
}

/// The key named `kid` (whose algorithm the signature check then holds the token to);
/// without a `kid`, the only key for `alg`, if just one.
fn find<'k>(keys: &'k [PublicKey], kid: Option<&str>, alg: Alg) -> Option<&'k PublicKey> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        None => {
            let mut of_alg = keys.iter().filter(|k| k.alg == alg);
            match (of_alg.next(), of_alg.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            }
        }
    }
}

/// `max-age` of a `Cache-Control` value; `no-cache`/`no-store` count as zero (then the
/// floor applies).
fn max_age(value: Option<&http::HeaderValue>) -> Option<Duration> {
    let text = value?.to_str().ok()?;
    for directive in text.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            return secs.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn max_age_is_read_from_cache_control() {
        let cases = [
            ("max-age=600", Some(600)),
            ("public, max-age=60, must-revalidate", Some(60)),
            ("Max-Age=\"30\"", Some(30)),
            ("no-store", Some(0)),
            ("public", None),
            ("max-age=soon", None),
        ];
        for (value, want) in cases {
            let got = max_age(Some(&HeaderValue::from_static(value)));
            assert_eq!(got, want.map(Duration::from_secs), "{value}");
        }
        assert_eq!(max_age(None), None);
    }
}
