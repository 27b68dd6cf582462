//! Redis Sentinel: finding the current master through the sentinels ([`Sentinels`]), links
//! to it that know when it stops being the master ([`MasterLink`]), and the store's
//! command connection, which finds the master again by itself after a failover
//! ([`SentinelConn`], in [`conn`]).
//!
//! The master is looked up through the `redis` crate's [`SentinelClient`], which asks the
//! sentinels in the configured order and checks with `ROLE` that the server they name is a
//! master.
//!
//! Why the sentinels are watched ([`WATCH_EVERY`]): after a failover the old master, if it
//! is still up, goes on accepting writes until Sentinel converts it to a replica, seconds
//! later, and what it took then is thrown away (a revocation among it would be undone). So
//! a link is dropped as soon as the sentinels name another master, and the revocation
//! reader's link ([`MasterLink`]) fails then, so that it reconnects to the new master. A
//! write the old master acknowledged before the sentinels switched can still be lost: Redis
//! replicates asynchronously, as its documentation warns.
//!
//! Password: the one from `[oauth] store_password_file` is sent to the data nodes (master
//! and replicas). Sentinels are asked without one; once a sentinel refuses that
//! (`NOAUTH`), they are asked with the same password (sentinels with `requirepass` set to
//! it), and the other way round if they then refuse it.

use super::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::config::RedisNode;
use futures_util::FutureExt;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError,
    RedisFuture, RedisResult, Value,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

mod conn;
pub(super) use conn::SentinelConn;

/// How long finding the master may take: asking the sentinels, checking its role, and
/// connecting to it. Bounded so that `/oauth/*` answers 503 within a second while there is
/// no master.
const RESOLVE_TIMEOUT: Duration = Duration::from_millis(750);
/// How often the sentinels are asked which server is the master.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// A server's address as the sentinels give it.
type Addr = (String, u16);

/// The sentinels of one master name.
pub(in crate::store) struct Sentinels {
    clients: tokio::sync::Mutex<Clients>,
    /// The sentinels, in the configured order, with the password for when they ask for one
    /// (for the watch, which asks them itself).
    addrs: Vec<RedisNode>,
    password: Option<String>,
    master: String,
    /// The master's address as the sentinels last named it (`None`: not known yet).
    named: Mutex<Option<Addr>>,
    /// Set once the watch task runs.
    watched: std::sync::Once,
}

/// The crate's clients: one asks the sentinels without a password, one (when there is a
/// password) with it.
struct Clients {
    plain: SentinelClient,
    with_password: Option<SentinelClient>,
    use_password: bool,
}

// === impl Sentinels ===

impl Sentinels {
    pub(super) fn new(
        sentinels: &[RedisNode],
        master: &str,
        db: i64,
        password: Option<&str>,
    ) -> RedisResult<Self> {
        let builder = || {
            let addrs = sentinels
                .iter()
                .map(|n| ConnectionAddr::Tcp(n.host.clone(), n.port));
            let builder = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
                .set_client_to_redis_db(db);
            Ok::<_, RedisError>(match password {
                Some(p) => builder.set_client_to_redis_password(p),
                None => builder,
            })
        };
        let with_password = match password {
            Some(p) => Some(builder()?.set_client_to_sentinel_password(p).build()?),
            None => None,
        };
        Ok(Self {
            clients: tokio::sync::Mutex::new(Clients {
                plain: builder()?.build()?,
                with_password,
                use_password: false,
            }),
            addrs: sentinels.to_vec(),
            password: password.map(String::from),
            master: master.to_string(),
            named: Mutex::new(None),
            watched: std::sync::Once::new(),
        })
    }

    /// A new connection (made with `config`) to the server the sentinels name as master now.
    pub(super) async fn connect_master(
        self: &Arc<Self>,
        config: &AsyncConnectionConfig,
    ) -> RedisResult<MasterLink> {
        self.watched
            .call_once(|| drop(tokio::spawn(watch(Arc::downgrade(self)))));
        let found = async {
            let client = self.master().await?;
            let addr = match client.get_connection_info().addr() {
                ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
                other => (other.to_string(), 0),
            };
            let conn = client
                .get_multiplexed_async_connection_with_config(config)
                .await?;
            self.name(addr.clone());
            Ok(MasterLink {
                conn,
                addr,
                sentinels: self.clone(),
            })
        };
        match tokio::time::timeout(RESOLVE_TIMEOUT, found).await {
            Ok(found) => found,
            Err(_) => Err(timed_out(format!(
                "no master found through the sentinels within {RESOLVE_TIMEOUT:?}"
            ))),
        }
    }

    /// Notes that the sentinels name `addr` as the master.
    fn name(&self, addr: Addr) {
        *self.named.lock().unwrap_or_else(PoisonError::into_inner) = Some(addr);
    }

    /// False once the sentinels name a master other than `addr`.
    fn still_master(&self, addr: &Addr) -> bool {
        let named = self.named.lock().unwrap_or_else(PoisonError::into_inner);
        named.as_ref().is_none_or(|named| named == addr)
    }

    /// The master's address, asked of a sentinel on `link` (made first when `None`, trying
    /// the sentinels from the `first`th on).
    async fn ask(
        &self,
        link: &mut Option<MultiplexedConnection>,
        first: usize,
    ) -> RedisResult<Option<Addr>> {
        let conn = match link {
            Some(conn) => conn,
            None => link.insert(self.connect_sentinel(first).await?),
        };
        let named: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master)
            .query_async(conn)
            .await?;
        Ok(named.and_then(|(host, port)| Some((host, port.parse().ok()?))))
    }

    /// A connection to the first sentinel that takes one, with the password when the
    /// sentinels asked for it. (The crate's `async_get_sentinel_client` is not used: it
    /// checks every sentinel on the connection it cached for the first one.)
    async fn connect_sentinel(&self, first: usize) -> RedisResult<MultiplexedConnection> {
        let use_password = self.clients.lock().await.use_password;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let mut failed = None;
        let count = self.addrs.len();
        for node in self
            .addrs
            .iter()
            .cycle()
            .skip(first % count.max(1))
            .take(count)
        {
            let mut info = format!("redis://{node}/").into_connection_info()?;
            if let Some(password) = self.password.as_deref().filter(|_| use_password) {
                let settings = info.redis_settings().clone().set_password(password);
                info = info.set_redis_settings(settings);
            }
            let connected = redis::Client::open(info)?
                .get_multiplexed_async_connection_with_config(&config)
                .await;
            match connected {
                Ok(conn) => return Ok(conn),
                Err(e) => failed = Some(e),
            }
        }
        Err(failed.unwrap_or_else(|| timed_out("no sentinel configured".to_string())))
    }

    /// A client for the current master, checked by `ROLE`.
    async fn master(&self) -> RedisResult<redis::Client> {
        let mut clients = self.clients.lock().await;
        match clients.current().async_get_client().await {
            Err(e) if refused_credentials(&e) && clients.with_password.is_some() => {
                clients.use_password = !clients.use_password;
                tracing::info!(
                    with_password = clients.use_password,
                    "a sentinel refused our credentials; asking the sentinels the other way"
                );
                clients.current().async_get_client().await
            }
            found => found,
        }
    }
}

impl Clients {
    fn current(&mut self) -> &mut SentinelClient {
        match (&mut self.with_password, self.use_password) {
            (Some(with), true) => with,
            (Some(_) | None, _) => &mut self.plain,
        }
    }
}

/// Asks a sentinel every [`WATCH_EVERY`] which server is the master, until the sentinels
/// are dropped. While no sentinel answers, the last answer stands.
async fn watch(sentinels: std::sync::Weak<Sentinels>) {
    let mut link = None;
    // Where the next connection starts: one further after each failure.
    let mut first = 0;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(sentinels) = sentinels.upgrade() else {
            return;
        };
        let asked = tokio::time::timeout(RESOLVE_TIMEOUT, sentinels.ask(&mut link, first)).await;
        match asked {
            Ok(Ok(Some(addr))) => sentinels.name(addr),
            // The name is unknown to this sentinel, or it did not answer: ask another next.
            Ok(Ok(None) | Err(_)) | Err(_) => {
                link = None;
                first += 1;
            }
        }
    }
}

/// A sentinel (or a server) that wants a password and got none, or got one it does not take.
fn refused_credentials(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed || e.code() == Some("NOAUTH")
}

fn timed_out(why: String) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, why))
}

/// A link to the master found at one time: it refuses every command (without sending it)
/// once the sentinels name another master. The revocation reader's link on Sentinel, and
/// what [`SentinelConn`] holds.
#[derive(Clone)]
pub(super) struct MasterLink {
    conn: MultiplexedConnection,
    addr: Addr,
    sentinels: Arc<Sentinels>,
}

// === impl MasterLink ===

impl MasterLink {
    /// False once the sentinels name another master.
    fn still_master(&self) -> bool {
        self.sentinels.still_master(&self.addr)
    }

    fn check(&self) -> RedisResult<()> {
        if self.still_master() {
            return Ok(());
        }
        Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::NotConnected,
            "the sentinels name another master now",
        )))
    }
}

impl ConnectionLike for MasterLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        async move {
            self.check()?;
            self.conn.req_packed_command(cmd).await
        }
        .boxed()
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        async move {
            self.check()?;
            self.conn.req_packed_commands(pipeline, offset, count).await
        }
        .boxed()
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
