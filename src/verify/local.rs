//! The local verifier: looks access tokens up in this process's own token store, with no
//! network hop. Revocations reach the cache in front of it through the store's feed.
//!
//! A token's audiences are the RFC 8707 resources it was issued for, or the `[oauth]
//! issuer` when it named none (as `/verify` reports it).

use super::{Principal, TokenVerifier, Verdict, VerifyError};
use crate::clock::Clock;
use crate::store::{token_hash, RecordKind, TokenStore};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// Verifies tokens against a [`TokenStore`].
pub struct LocalVerifier {
    store: Arc<dyn TokenStore>,
    clock: Arc<dyn Clock>,
    /// `[oauth] issuer`: the `aud` of every token issued without a `resource` (RFC 8707).
    issuer: String,
}

impl LocalVerifier {
    pub fn new(store: Arc<dyn TokenStore>, clock: Arc<dyn Clock>, issuer: String) -> Self {
        Self {
            store,
            clock,
            issuer,
        }
    }

    async fn lookup(&self, token: &str) -> Result<Verdict, VerifyError> {
        let record = self
            .store
            .get(token_hash(token))
            .await
            .map_err(VerifyError::Store)?;
        let now = self.clock.now_unix();
        let Some(r) = record.filter(|r| r.kind == RecordKind::Access && r.is_live(now)) else {
            return Ok(Verdict::Inactive);
        };
        Ok(
            match Principal::new(r.sub, r.client_id, r.username, r.scopes, Some(r.expires_at)) {
                Some(p) => {
                    let audiences = if r.audiences.is_empty() {
                        vec![self.issuer.clone()]
                    } else {
                        r.audiences
                    };
                    Verdict::Active(Arc::new(p.with_audiences(audiences)))
                }
                None => Verdict::Inactive,
            },
        )
    }
}

impl TokenVerifier for LocalVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Verdict, VerifyError>> {
        Box::pin(self.lookup(token))
    }

    fn kind(&self) -> &'static str {
        "local"
    }
}
