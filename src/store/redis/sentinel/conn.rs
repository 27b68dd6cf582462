//! The store's command connection on Sentinel: one link to the master, shared by every
//! clone, looked up again through the sentinels when it is gone.
//!
//! A link is used until it fails (a lost link, a timeout), until the server answers that
//! it is a replica now (`READONLY`), or until the sentinels name another master (see the
//! parent module): the next call then looks the master up again. A command a replica
//! refused did nothing, so it is sent once more, to the new master; any other failure is
//! returned (the command may have run: sending it again could redeem a code twice), and
//! the caller answers 503.

use super::super::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use super::{MasterLink, Sentinels};
use futures_util::FutureExt;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, RedisError, RedisFuture, RedisResult, ServerErrorKind,
    Value,
};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// After a failed look-up, calls fail at once for this long instead of looking again, so a
/// burst of requests during a failover does not queue one look-up each behind the lock.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// The store's command connection to the master of a Sentinel-watched set: cheap to clone,
/// every clone shares one link, which is replaced when it fails (see the module comment).
#[derive(Clone)]
pub(in crate::store::redis) struct SentinelConn {
    shared: Arc<Shared>,
    db: i64,
}

struct Shared {
    sentinels: Arc<Sentinels>,
    /// The link to the master found last, with its number; `None` once it failed.
    current: Mutex<Option<(u64, MasterLink)>>,
    /// Held while looking for the master: one look-up at a time.
    search: tokio::sync::Mutex<Search>,
}

#[derive(Default)]
struct Search {
    found: u64,
    failed: Option<(Instant, RedisError)>,
}

// === impl SentinelConn ===

impl SentinelConn {
    /// Finds the master and connects to it; fails if it cannot now.
    pub(in crate::store::redis) async fn connect(
        sentinels: Arc<Sentinels>,
        db: i64,
    ) -> RedisResult<Self> {
        let conn = Self {
            shared: Arc::new(Shared {
                sentinels,
                current: Mutex::new(None),
                search: tokio::sync::Mutex::new(Search::default()),
            }),
            db,
        };
        conn.connection().await?;
        Ok(conn)
    }

    /// The current link, unless the sentinels name another master now (then it is dropped).
    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (id, link) = current.as_ref()?;
        if link.still_master() {
            return Some((*id, link.conn.clone()));
        }
        tracing::info!("the sentinels name another Redis master; reconnecting");
        *current = None;
        None
    }

    /// The link to the master, looking the master up when there is none.
    async fn connection(&self) -> RedisResult<(u64, MultiplexedConnection)> {
        if let Some(found) = self.current() {
            return Ok(found);
        }
        let mut search = self.shared.search.lock().await;
        // Another call may have found it while this one waited for the lock.
        if let Some(found) = self.current() {
            return Ok(found);
        }
        if let Some((at, e)) = &search.failed {
            if at.elapsed() < RETRY_AFTER {
                return Err(e.clone());
            }
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        match self.shared.sentinels.connect_master(&config).await {
            Ok(link) => {
                search.found += 1;
                search.failed = None;
                let conn = link.conn.clone();
                *self
                    .shared
                    .current
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some((search.found, link));
                Ok((search.found, conn))
            }
            Err(e) => {
                tracing::warn!(error = %e, "no Redis master found through the sentinels");
                search.failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// Drops link number `id` (if it is still the current one): the next call looks again.
    fn forget(&self, id: u64) {
        let mut current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|(n, _)| *n == id) {
            *current = None;
        }
    }

    /// Sends with `send` on the master's link; see the module comment for what a failure
    /// does.
    async fn run<T, F, Fut>(&self, send: F, refused: fn(&RedisResult<T>) -> bool) -> RedisResult<T>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let (id, conn) = self.connection().await?;
        let first = send(conn).await;
        if refused(&first) {
            // A replica refused it, so it did nothing: the new master gets it.
            self.forget(id);
            let (id, conn) = self.connection().await?;
            let second = send(conn).await;
            return self.noted(id, second, refused);
        }
        self.noted(id, first, refused)
    }

    fn noted<T>(
        &self,
        id: u64,
        result: RedisResult<T>,
        refused: fn(&RedisResult<T>) -> bool,
    ) -> RedisResult<T> {
        if refused(&result) || result.as_ref().is_err_and(link_failed) {
            self.forget(id);
        }
        result
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.run(
            move |mut conn| async move { conn.req_packed_command(cmd).await },
            |r| match r {
                Ok(value) => refused_value(value),
                Err(e) => refused_error(e),
            },
        )
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.run(
            move |mut conn| async move { conn.req_packed_commands(pipeline, offset, count).await },
            |r| match r {
                Ok(values) => values.iter().any(refused_value),
                Err(e) => refused_error(e),
            },
        )
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

/// A reply saying this server is a replica now (the command did nothing).
fn refused_value(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::ReadOnly))
}

/// The same as an error; a transaction a replica refused is aborted whole (`EXECABORT`
/// carrying the `READONLY` of its commands).
fn refused_error(e: &RedisError) -> bool {
    e.clone().into_server_errors().is_some_and(|errors| {
        errors
            .iter()
            .any(|(_, e)| e.kind() == Some(ServerErrorKind::ReadOnly))
    })
}

/// The link itself failed (or the server is not serving): look for the master again.
fn link_failed(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading)
        )
}
