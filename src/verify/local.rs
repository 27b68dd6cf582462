//! The local verifier: looks access tokens up in this process's own token store, with no
//! network hop. Revocations reach the cache in front of it through the store's feed.
//!
//! With `[oauth] token_format = "jwt"`, tokens shaped like a JWT are checked by signature
//! and claims instead, with no store lookup unless revocations may be missing (see
//! [`super::own_jwt`]); opaque tokens issued before the switch are still looked up.
//!
//! An opaque token's audiences are the RFC 8707 resources it was issued for, or the
//! `[oauth] issuer` when it named none (as `/verify` reports it); a JWT's is its `aud` claim.

use super::interner::{IdentityKey, Interner};
use super::own_jwt::{self, Opened, OwnJwt};
use super::{Principal, TokenVerifier, Verdict, VerifyError};
use crate::clock::Clock;
use crate::jwt::compact::looks_like_jws;
use crate::store::{RecordKind, Revoked, TokenHash, TokenStore};
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
    /// The identities of answers in use: a record of a known client or user is answered
    /// with the shared copy, not a new one (the cache in front would only drop it).
    identities: Interner,
}

impl LocalVerifier {
    pub fn new(store: Arc<dyn TokenStore>, clock: Arc<dyn Clock>, issuer: String) -> Self {
        Self {
            store,
            clock,
            issuer,
            jwt: None,
            identities: Interner::new(),
        }
    }

    /// The same verifier, checking JWTs of ours by signature.
    pub fn with_jwt(mut self, jwt: OwnJwt) -> Self {
        self.jwt = Some(jwt);
        self
    }

    async fn lookup(&self, token: &str, hash: TokenHash) -> Result<Verdict, VerifyError> {
        if let Some(jwt) = self.jwt.as_ref().filter(|_| looks_like_jws(token)) {
            return self.lookup_jwt(jwt, token, hash).await;
        }
        let now = self.clock.now_unix();
        let record = self.store.get(hash).await.map_err(VerifyError::Store)?;
        let Some(r) = record.filter(|r| r.kind == RecordKind::Access && r.is_live(now)) else {
            return Ok(Verdict::Inactive);
        };
        let key = IdentityKey {
            sub: &r.sub,
            client_id: &r.client_id,
            username: r.username.as_deref(),
            scopes: &r.scopes,
            audiences: if r.audiences.is_empty() {
                std::slice::from_ref(&self.issuer)
            } else {
                &r.audiences
            },
            jkt: r.jkt.as_deref(),
        };
        Ok(match self.identities.share(&key) {
            Some(identity) => Verdict::Active(Principal {
                identity,
                exp: Some(r.expires_at),
            }),
            None => Verdict::Inactive,
        })
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
    fn verify<'a>(
        &'a self,
        token: &'a str,
        hash: &'a TokenHash,
    ) -> BoxFuture<'a, Result<Verdict, VerifyError>> {
        Box::pin(self.lookup(token, *hash))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::conformance::record;
    use crate::store::memory::MemoryStore;
    use crate::store::{token_hash, Record};

    const NOW: u64 = 1_000;
    const ISSUER: &str = "https://auth.example";

    async fn verifier_with(records: &[(&str, Record)]) -> LocalVerifier {
        let store = Arc::new(MemoryStore::default());
        for (token, record) in records {
            store
                .insert(token_hash(token), record.clone())
                .await
                .expect("memory store");
        }
        LocalVerifier::new(store, Arc::new(ManualClock::new(NOW)), ISSUER.into())
    }

    async fn verdict(verifier: &LocalVerifier, token: &str) -> Verdict {
        verifier
            .verify(token, &token_hash(token))
            .await
            .expect("memory store answers")
    }

    fn active(verdict: Verdict) -> Principal {
        match verdict {
            Verdict::Active(p) => p,
            Verdict::Inactive => panic!("inactive"),
        }
    }

    fn access(sub: &str, expires_at: u64) -> Record {
        Record {
            sub: sub.into(),
            username: Some(sub.into()),
            ..record(RecordKind::Access, &format!("grant-{sub}"), expires_at)
        }
    }

    #[tokio::test]
    async fn the_tokens_of_one_identity_share_it_and_keep_their_own_expiry() {
        let v = verifier_with(&[
            ("alice-1", access("alice", 5_000)),
            ("alice-2", access("alice", 6_000)),
            ("bob-1", access("bob", 5_000)),
        ])
        .await;
        let first = active(verdict(&v, "alice-1").await);
        let second = active(verdict(&v, "alice-2").await);
        assert!(Arc::ptr_eq(&first.identity, &second.identity));
        assert_eq!((first.exp, second.exp), (Some(5_000), Some(6_000)));
        assert_eq!(first.sub, "alice");
        assert_eq!(first.headers.subject, "alice");
        assert_eq!(first.headers.scope, "email email.send");
        assert_eq!(first.audiences, ["https://api.example/mail", "reports"]);
        assert_eq!(
            first.jkt.as_deref(),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
        let bob = active(verdict(&v, "bob-1").await);
        assert!(!Arc::ptr_eq(&first.identity, &bob.identity));
        assert_eq!(bob.sub, "bob");
    }

    #[tokio::test]
    async fn a_token_issued_for_no_resource_is_for_the_issuer() {
        let v = verifier_with(&[(
            "t",
            Record {
                audiences: Vec::new(),
                ..access("alice", 5_000)
            },
        )])
        .await;
        assert_eq!(active(verdict(&v, "t").await).audiences, [ISSUER]);
    }

    #[tokio::test]
    async fn only_a_live_access_token_whose_fields_fit_in_headers_is_active() {
        let v = verifier_with(&[
            ("code", record(RecordKind::Code, "g", 5_000)),
            ("expired", access("alice", NOW)),
            (
                "revoked",
                Record {
                    state: crate::store::RecordState::Revoked,
                    ..access("alice", 5_000)
                },
            ),
            ("unsendable", access("ali\nce", 5_000)),
        ])
        .await;
        for token in ["code", "expired", "revoked", "unsendable", "unknown"] {
            assert!(
                matches!(verdict(&v, token).await, Verdict::Inactive),
                "{token}"
            );
        }
    }
}
