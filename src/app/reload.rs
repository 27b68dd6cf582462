//! Reloading `gateway.toml` on SIGHUP (DESIGN.md "Reload").
//!
//! A reload reads the file and every file it names again (even when nothing changed) and
//! checks them exactly as `tollgate check` does ([`crate::preflight::load`]). Anything
//! wrong: nothing changes, the problems are logged as `check` prints them (file:line:col,
//! key, why) and `tollgate_config_reloads_total{result="failure"}` goes up. Otherwise every
//! part is built first and only then put in place: the [`Live`](super::live::Live)
//! snapshot (routes, upstreams, clients, scopes, users, `[verify]`), the TLS certificate,
//! and the `[server]` limits. Requests in flight keep the snapshot they started with; no
//! connection is closed.
//!
//! Keys that need a restart (`listen`, `internal_listen`, `[server.tls]` and its `listen`,
//! `store` with its prefix and password) are reported as warnings and left as they are.
//! Hooks registered with [`Reloader::on_reload`] run after every SIGHUP, whether or not the
//! file was good (the access log reopens its file there, as log rotation expects).

use super::live::{CacheFate, LiveConfig, Shared};
use crate::config::{Config, ConfigError, Problem, StoreSpec};
use crate::error::error_chain;
use crate::server::tls::{self, CertResolver};
use crate::server::SharedLimits;
use futures_util::future::BoxFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Something to do after each SIGHUP: given `Some(config)` when the reload applied
/// `config`, `None` when it was refused (the running configuration stays), it takes what it
/// needs of the config and returns the work, which the reload awaits (hooks run in the
/// order they were registered). The access log's, say, takes a clone of the log and the
/// reloaded `[log]` when there is one, and returns a future that applies it (or just
/// reopens the file) and logs an error.
pub type ReloadHook = Box<dyn Fn(Option<&Config>) -> BoxFuture<'static, ()> + Send + Sync>;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file, or one it names, is not what `tollgate check` accepts.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reading the files on the blocking pool did not complete.
    #[error("the reload did not complete")]
    Worker(#[source] tokio::task::JoinError),
}

/// What a reload applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    pub cache: CacheFate,
    /// Keys that differ from the running ones but need a restart (logged as warnings).
    pub needs_restart: usize,
}

/// The settings only a restart changes, as start-up applied them.
struct Fixed {
    listen: SocketAddr,
    internal_listen: SocketAddr,
    tls_listen: Option<SocketAddr>,
    store: StoreSpec,
}

/// Applies reloads to a running tollgate; one at a time.
pub struct Reloader {
    /// `gateway.toml` as given at start-up (relative paths resolve as they did then).
    source: PathBuf,
    live: LiveConfig,
    shared: Shared,
    fixed: Fixed,
    /// The TLS listener's certificate, when there is one.
    tls: Option<Arc<CertResolver>>,
    limits: Arc<SharedLimits>,
    hooks: Mutex<Vec<Arc<ReloadHook>>>,
    /// Two SIGHUPs in a row apply one after the other, never interleaved.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Reloader {
    pub fn new(
        config: &Config,
        live: LiveConfig,
        shared: Shared,
        tls: Option<Arc<CertResolver>>,
        limits: Arc<SharedLimits>,
    ) -> Self {
        Self {
            source: config.source.clone(),
            live,
            shared,
            fixed: Fixed::of(config),
            tls,
            limits,
            hooks: Mutex::new(Vec::new()),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    /// Registers `hook` to run after every reload attempt (see [`ReloadHook`]).
    pub fn on_reload(&self, hook: ReloadHook) {
        self.hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::new(hook));
    }

    /// Reloads the file and applies it, or changes nothing; counts and logs either way.
    pub async fn reload(&self) -> Result<Applied, ReloadError> {
        let _turn = self.one_at_a_time.lock().await;
        let file = self.source.display().to_string();
        let result = match self.read().await {
            Ok(config) => {
                let applied = self.apply(&config);
                self.run_hooks(applied.as_ref().ok().map(|_| &config)).await;
                applied.map_err(ReloadError::from)
            }
            Err(e) => {
                self.run_hooks(None).await;
                Err(e)
            }
        };
        match &result {
            Ok(applied) => {
                self.shared.metrics.config_reloads.success.inc();
                crate::audit::config_reloaded(&self.source, None);
                tracing::info!(
                    file,
                    verify_cache = ?applied.cache,
                    needs_restart = applied.needs_restart,
                    "configuration reloaded"
                );
            }
            Err(e) => {
                self.shared.metrics.config_reloads.failure.inc();
                crate::audit::config_reloaded(&self.source, Some(e));
                tracing::error!(
                    file,
                    "configuration not reloaded; the running one stays:\n{}",
                    error_chain(e)
                );
            }
        }
        result
    }

    /// The file as `tollgate check` takes it, read on the blocking pool.
    async fn read(&self) -> Result<Config, ReloadError> {
        let path = self.source.clone();
        tokio::task::spawn_blocking(move || crate::preflight::load(&path))
            .await
            .map_err(ReloadError::Worker)?
            .map_err(ReloadError::from)
    }

    /// Builds everything the new config needs, then swaps it in; a failure while building
    /// (a file changed again since the check) changes nothing.
    fn apply(&self, config: &Config) -> Result<Applied, ConfigError> {
        let current = self.live.load_full();
        let (next, cache) = current
            .next(config, &self.shared)
            .map_err(|p| config.refuse(vec![p]))?;
        let certificate = match (&self.tls, &config.server.tls) {
            (Some(_), Some(t)) => Some(
                tls::load(&t.cert, &t.key)
                    .map_err(|e| config.refuse(vec![crate::preflight::tls_problem(t, &e)]))?,
            ),
            _ => None,
        };
        let needs_restart = self.fixed.differences(config);
        if !needs_restart.is_empty() {
            tracing::warn!(
                "these keys need a restart and were left as they are:\n{}",
                config.refuse(needs_restart.clone())
            );
        }
        self.live.store(Arc::new(next));
        if let (Some(resolver), Some(certificate)) = (&self.tls, certificate) {
            resolver.set(certificate);
        }
        self.limits.set(config.server.limits);
        Ok(Applied {
            cache,
            needs_restart: needs_restart.len(),
        })
    }

    async fn run_hooks(&self, applied: Option<&Config>) {
        let hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let work: Vec<_> = hooks.iter().map(|hook| hook(applied)).collect();
        for done in work {
            done.await;
        }
    }
}

// === impl Fixed ===

impl Fixed {
    fn of(config: &Config) -> Self {
        Self {
            listen: config.server.listen,
            internal_listen: config.server.internal_listen,
            tls_listen: config.server.tls.as_ref().map(|t| t.listen),
            store: config.oauth.store.clone(),
        }
    }

    /// The restart-only keys `config` sets differently from the running process.
    fn differences(&self, config: &Config) -> Vec<Problem> {
        let mut out = Vec::new();
        let running = |what: String| format!("differs from the running {what}; needs a restart");
        if config.server.listen != self.listen {
            out.push(Problem::new(
                "[server].listen",
                running(self.listen.to_string()),
            ));
        }
        if config.server.internal_listen != self.internal_listen {
            out.push(Problem::new(
                "[server].internal_listen",
                running(self.internal_listen.to_string()),
            ));
        }
        match (
            self.tls_listen,
            config.server.tls.as_ref().map(|t| t.listen),
        ) {
            (None, Some(_)) => out.push(Problem::new(
                "[server.tls]",
                "the HTTPS listener starts only with a restart",
            )),
            (Some(_), None) => out.push(Problem::new(
                "[server.tls]",
                "the HTTPS listener stops only with a restart; it keeps its certificate",
            )),
            (Some(old), Some(new)) if old != new => out.push(Problem::new(
                "[server.tls].listen",
                running(old.to_string()),
            )),
            _ => {}
        }
        match (&self.store, &config.oauth.store) {
            (old, new) if old == new => {}
            // The same Redis: name the key that differs (neither value is shown: the URL
            // may hold a password).
            (StoreSpec::Redis(old), StoreSpec::Redis(new)) if old.topology == new.topology => {
                if old.prefix != new.prefix {
                    out.push(Problem::new(
                        "[oauth].store_prefix",
                        running(format!("prefix {:?}", old.prefix)),
                    ));
                }
                if old.password != new.password {
                    out.push(Problem::new(
                        "[oauth].store_password_file",
                        "the store password differs from the running one; needs a restart",
                    ));
                }
            }
            (old, _) => out.push(Problem::new(
                "[oauth].store",
                running(format!("store {old}")),
            )),
        }
        out
    }
}
