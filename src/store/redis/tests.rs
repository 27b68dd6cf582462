//! The Redis store against the machine's real Redis (127.0.0.1:6379, or
//! `TOLLGATE_TEST_REDIS`), each test under its own random key prefix, removed at the end.

use super::*;
use crate::config::Secret;
use crate::store::conformance::{self, Expiry};
use crate::store::{token_hash, RecordKind};
use redis::TypedCommands as _;

/// The Redis the tests use.
fn test_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Deletes every key under its prefix when dropped (SCAN + DEL), whatever the test did.
struct Cleanup {
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut conn) = redis::Client::open(test_url())
            .and_then(|c| c.get_connection_with_timeout(RESPONSE_TIMEOUT))
        else {
            return;
        };
        let keys: Vec<String> = match conn.scan_match(format!("{}*", self.prefix)) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> = redis::Commands::del(&mut conn, chunk);
        }
    }
}

fn spec(prefix: &str) -> RedisSpec {
    RedisSpec {
        url: Secret::new(test_url()),
        prefix: prefix.to_string(),
        password: None,
    }
}

/// A store under a fresh prefix, and the guard that removes its keys.
async fn spawn_store() -> (RedisStore, Cleanup) {
    let prefix = format!("tollgate-test-{:016x}:", rand::random::<u64>());
    let store = RedisStore::open(&spec(&prefix)).await.unwrap_or_else(|e| {
        panic!(
            "Redis is not reachable at {} ({e}): these tests need a real Redis. Start one with \
             `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''` \
             (.ci/run does), or point TOLLGATE_TEST_REDIS at one.",
            test_url()
        )
    });
    (store, Cleanup { prefix })
}

#[tokio::test]
async fn redis_store_meets_the_contract() {
    let (store, _cleanup) = spawn_store().await;
    conformance::run_with(&store, Expiry::Ttl).await;
}

#[tokio::test]
async fn every_key_of_a_record_lives_as_long_as_the_record() {
    let (store, cleanup) = spawn_store().await;
    let hash = token_hash("ttl");
    let record = Record {
        issued_at: 1_000,
        ..conformance::record(RecordKind::Access, "g-ttl", 1_600)
    };
    store.insert(hash, record).await.expect("insert");
    let mut conn = store.conn();
    let hex = hex(&hash);
    for key in [
        format!("{}{{g-ttl}}:r:{hex}", cleanup.prefix),
        format!("{}{{g-ttl}}:g", cleanup.prefix),
        format!("{}h:{hex}", cleanup.prefix),
    ] {
        let ttl: i64 = conn.ttl(&key).await.expect("ttl");
        assert!((595..=600).contains(&ttl), "{key}: TTL {ttl}, want 600");
    }
    // A longer-lived record of the grant stretches the grant's set, never shrinks it.
    let longer = Record {
        issued_at: 1_000,
        ..conformance::record(RecordKind::Refresh, "g-ttl", 4_000)
    };
    store
        .insert(token_hash("ttl-2"), longer)
        .await
        .expect("insert");
    let shorter = Record {
        issued_at: 1_000,
        ..conformance::record(RecordKind::Access, "g-ttl", 1_100)
    };
    store
        .insert(token_hash("ttl-3"), shorter)
        .await
        .expect("insert");
    let ttl: i64 = conn
        .ttl(format!("{}{{g-ttl}}:g", cleanup.prefix))
        .await
        .expect("ttl");
    assert!(
        (2_995..=3_000).contains(&ttl),
        "grant set TTL {ttl}, want 3000"
    );
}

#[tokio::test]
async fn one_code_is_consumed_once_however_many_race_for_it() {
    let (store, _cleanup) = spawn_store().await;
    let store = Arc::new(store);
    let code = token_hash("raced-code");
    store
        .insert(code, conformance::record(RecordKind::Code, "g-race", 9_000))
        .await
        .expect("insert");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let store = store.clone();
        tasks.spawn(async move { store.consume(code).await.expect("consume") });
    }
    let mut active = 0;
    while let Some(before) = tasks.join_next().await {
        if before.expect("task").expect("present").state == RecordState::Active {
            active += 1;
        }
    }
    assert_eq!(active, 1, "exactly one consumer saw the code active");
}

#[tokio::test]
async fn racing_instances_agree_on_one_server_key() {
    let (store, _cleanup) = spawn_store().await;
    let store = Arc::new(store);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10u8 {
        let store = store.clone();
        tasks.spawn(async move { store.server_key("csrf", [i; 32]).await.expect("key") });
    }
    let mut keys = Vec::new();
    while let Some(key) = tasks.join_next().await {
        keys.push(key.expect("task"));
    }
    keys.dedup();
    assert_eq!(keys.len(), 1, "every racer got the same key");
}

#[tokio::test]
async fn prefixes_keep_deployments_apart() {
    let (a, _ca) = spawn_store().await;
    let (b, _cb) = spawn_store().await;
    let hash = token_hash("shared-name");
    a.insert(hash, conformance::record(RecordKind::Access, "g", 9_000))
        .await
        .expect("insert");
    assert!(a.get(hash).await.expect("get").is_some());
    assert_eq!(b.get(hash).await.expect("get"), None);
    assert_eq!(
        b.revoke_grant("g").await.expect("revoke"),
        Vec::<TokenHash>::new()
    );
    assert_eq!(
        a.get(hash).await.expect("get").map(|r| r.state),
        Some(RecordState::Active)
    );
}

#[tokio::test]
async fn unreachable_redis_fails_fast_at_open() {
    // A port nothing listens on: the listener is bound, read for its port, and closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let started = std::time::Instant::now();
    let spec = RedisSpec {
        url: Secret::new(format!("redis://127.0.0.1:{port}/0")),
        ..spec("unused:")
    };
    assert!(RedisStore::open(&spec).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn hashes_round_trip_through_hex() {
    let hash = token_hash("x");
    assert_eq!(unhex(&hex(&hash)).expect("valid"), hash);
    assert!(unhex("zz").is_err());
    assert!(unhex(&"é".repeat(32)).is_err());
}
