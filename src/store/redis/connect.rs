//! How the Redis store reaches Redis on each topology of `[oauth] store`: one connection
//! type for the store's commands ([`Conn`], so that the store's methods are written once)
//! and the revocation reader's own connection ([`Connector::reader`]).
//!
//! | topology | commands | revocation reader |
//! |---|---|---|
//! | standalone | a `ConnectionManager` (reconnects by itself) | its own connection |
//! | Sentinel | a [`SentinelConn`] to the current master (finds it again after a failover) | its own connection to the master found at each (re)connect |
//! | Cluster | a `ClusterConnection` (follows `MOVED`/`ASK`, refreshes the slot map) | a `ClusterConnection` of its own, whose response timeout outlasts `XREAD BLOCK` |
//!
//! Every one connects within [`CONNECT_TIMEOUT`] and waits at most [`RESPONSE_TIMEOUT`] for
//! an answer (the reader: [`READER_RESPONSE_TIMEOUT`]), so that a store that is down fails a
//! call quickly and `/oauth/*` answers 503.

use super::sentinel::{MasterLink, SentinelConn, Sentinels};
use super::stream::BLOCK;
use super::{StoreResult, CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::config::{RedisNode, RedisSpec, RedisTopology};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, IntoConnectionInfo, RedisFuture, Value};
use std::sync::Arc;
use std::time::Duration;

/// The reader's response timeout: one `XREAD BLOCK` plus the usual margin.
const READER_RESPONSE_TIMEOUT: Duration = BLOCK.saturating_add(RESPONSE_TIMEOUT);

/// Opens the store's connections.
#[derive(Clone)]
pub(super) enum Connector {
    Standalone(Box<redis::Client>),
    Sentinel {
        sentinels: Arc<Sentinels>,
        db: i64,
    },
    Cluster {
        /// For the shared command connection.
        commands: Box<ClusterClient>,
        /// For the reader's: a longer response timeout.
        reader: Box<ClusterClient>,
    },
}

/// The store's command connection, whatever the topology; cloning it is cheap (every clone
/// shares one link).
#[derive(Clone)]
pub(super) enum Conn {
    Standalone(ConnectionManager),
    Sentinel(SentinelConn),
    Cluster(ClusterConnection),
    /// A plain link to one server (the reader's, on standalone).
    Direct(MultiplexedConnection),
    /// A link to the master found at one time (the reader's, on Sentinel).
    Master(Box<MasterLink>),
}

// === impl Connector ===

impl Connector {
    /// Reads `spec`; connects to nothing yet.
    pub(super) fn new(spec: &RedisSpec) -> StoreResult<Self> {
        let password = spec.password.as_ref().map(|p| p.expose());
        Ok(match &spec.topology {
            RedisTopology::Standalone(url) => {
                let mut info = url.expose().into_connection_info()?;
                if let Some(password) = password {
                    let settings = info.redis_settings().clone().set_password(password);
                    info = info.set_redis_settings(settings);
                }
                Connector::Standalone(Box::new(redis::Client::open(info)?))
            }
            RedisTopology::Sentinel {
                sentinels,
                master,
                db,
            } => Connector::Sentinel {
                sentinels: Arc::new(Sentinels::new(sentinels, master, *db, password)?),
                db: *db,
            },
            RedisTopology::Cluster { nodes } => Connector::Cluster {
                commands: Box::new(cluster_client(nodes, password, RESPONSE_TIMEOUT)?),
                reader: Box::new(cluster_client(nodes, password, READER_RESPONSE_TIMEOUT)?),
            },
        })
    }

    /// True on a Cluster, where one call may touch keys of one hash slot only.
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Connector::Cluster { .. })
    }

    /// The shared command connection; fails if Redis cannot be reached now.
    pub(super) async fn commands(&self) -> StoreResult<Conn> {
        Ok(match self {
            Connector::Standalone(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(1);
                Conn::Standalone(
                    ConnectionManager::new_with_config((**client).clone(), config).await?,
                )
            }
            Connector::Sentinel { sentinels, db } => {
                Conn::Sentinel(SentinelConn::connect(sentinels.clone(), *db).await?)
            }
            Connector::Cluster { commands, .. } => {
                Conn::Cluster(bounded(commands.get_async_connection()).await?)
            }
        })
    }

    /// A new connection for the revocation reader alone (it blocks in `XREAD`): to the
    /// current master on Sentinel, looked up again at each call.
    pub(super) async fn reader(&self) -> StoreResult<Conn> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(READER_RESPONSE_TIMEOUT));
        Ok(match self {
            Connector::Standalone(client) => Conn::Direct(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ),
            Connector::Sentinel { sentinels, .. } => {
                Conn::Master(Box::new(sentinels.connect_master(&config).await?))
            }
            Connector::Cluster { reader, .. } => {
                Conn::Cluster(bounded(reader.get_async_connection()).await?)
            }
        })
    }
}

fn cluster_client(
    nodes: &[RedisNode],
    password: Option<&str>,
    response_timeout: Duration,
) -> StoreResult<ClusterClient> {
    let urls = nodes.iter().map(|n| format!("redis://{n}"));
    let builder = ClusterClientBuilder::new(urls)
        .connection_timeout(CONNECT_TIMEOUT)
        // Per attempt and, by default, for the whole call with its redirections and retries.
        .response_timeout(response_timeout)
        .retries(3)
        .min_retry_wait(10)
        .max_retry_wait(200);
    let builder = match password {
        Some(p) => builder.password(p),
        None => builder,
    };
    Ok(builder.build()?)
}

/// Connecting to a Cluster asks every node given and reads the slot map: bounded as a
/// whole, like one call.
async fn bounded(
    connect: impl std::future::Future<Output = redis::RedisResult<ClusterConnection>>,
) -> redis::RedisResult<ClusterConnection> {
    let limit = CONNECT_TIMEOUT + RESPONSE_TIMEOUT;
    match tokio::time::timeout(limit, connect).await {
        Ok(connected) => connected,
        Err(_) => Err(redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no Redis Cluster node answered within {limit:?}"),
        ))),
    }
}

// === impl Conn ===

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Direct(c) => c.req_packed_command(cmd),
            Conn::Master(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Direct(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Master(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(c) => c.get_db(),
            Conn::Sentinel(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Direct(c) => c.get_db(),
            Conn::Master(c) => c.get_db(),
        }
    }
}
