//! The machine's real Redis (127.0.0.1:6379, or `TOLLGATE_TEST_REDIS`) for tests of the
//! Redis store: each user gets its own key prefix, and every key under it is deleted when
//! the [`RedisPrefix`] is dropped. Redis servers of a test's own: [`OwnRedis`] (one server),
//! [`OwnCluster`] and [`OwnSentinel`] (see [`servers`]), and one Cluster shared by the tests
//! of this process ([`shared_cluster`]).

use std::sync::OnceLock;
use std::time::Duration;

pub mod servers;
pub use servers::{OwnCluster, OwnSentinel};

/// The Cluster every test of this process that runs on one shares, each under its own key
/// prefix (started on first use; its servers end with the process, see [`servers`]).
pub fn shared_cluster() -> &'static OwnCluster {
    static CLUSTER: OnceLock<OwnCluster> = OnceLock::new();
    CLUSTER.get_or_init(OwnCluster::start)
}

/// The Redis the tests use.
pub fn url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A fresh key prefix on the test Redis; its keys are removed (SCAN + DEL) on drop.
#[derive(Debug)]
pub struct RedisPrefix {
    pub prefix: String,
    /// On the machine's Redis (removed on drop); not on a test's own servers, which take
    /// their keys with them.
    on_test_redis: bool,
}

impl RedisPrefix {
    /// A new prefix; panics, saying how to start Redis, when none answers.
    pub fn new() -> RedisPrefix {
        let reachable = redis::Client::open(url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
        if let Err(e) = reachable {
            panic!(
                "Redis is not reachable at {} ({e}): these tests need a real Redis. Start one \
                 with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''` \
                 (.ci/run does), or point TOLLGATE_TEST_REDIS at one.",
                url()
            );
        }
        RedisPrefix {
            prefix: Self::fresh(),
            on_test_redis: true,
        }
    }

    /// A new prefix for a test's own Redis servers (nothing to remove on drop).
    pub fn elsewhere() -> RedisPrefix {
        RedisPrefix {
            prefix: Self::fresh(),
            on_test_redis: false,
        }
    }

    fn fresh() -> String {
        format!("tollgate-it-{:016x}:", rand::random::<u64>())
    }

    /// The keys under this prefix now.
    pub fn keys(&self) -> Vec<String> {
        let Ok(mut conn) = redis::Client::open(url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        else {
            return Vec::new();
        };
        redis::Commands::scan_match::<_, String>(&mut conn, format!("{}*", self.prefix))
            .map(|iter| iter.filter_map(Result::ok).collect())
            .unwrap_or_default()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if !self.on_test_redis {
            return;
        }
        let keys = self.keys();
        let Ok(mut conn) = redis::Client::open(url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        else {
            return;
        };
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::Commands::del(&mut conn, chunk);
        }
    }
}

/// A redis-server of the test's own on `port`, so that the test can stop it (and start
/// another on the same port); it is killed when dropped.
#[derive(Debug)]
pub struct OwnRedis {
    child: std::process::Child,
}

impl OwnRedis {
    /// Starts redis-server on 127.0.0.1:`port` (no persistence) and waits (at most 10 s)
    /// until it answers PING.
    pub fn start(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (the tests need it installed)");
        let own = OwnRedis { child };
        let url = format!("redis://127.0.0.1:{port}/0");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let pong = redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return own;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server on port {port} does not answer after 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server and waits for it to be gone (its port is then free).
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
