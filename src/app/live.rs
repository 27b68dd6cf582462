//! The configuration requests read, as one immutable snapshot: [`Live`] holds the gateway
//! (routes, upstream pools, the verifier) and the authorization server (clients, scopes,
//! settings, users), built together from one `Config`.
//!
//! The listeners hold the snapshot in an [`ArcSwap`] and take it once per request, so a
//! request runs start to end on the snapshot it began with, and a reload (SIGHUP,
//! [`super::reload`]) changes what later requests see by storing a new one. Nothing here
//! binds a port or opens a store: those stay as start-up made them.

use crate::access_log::AccessLog;
use crate::clock::Clock;
use crate::config::{
    Config, Problem, StoreSpec, TokenFormat, UserSource, VerifyConfig, VerifySource,
};
use crate::directory::file::FileDirectory;
use crate::directory::UserDirectory;
use crate::error::error_chain;
use crate::gateway::{Gateway, GatewaySettings};
use crate::metrics::Metrics;
use crate::oauth::OAuthServer;
use crate::store::{RevocationSink, TokenStore};
use crate::verify::cache::{Staleness, VerifyCache};
use crate::verify::jwks::JwksVerifier;
use crate::verify::own_jwt::OwnJwt;
use crate::verify::{LocalVerifier, RemoteVerifier, TokenVerifier};
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The snapshot the listeners serve from; see the module comment.
pub type LiveConfig = Arc<ArcSwap<Live>>;

/// One configuration's request-time state.
pub struct Live {
    pub gateway: Arc<Gateway>,
    pub oauth: Arc<OAuthServer>,
    /// What the gateway's verifier was built from: a reload with the same keeps it (and
    /// every cached verdict), a reload with other settings builds a new, empty one.
    verify_basis: VerifyBasis,
}

/// The settings a verifier and its cache depend on: all of `[verify]`, and the issuer (the
/// audience a local verifier gives tokens issued without `resource`). [`build_verifier`]
/// reads nothing else, so a setting it needs must be added here, and then a reload that
/// changes it builds a new verifier.
#[derive(Clone, PartialEq)]
struct VerifyBasis {
    verify: VerifyConfig,
    issuer: String,
    /// `[oauth] token_format` (with its keys): the local verifier checks our own JWTs.
    token_format: TokenFormat,
    /// `[oauth] access_token_ttl`: how long a revoked JWT stays on the deny set.
    access_token_ttl: std::time::Duration,
    /// The store outlives the process (not `memory`): revocations may predate it.
    persistent_store: bool,
}

/// What every snapshot shares, made once at start-up.
pub struct Shared {
    pub store: Arc<dyn TokenStore>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// The access log's writer (a reload re-targets it through a hook, never restarts it).
    pub access_log: AccessLog,
    /// Spent DPoP proof ids (RFC 9449 §11.1), one set for the process: the token endpoint
    /// and every verifier a reload builds spend from it.
    pub proof_ids: Arc<crate::dpop::ProofIds>,
}

/// Whether a reload kept the verify cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheFate {
    /// `[verify]` and the issuer are unchanged: cached verdicts stay.
    Kept,
    /// They changed: a new verifier with an empty cache.
    Rebuilt,
}

// === impl Live ===

impl Live {
    /// The snapshot start-up serves first.
    pub fn first(config: &Config, shared: &Shared) -> Result<Live, Problem> {
        let verify_basis = VerifyBasis::of(config);
        let verifier = build_verifier(&verify_basis, shared)?;
        let directory = open_directory(config)?;
        count_grant_types(config, &shared.metrics);
        let gateway = Gateway::new(
            GatewaySettings::of(config),
            verifier,
            &shared.metrics,
            shared.access_log.clone(),
        );
        let oauth = OAuthServer::new(
            config,
            shared.store.clone(),
            directory,
            shared.clock.clone(),
            shared.metrics.clone(),
        )
        .with_proof_ids(shared.proof_ids.clone());
        Ok(Live {
            gateway: Arc::new(gateway),
            oauth: Arc::new(oauth),
            verify_basis,
        })
    }

    /// The snapshot for a reloaded `config`. Every file it names is read again (the users
    /// file even when unchanged); the upstream client (and its keep-alive connections), the
    /// login-CSRF key and, when [`CacheFate::Kept`], the verifier and its cache carry over.
    pub fn next(&self, config: &Config, shared: &Shared) -> Result<(Live, CacheFate), Problem> {
        let basis = VerifyBasis::of(config);
        let (verifier, fate) = if basis == self.verify_basis {
            (self.gateway.verifier().clone(), CacheFate::Kept)
        } else {
            (build_verifier(&basis, shared)?, CacheFate::Rebuilt)
        };
        let directory = open_directory(config)?;
        count_grant_types(config, &shared.metrics);
        let gateway =
            self.gateway
                .reconfigured(GatewaySettings::of(config), verifier, &shared.metrics);
        let oauth = self.oauth.reconfigured(config, directory);
        let live = Live {
            gateway: Arc::new(gateway),
            oauth: Arc::new(oauth),
            verify_basis: basis,
        };
        Ok((live, fate))
    }
}

impl VerifyBasis {
    fn of(config: &Config) -> Self {
        Self {
            verify: config.verify.clone(),
            issuer: config.oauth.issuer.clone(),
            token_format: config.oauth.token_format.clone(),
            access_token_ttl: config.oauth.access_token_ttl,
            persistent_store: !matches!(config.oauth.store, StoreSpec::Memory),
        }
    }
}

/// `tollgate_tokens_issued_total{grant_type}` at zero for every grant a client has.
fn count_grant_types(config: &Config, metrics: &Metrics) {
    for client in &config.clients {
        for grant_type in &client.grant_types {
            metrics.grant_type_enabled(grant_type.as_str());
        }
    }
}

/// The guard's verifier: the local store or a remote RFC 7662 endpoint, behind the cache,
/// which hears of revocations from the store, whichever instance made them. The store
/// keeps only a weak reference: a cache a reload replaced goes away with its last request.
fn build_verifier(basis: &VerifyBasis, shared: &Shared) -> Result<Arc<VerifyCache>, Problem> {
    let verifier: Arc<dyn TokenVerifier> = match &basis.verify.source {
        VerifySource::Remote(remote) => Arc::new(
            RemoteVerifier::new(remote, shared.clock.clone()).map_err(|e| {
                Problem::new(
                    "[verify].url",
                    format!("cannot build the introspection client: {}", error_chain(&e)),
                )
            })?,
        ),
        VerifySource::Jwks(jwks) => {
            Arc::new(JwksVerifier::new(jwks, shared.clock.clone()).map_err(|e| {
                Problem::new(
                    "[verify].jwks_url",
                    format!("cannot build the JWKS client: {}", error_chain(&e)),
                )
            })?)
        }
        VerifySource::Local => {
            let mut verifier = LocalVerifier::new(
                shared.store.clone(),
                shared.clock.clone(),
                basis.issuer.clone(),
            );
            if let Some(keys) = basis.token_format.keys() {
                // A store in memory started empty with this process: no revocation in it
                // can predate the feed this verifier hears (see verify::own_jwt).
                verifier = verifier.with_jwt(OwnJwt::new(
                    keys.clone(),
                    basis.issuer.clone(),
                    basis.access_token_ttl,
                    basis.verify.max_stale,
                    shared.clock.clone(),
                    basis.persistent_store,
                ));
            }
            Arc::new(verifier)
        }
    };
    let cache = match &basis.verify.source {
        // Answers from our own store age with its revocation feed (see verify::cache).
        VerifySource::Local => VerifyCache::with_staleness(
            &basis.verify,
            verifier,
            shared.clock.clone(),
            shared.metrics.clone(),
            Staleness::new(
                shared.store.clone(),
                basis.verify.max_stale,
                basis.verify.stale_grace,
            ),
        ),
        VerifySource::Remote(_) | VerifySource::Jwks(_) => VerifyCache::new(
            &basis.verify,
            verifier,
            shared.clock.clone(),
            shared.metrics.clone(),
        ),
    };
    let cache = Arc::new(cache.with_proof_ids(shared.proof_ids.clone()));
    let sink: Arc<dyn RevocationSink> = cache.clone();
    shared.store.subscribe(&sink);
    Ok(cache)
}

fn open_directory(config: &Config) -> Result<Arc<dyn UserDirectory>, Problem> {
    match &config.users.source {
        UserSource::File { path, required } => {
            if !required && !path.exists() {
                tracing::info!(path = %path.display(), "no users file: password logins will fail");
                return Ok(Arc::new(FileDirectory::empty()));
            }
            let directory = FileDirectory::load(path)
                .map_err(|e| Problem::new("[users].file", error_chain(&e)))?;
            Ok(Arc::new(directory))
        }
        UserSource::Ldap(ldap) => {
            let directory = crate::directory::ldap::LdapDirectory::new((**ldap).clone())
                .map_err(|e| Problem::new("[users.ldap].ca_file", error_chain(&e)))?;
            Ok(Arc::new(directory))
        }
    }
}
