//! The machine's real Redis (127.0.0.1:6379, or `TOLLGATE_TEST_REDIS`) for tests of the
//! Redis store: each user gets its own key prefix, and every key under it is deleted when
//! the [`RedisPrefix`] is dropped.

use std::time::Duration;

/// The Redis the tests use.
pub fn url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// A fresh key prefix on the test Redis; its keys are removed (SCAN + DEL) on drop.
#[derive(Debug)]
pub struct RedisPrefix {
    pub prefix: String,
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
            prefix: format!("tollgate-it-{:016x}:", rand::random::<u64>()),
        }
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
