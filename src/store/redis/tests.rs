//! The Redis store against the machine's real Redis (127.0.0.1:6379, or
//! `TOLLGATE_TEST_REDIS`), each test under its own random key prefix, removed at the end,
//! and against a Redis Cluster of this test process's own (three masters on loopback,
//! started on first use, gone with the process).

use super::*;
use crate::config::{RedisTopology, Secret};
use crate::store::conformance::{self, Expiry};
use crate::store::{token_hash, RecordKind, Revoked};
use redis::TypedCommands as _;

/// The integration tests' fixtures for Redis servers of a test's own.
#[allow(dead_code)]
#[path = "../../../tests/it/common/redis/servers.rs"]
mod servers;

/// The Redis the tests use.
fn test_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The Cluster the tests of this process share.
fn cluster() -> &'static servers::OwnCluster {
    static CLUSTER: std::sync::OnceLock<servers::OwnCluster> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(servers::OwnCluster::start)
}

/// Where a test's store runs.
#[derive(Debug, Clone, Copy)]
enum On {
    /// The machine's Redis.
    Redis,
    /// This process's Cluster.
    Cluster,
}

const BOTH: [On; 2] = [On::Redis, On::Cluster];

/// Deletes every key under its prefix when dropped (SCAN + DEL), whatever the test did.
struct Cleanup {
    prefix: String,
    on: On,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // The Cluster's keys go with it.
        if let On::Cluster = self.on {
            return;
        }
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

fn spec(on: On, prefix: &str) -> RedisSpec {
    let topology = match on {
        On::Redis => RedisTopology::Standalone(Secret::new(test_url())),
        On::Cluster => {
            let nodes = cluster()
                .nodes
                .iter()
                .map(|n| crate::config::RedisNode {
                    host: "127.0.0.1".to_string(),
                    port: n.port,
                })
                .collect();
            RedisTopology::Cluster { nodes }
        }
    };
    RedisSpec {
        topology,
        prefix: prefix.to_string(),
        password: None,
    }
}

/// A store under a fresh prefix, and the guard that removes its keys.
async fn spawn_store(on: On) -> (RedisStore, Cleanup) {
    let prefix = format!("tollgate-test-{:016x}:", rand::random::<u64>());
    let store = RedisStore::open(&spec(on, &prefix))
        .await
        .unwrap_or_else(|e| match on {
            On::Redis => panic!(
                "Redis is not reachable at {} ({e}): these tests need a real Redis. Start one \
                 with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save ''` \
                 (.ci/run does), or point TOLLGATE_TEST_REDIS at one.",
                test_url()
            ),
            On::Cluster => panic!("the test Cluster does not answer: {e}"),
        });
    (store, Cleanup { prefix, on })
}

#[tokio::test]
async fn redis_store_meets_the_contract() {
    let (store, _cleanup) = spawn_store(On::Redis).await;
    conformance::run_with(&store, Expiry::Ttl).await;
}

#[tokio::test]
async fn redis_store_on_a_cluster_meets_the_contract() {
    let (store, _cleanup) = spawn_store(On::Cluster).await;
    conformance::run_with(&store, Expiry::Ttl).await;
}

#[tokio::test]
async fn every_key_of_a_record_lives_as_long_as_the_record() {
    for on in BOTH {
        every_key_lives_as_long_as_its_record_on(on).await;
    }
}

async fn every_key_lives_as_long_as_its_record_on(on: On) {
    let (store, cleanup) = spawn_store(on).await;
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
        assert!(
            (595..=600).contains(&ttl),
            "{on:?}: {key}: TTL {ttl}, want 600"
        );
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
        "{on:?}: grant set TTL {ttl}, want 3000"
    );
}

#[tokio::test]
async fn one_code_is_consumed_once_however_many_race_for_it() {
    for on in BOTH {
        one_code_is_consumed_once_on(on).await;
    }
}

async fn one_code_is_consumed_once_on(on: On) {
    // Two instances, fifteen racers each.
    let (a, cleanup) = spawn_store(on).await;
    let b = second_instance(&cleanup).await;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let code = token_hash("raced-code");
    a.insert(code, conformance::record(RecordKind::Code, "g-race", 9_000))
        .await
        .expect("insert");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.spawn(async move { store.consume(code).await.expect("consume") });
    }
    let mut active = 0;
    while let Some(before) = tasks.join_next().await {
        if before.expect("task").expect("present").state == RecordState::Active {
            active += 1;
        }
    }
    assert_eq!(
        active, 1,
        "{on:?}: exactly one consumer saw the code active"
    );
}

#[tokio::test]
async fn racing_instances_agree_on_one_server_key() {
    let (store, _cleanup) = spawn_store(On::Redis).await;
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
    let (a, _ca) = spawn_store(On::Redis).await;
    let (b, _cb) = spawn_store(On::Redis).await;
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
    let port = servers::free_port();
    let nowhere = || {
        vec![crate::config::RedisNode {
            host: "127.0.0.1".to_string(),
            port,
        }]
    };
    for topology in [
        RedisTopology::Standalone(Secret::new(format!("redis://127.0.0.1:{port}/0"))),
        RedisTopology::Sentinel {
            sentinels: nowhere(),
            master: "mymaster".to_string(),
            db: 0,
        },
        RedisTopology::Cluster { nodes: nowhere() },
    ] {
        let shown = format!("{topology:?}");
        let started = std::time::Instant::now();
        let spec = RedisSpec {
            topology,
            ..spec(On::Redis, "unused:")
        };
        assert!(RedisStore::open(&spec).await.is_err(), "{shown}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{shown}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn hashes_round_trip_through_hex() {
    let hash = token_hash("x");
    assert_eq!(unhex(&hex(&hash)).expect("valid"), hash);
    assert!(unhex("zz").is_err());
    assert!(unhex(&"é".repeat(32)).is_err());
}

/// A subscriber that remembers what it was handed.
#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<Revoked>>);

impl RevocationSink for Seen {
    fn revoked(&self, event: Revoked) -> BoxFuture<'_, ()> {
        self.0.lock().expect("not poisoned").push(event);
        Box::pin(async {})
    }
}

impl Seen {
    fn tokens(&self) -> Vec<TokenHash> {
        let mut seen: Vec<TokenHash> = self
            .0
            .lock()
            .expect("not poisoned")
            .iter()
            .filter_map(|e| match e {
                Revoked::Token(h) => Some(*h),
                Revoked::Everything => None,
            })
            .collect();
        seen.sort();
        seen
    }
}

/// A second instance on `a`'s prefix (sharing its cleanup).
async fn second_instance(cleanup: &Cleanup) -> RedisStore {
    RedisStore::open(&spec(cleanup.on, &cleanup.prefix))
        .await
        .expect("second instance")
}

#[tokio::test]
async fn a_revocation_at_one_instance_reaches_the_others_within_a_second() {
    for on in BOTH {
        a_revocation_reaches_the_others_on(on).await;
    }
}

async fn a_revocation_reaches_the_others_on(on: On) {
    let (a, cleanup) = spawn_store(on).await;
    let b = second_instance(&cleanup).await;
    let seen = Arc::new(Seen::default());
    let sink: Arc<dyn RevocationSink> = seen.clone();
    b.subscribe(&sink);
    let at_a = Arc::new(Seen::default());
    let sink_a: Arc<dyn RevocationSink> = at_a.clone();
    a.subscribe(&sink_a);

    let mut want = vec![token_hash("s-access"), token_hash("s-refresh")];
    want.sort();
    for (h, kind) in want.iter().zip([RecordKind::Access, RecordKind::Refresh]) {
        a.insert(*h, conformance::record(kind, "g-stream", 9_000))
            .await
            .expect("insert");
    }
    let single = token_hash("s-single");
    a.insert(
        single,
        conformance::record(RecordKind::Access, "g-one", 9_000),
    )
    .await
    .expect("insert");
    let started = std::time::Instant::now();
    a.revoke_grant("g-stream").await.expect("revoke_grant");
    a.revoke(single).await.expect("revoke");
    let mut all = want.clone();
    all.push(single);
    all.sort();
    while seen.tokens() != all && started.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        seen.tokens(),
        all,
        "{on:?}: B heard every revocation within a second"
    );
    assert_eq!(
        at_a.tokens(),
        all,
        "{on:?}: A heard each once, from its own call, not again from the stream"
    );
    // Each read, even an empty one, proves the stream: never silent for longer than a block.
    for store in [&a, &b] {
        let silent = store.silent_for().expect("a shared channel");
        assert!(
            silent < Duration::from_secs(1),
            "{on:?}: silent for {silent:?}"
        );
    }
}

#[tokio::test]
async fn a_reader_whose_place_was_trimmed_away_knows_it_missed_some() {
    let (a, cleanup) = spawn_store(On::Redis).await;
    let mut conn = a.conn();
    let stream = RevocationStream::new(&cleanup.prefix);
    stream
        .publish(&mut conn, &[token_hash("1")])
        .await
        .expect("xadd");
    let seen_up_to = stream.last_id(&mut conn).await.expect("last id");
    stream
        .publish(&mut conn, &[token_hash("2")])
        .await
        .expect("xadd");
    let mut reader = redis::Client::open(test_url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connects");
    assert!(!stream
        .missed_some(&mut reader, &seen_up_to)
        .await
        .expect("xinfo"));
    let newest = stream.last_id(&mut conn).await.expect("last id");
    let _: i64 = redis::cmd("XTRIM")
        .arg(format!("{}revocations", cleanup.prefix))
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("trim");
    assert!(stream
        .missed_some(&mut reader, &seen_up_to)
        .await
        .expect("xinfo"));
    assert!(
        !stream
            .missed_some(&mut reader, &newest)
            .await
            .expect("xinfo"),
        "a reader that had seen everything missed nothing"
    );
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{}revocations", cleanup.prefix))
        .query_async(&mut conn)
        .await
        .expect("del");
    assert!(
        stream
            .missed_some(&mut reader, &newest)
            .await
            .expect("exists"),
        "the stream is gone (Redis restarted empty)"
    );
    assert!(!stream
        .missed_some(&mut reader, "0-0")
        .await
        .expect("exists"));
}

#[tokio::test]
async fn on_sentinel_writes_go_to_the_new_master_soon_after_a_failover() {
    let own = tokio::task::spawn_blocking(servers::OwnSentinel::start)
        .await
        .expect("sentinel starts");
    let prefix = format!("tollgate-test-{:016x}:", rand::random::<u64>());
    // A sentinel that is down comes first: the others must do.
    let mut spec = on_sentinel(&own, &prefix, None);
    if let RedisTopology::Sentinel { sentinels, .. } = &mut spec.topology {
        sentinels.insert(
            0,
            crate::config::RedisNode {
                host: "127.0.0.1".to_string(),
                port: servers::free_port(),
            },
        );
    }
    let store = RedisStore::open(&spec).await.expect("open");
    drop(follows_a_failover(&store, own, &prefix).await);
}

/// Writes a record, has `own`'s sentinel fail over, and checks that within a second every
/// write of `store` (under `prefix`) lands on the new master, where the first record is too.
async fn follows_a_failover(
    store: &RedisStore,
    own: servers::OwnSentinel,
    prefix: &str,
) -> servers::OwnSentinel {
    let before = token_hash("before");
    store
        .insert(before, conformance::record(RecordKind::Access, "g", 9_000))
        .await
        .expect("insert");
    // SENTINEL FAILOVER leaves the old master up, taking writes, for seconds: the store
    // must leave it as soon as the sentinel names the new one.
    let (own, new_master) = tokio::task::spawn_blocking(move || {
        let port = own.failover();
        (own, port)
    })
    .await
    .expect("failover");
    let switched = std::time::Instant::now();
    let on_new_master = |hash: &TokenHash| {
        let key = format!("{prefix}h:{}", hex(hash));
        own.server(new_master)
            .query::<bool>(redis::cmd("EXISTS").arg(key))
            .unwrap_or(false)
    };
    for i in 0.. {
        let hash = token_hash(&format!("after-{i}"));
        let written = store
            .insert(hash, conformance::record(RecordKind::Access, "g", 9_000))
            .await;
        if written.is_ok() && on_new_master(&hash) {
            break;
        }
        assert!(
            switched.elapsed() < Duration::from_secs(1),
            "writes still miss the new master after {:?}",
            switched.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "writes reach the new master {:?} after the switch",
        switched.elapsed()
    );
    let later = token_hash("later");
    store
        .insert(later, conformance::record(RecordKind::Access, "g", 9_000))
        .await
        .expect("insert");
    assert!(on_new_master(&later), "and stay there");
    assert!(
        store.get(before).await.expect("get").is_some(),
        "replicated before"
    );
    own
}

/// A store spec on `own`'s sentinel.
fn on_sentinel(own: &servers::OwnSentinel, prefix: &str, password: Option<&str>) -> RedisSpec {
    RedisSpec {
        topology: RedisTopology::Sentinel {
            sentinels: vec![crate::config::RedisNode {
                host: "127.0.0.1".into(),
                port: own.sentinel.port,
            }],
            master: own.master_name.to_string(),
            db: 0,
        },
        prefix: prefix.to_string(),
        password: password.map(|p| Secret::new(p.to_string())),
    }
}

/// Inserts, reads back and waits (a second at most) for the revocation reader's first read.
async fn works(store: &RedisStore, what: &str) {
    let hash = token_hash("works");
    store
        .insert(hash, conformance::record(RecordKind::Access, "g", 9_000))
        .await
        .unwrap_or_else(|e| panic!("{what}: insert: {e}"));
    assert!(store.get(hash).await.expect("get").is_some(), "{what}");
    let started = std::time::Instant::now();
    while store
        .silent_for()
        .is_none_or(|s| s > Duration::from_secs(1))
    {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: the revocation reader never read"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn on_sentinel_the_password_goes_to_the_servers_and_to_sentinels_that_ask_for_it() {
    const PASSWORD: &str = "s3cret-sentinel";
    for sentinel_too in [false, true] {
        let own = tokio::task::spawn_blocking(move || {
            servers::OwnSentinel::start_with(Some(PASSWORD), sentinel_too)
        })
        .await
        .expect("sentinel starts");
        let what = if sentinel_too {
            "sentinel with requirepass"
        } else {
            "sentinel without"
        };
        let store = RedisStore::open(&on_sentinel(&own, "pw:", Some(PASSWORD)))
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        works(&store, what).await;
        assert!(
            RedisStore::open(&on_sentinel(&own, "pw:", None))
                .await
                .is_err(),
            "{what}: no password, no store"
        );
        assert!(
            RedisStore::open(&on_sentinel(&own, "pw:", Some("wrong")))
                .await
                .is_err(),
            "{what}: a wrong password, no store"
        );
        // The watch asks the sentinels itself, with the password when they want it.
        drop(follows_a_failover(&store, own, "pw:").await);
    }
}

#[tokio::test]
async fn on_a_cluster_the_password_goes_to_every_node() {
    const PASSWORD: &str = "s3cret-cluster";
    let own = tokio::task::spawn_blocking(|| servers::OwnCluster::start_with(Some(PASSWORD)))
        .await
        .expect("cluster starts");
    let with = |password: Option<&str>| RedisSpec {
        password: password.map(|p| Secret::new(p.to_string())),
        topology: RedisTopology::Cluster {
            nodes: vec![crate::config::RedisNode {
                host: "127.0.0.1".into(),
                port: own.nodes[0].port,
            }],
        },
        prefix: "pw:".to_string(),
    };
    let store = RedisStore::open(&with(Some(PASSWORD)))
        .await
        .expect("opens with the password");
    works(&store, "cluster").await;
    // Keys on every node: the other nodes were found from the one given, password and all.
    for i in 0..20 {
        let hash = token_hash(&format!("spread-{i}"));
        store
            .insert(
                hash,
                conformance::record(RecordKind::Access, &format!("g{i}"), 9_000),
            )
            .await
            .expect("insert");
    }
    for node in &own.nodes {
        let keys: u64 = node.query(&redis::cmd("DBSIZE")).expect("DBSIZE");
        assert!(keys > 0, "node {} holds nothing", node.port);
    }
    assert!(
        RedisStore::open(&with(None)).await.is_err(),
        "no password, no store"
    );
}

/// `tollgate check` accepts what the config parser accepts; start-up must then not refuse
/// the same URL's form (it may only fail to connect).
#[test]
fn every_url_the_config_accepts_makes_a_connector() {
    for store in [
        "redis+sentinel://10.0.0.1:26379,sentinel_b.internal:26380,[::1]:26379/mymaster/3",
        "redis+cluster://node-a:7000,[fd00::2]:7001,10.0.0.3:7002",
        "redis://127.0.0.1:6379/0",
        "rediss://cache.internal:6380/1",
    ] {
        let text = format!("[oauth]\nstore = \"{store}\"\n");
        let config = crate::config::Config::from_str(&text, std::path::Path::new("gateway.toml"))
            .unwrap_or_else(|e| panic!("{store}: {e}"));
        let crate::config::StoreSpec::Redis(spec) = &config.oauth.store else {
            panic!("{store}: not Redis")
        };
        assert!(connect::Connector::new(spec).is_ok(), "{store}");
        let with_password = RedisSpec {
            password: Some(Secret::new("pw".to_string())),
            ..spec.clone()
        };
        assert!(connect::Connector::new(&with_password).is_ok(), "{store}");
    }
}

#[tokio::test]
async fn a_cluster_that_is_down_fails_calls_within_a_second() {
    let mut own = tokio::task::spawn_blocking(servers::OwnCluster::start)
        .await
        .expect("cluster starts");
    let nodes = own
        .nodes
        .iter()
        .map(|n| crate::config::RedisNode {
            host: "127.0.0.1".to_string(),
            port: n.port,
        })
        .collect();
    let store = RedisStore::open(&RedisSpec {
        topology: RedisTopology::Cluster { nodes },
        ..spec(On::Redis, "down:")
    })
    .await
    .expect("open");
    works(&store, "cluster").await;
    for node in &mut own.nodes {
        node.kill();
    }
    for i in 0..3 {
        let started = std::time::Instant::now();
        let got = store.get(token_hash(&format!("down-{i}"))).await;
        assert!(got.is_err(), "{got:?}");
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "call {i} failed after {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn on_sentinel_a_dead_sentinel_in_the_list_is_passed_over() {
    let own = tokio::task::spawn_blocking(servers::OwnSentinel::start)
        .await
        .expect("sentinel starts");
    let mut spec = on_sentinel(&own, "two-sentinels:", None);
    if let RedisTopology::Sentinel { sentinels, .. } = &mut spec.topology {
        sentinels.insert(
            0,
            crate::config::RedisNode {
                host: "127.0.0.1".to_string(),
                port: servers::free_port(),
            },
        );
    }
    let started = std::time::Instant::now();
    let store = RedisStore::open(&spec)
        .await
        .expect("the second sentinel answers");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    works(&store, "a dead sentinel first").await;
}
