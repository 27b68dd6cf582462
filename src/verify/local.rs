//! The local verifier: looks access tokens up in this process's own token store, with no
//! network hop. Revocations reach the cache in front of it through the store's feed.
//!
//! With `[oauth] token_format = "jwt"`, tokens shaped like a JWT are checked by signature
//! and claims instead, with no store lookup unless revocations may be missing (see
//! [`super::own_jwt`]); opaque tokens issued before the switch are still looked up.
//!
//! An opaque token's audiences are the RFC 8707 resources it was issued for, or the
//! `[oauth] issuer` when it named none (as `/verify` reports it); a JWT's is its `aud` claim.

use super::own_jwt::{self, Opened, OwnJwt};
use super::{Principal, TokenVerifier, Verdict, VerifyError};
use crate::clock::Clock;
use crate::jwt::compact::looks_like_jws;
use crate::store::{token_hash, RecordKind, Revoked, TokenHash, TokenStore};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Verifies tokens against a [`TokenStore`].
pub struct LocalVerifier {
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    /// `[oauth] issuer`: the `aud` of every token issued without a `resource` (RFC 8707).
    issuer: String,
    /// Set when access tokens are JWTs.
    jwt: Option<OwnJwt>,
}

impl LocalVerifier {
    pub fn new(store: Arc<dyn TokenStore>, clock: Arc<dyn Clock>, issuer: String) -> Self {
        Self {
            store,
            clock,
            issuer,
            jwt: None,
        }
    }

    /// The same verifier, checking JWTs of ours by signature.
    pub fn with_jwt(mut self, jwt: OwnJwt) -> Self {
        self.jwt = Some(jwt);
        self
    }

    async fn lookup(&self, token: &str) -> Result<Verdict, VerifyError> {
        let hash = token_hash(token);
        if let Some(jwt) = self.jwt.as_ref().filter(|_| looks_like_jws(token)) {
            return self.lookup_jwt(jwt, token, hash).await;
        }
        let now = self.clock.now_unix();
        let record = self.store.get(hash).await.map_err(VerifyError::Store)?;
        let Some(r) = record.filter(|r| r.kind == RecordKind::Access && r.is_live(now)) else {
            return Ok(Verdict::Inactive);
        };
        Ok(
            match Principal::new(r.sub, r.client_id, r.username, r.scopes, Some(r.expires_at)) {
                Some(p) => {
                    let p = p.with_jkt(r.jkt);
                    let audiences = if r.audiences.is_empty() {
                        vec![self.issuer.clone()]
                    } else {
                        r.audiences
                    };
                    Verdict::Active(p.with_audiences(audiences))
                }
                None => Verdict::Inactive,
            },
        )
    }

    async fn lookup_jwt(
        &self,
        jwt: &OwnJwt,
        token: &str,
        hash: TokenHash,
    ) -> Result<Verdict, VerifyError> {
        let checked = match jwt.open(token, &hash, self.store.silent_for()) {
            Opened::Valid {
                checked,
                needs_store,
            } => {
                if needs_store && !self.live_in_store(hash, self.clock.now_unix()).await? {
                    return Ok(Verdict::Inactive);
                }
                checked
            }
            Opened::Refused(refusal) => {
                tracing::debug!(%refusal, "JWT refused");
                return Ok(Verdict::Inactive);
            }
            Opened::Revoked => return Ok(Verdict::Inactive),
        };
        Ok(match own_jwt::principal(checked) {
            Some(p) => Verdict::Active(p),
            None => Verdict::Inactive,
        })
    }

    /// True when the store holds a live access token under `hash`.
    async fn live_in_store(&self, hash: TokenHash, now: u64) -> Result<bool, VerifyError> {
        let record = self.store.get(hash).await.map_err(VerifyError::Store)?;
        Ok(record.is_some_and(|r| r.kind == RecordKind::Access && r.is_live(now)))
    }
}

impl TokenVerifier for LocalVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, VerifyError>> {
        Box::pin(self.lookup(token))
    }

    fn kind(&self) -> &'static str {
        "local"
    }

    fn revoked(&self, event: &Revoked) {
        if let Some(jwt) = &self.jwt {
            jwt.revoked(event);
        }
    }
}
