//! The SQLite store: the shared contract, migrations, and two store instances on one file
//! (the revocations table between them).

use super::*;
use crate::store::conformance;
use crate::store::{token_hash, Revoked};

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("sub/dir/t.db")).expect("opens");
    conformance::run(&store).await;
}

#[tokio::test]
async fn records_survive_reopening_and_migrations_run_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let rec = conformance::record(RecordKind::Refresh, "g", 9_999_999_999);
    {
        let store = SqliteStore::open(&path).expect("opens");
        store
            .insert(token_hash("r"), rec.clone())
            .await
            .expect("insert");
    }
    let store = SqliteStore::open(&path).expect("reopens");
    assert_eq!(store.get(token_hash("r")).await.expect("get"), Some(rec));
    let conn = store.conn.lock().expect("not poisoned");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("pragma");
    assert_eq!(version, MIGRATIONS.len() as i64);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn a_grant_from_before_grant_ends_ends_when_its_record_expires() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    {
        // A database as the previous release left it: schema version 2, one refresh token.
        let conn = Connection::open(&path).expect("opens");
        for sql in &MIGRATIONS[..2] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 2)
            .expect("version");
        conn.execute(
            "INSERT INTO records (hash, kind, state, grant_id, client_id, sub, username, scope, issued_at, expires_at) \
             VALUES (?1, 'refresh', 'active', 'g', 'mail-app', 'alice', 'alice', 'email', 100, 5000)",
            params![&token_hash("old")[..]],
        )
        .expect("old row");
    }
    let store = SqliteStore::open(&path).expect("migrates");
    let old = store
        .get(token_hash("old"))
        .await
        .expect("get")
        .expect("kept");
    assert_eq!((old.expires_at, old.grant_expires_at), (5000, 5000));
    assert_eq!((old.browser, old.scopes), (None, vec!["email".to_string()]));
    assert!(old.audiences.is_empty(), "{:?}", old.audiences);
    let version: i64 = store
        .conn
        .lock()
        .expect("not poisoned")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("pragma");
    assert_eq!(version, MIGRATIONS.len() as i64);
}

/// A subscriber that remembers what the feed handed it.
#[derive(Default)]
struct Seen(Mutex<Vec<Revoked>>);

impl RevocationSink for Seen {
    fn revoked(&self, event: Revoked) -> BoxFuture<'_, ()> {
        self.0.lock().expect("not poisoned").push(event);
        Box::pin(async {})
    }
}

impl Seen {
    fn events(&self) -> Vec<Revoked> {
        self.0.lock().expect("not poisoned").clone()
    }

    /// Waits (up to 2 s, checking every 10 ms) until `want` holds of what was seen.
    async fn until(&self, what: &str, want: impl Fn(&[Revoked]) -> bool) {
        let start = Instant::now();
        while !want(&self.events()) {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{what}: seen only {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A store on `path` with a subscriber and metrics of its own.
fn subscribed(path: &Path) -> (SqliteStore, Arc<Seen>, crate::metrics::Metrics) {
    let store = SqliteStore::open(path).expect("opens");
    let seen: Arc<Seen> = Arc::default();
    let sink: Arc<dyn RevocationSink> = seen.clone();
    store.subscribe(&sink);
    let metrics = crate::metrics::Metrics::new();
    store.count_in(metrics.revocations.clone());
    (store, seen, metrics)
}

#[tokio::test]
async fn a_revocation_at_one_store_reaches_another_on_the_same_file_once() {
    use Revoked::Token;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let (a, seen_a, metrics_a) = subscribed(&path);
    let (b, seen_b, metrics_b) = subscribed(&path);
    let far = 9_999_999_999;
    for (token, grant) in [("t", "g1"), ("r1", "g2"), ("r2", "g2")] {
        let rec = conformance::record(RecordKind::Access, grant, far);
        a.insert(token_hash(token), rec).await.expect("insert");
    }

    a.revoke(token_hash("t")).await.expect("revoke");
    assert_eq!(
        seen_a.events(),
        vec![Token(token_hash("t"))],
        "at once, here"
    );
    seen_b
        .until("one token, at B", |e| e == [Token(token_hash("t"))])
        .await;

    let mut grant = b.revoke_grant("g2").await.expect("revoke grant");
    grant.sort();
    seen_a.until("the grant, at A", |e| e.len() == 3).await;
    let mut at_a: Vec<_> = seen_a.events()[1..].to_vec();
    at_a.sort_by_key(|e| format!("{e:?}"));
    let mut want: Vec<_> = grant.iter().copied().map(Token).collect();
    want.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(at_a, want);

    // Several polls later, nobody has heard anything twice (own rows are skipped).
    tokio::time::sleep(revocations::POLL_EVERY * 3).await;
    assert_eq!(seen_a.events().len(), 3);
    assert_eq!(seen_b.events().len(), 3, "{:?}", seen_b.events());
    let r = &metrics_b.revocations;
    assert_eq!((r.local.get(), r.stream.get()), (2, 1));
    assert_eq!(r.lag.get_sample_count(), 1, "one revocation, one lag");
    assert!(r.lag.get_sample_sum() < 1.0);
    assert_eq!(r.stream_up.get(), 1);
    let r = &metrics_a.revocations;
    assert_eq!((r.local.get(), r.stream.get()), (1, 2));
    assert_eq!(r.lag.get_sample_count(), 1, "one grant, one lag");
    assert!(a.silent_for().is_some_and(|d| d < Duration::from_secs(1)));
}

#[tokio::test]
async fn a_store_opened_later_hears_only_of_revocations_made_after_it_opened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let (a, _seen_a, _m) = subscribed(&path);
    for token in ["before", "after"] {
        let rec = conformance::record(RecordKind::Access, token, 9_999_999_999);
        a.insert(token_hash(token), rec).await.expect("insert");
    }
    a.revoke(token_hash("before")).await.expect("revoke");
    let (b, seen_b, _m) = subscribed(&path);
    a.revoke(token_hash("after")).await.expect("revoke");
    let want = [Revoked::Token(token_hash("after"))];
    seen_b.until("only the later one", |e| e == want).await;
    tokio::time::sleep(revocations::POLL_EVERY * 3).await;
    assert_eq!(seen_b.events(), want);
    drop(b);
}

#[tokio::test]
async fn a_poller_behind_the_trim_tells_its_subscribers_to_forget_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let (store, seen, _metrics) = subscribed(&path);
    // Another instance trimmed rows this one never read.
    Connection::open(&path)
        .expect("opens")
        .execute(
            "INSERT INTO revocations_trimmed (only, upto) VALUES (1, 5)",
            [],
        )
        .expect("trim mark");
    seen.until("everything", |e| e == [Revoked::Everything])
        .await;
    tokio::time::sleep(revocations::POLL_EVERY * 3).await;
    assert_eq!(seen.events().len(), 1, "once, not at every poll");
    drop(store);
}

#[tokio::test]
async fn a_failed_read_is_reported_and_polling_resumes_when_the_table_is_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let (store, _seen, metrics) = subscribed(&path);
    let up = || metrics.revocations.stream_up.get();
    let wait = |want: i64| async move {
        let start = Instant::now();
        while up() != want {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "stream_up stays {}",
                up()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    wait(1).await;
    let other = Connection::open(&path).expect("opens");
    other
        .execute_batch("ALTER TABLE revocations RENAME TO hidden")
        .expect("hide the table");
    wait(0).await;
    tokio::time::sleep(revocations::POLL_EVERY * 3).await;
    assert!(
        store
            .silent_for()
            .is_some_and(|d| d >= revocations::POLL_EVERY * 3),
        "silent since the last good read: {:?}",
        store.silent_for()
    );
    other
        .execute_batch("ALTER TABLE hidden RENAME TO revocations")
        .expect("restore the table");
    wait(1).await;
    assert!(store
        .silent_for()
        .is_some_and(|d| d < Duration::from_secs(1)));
}

#[tokio::test]
async fn the_poller_stops_when_the_store_is_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("opens");
    let (writer, feed) = (Arc::downgrade(&store.conn), Arc::downgrade(&store.feed));
    // Let it poll (and trim) at least once.
    tokio::time::sleep(revocations::POLL_EVERY * 2).await;
    drop(store);
    assert!(feed.upgrade().is_none(), "the poller holds the feed weakly");
    let start = Instant::now();
    while writer.upgrade().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "the poller still runs"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn only_hashes_are_stored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).expect("opens");
    let secret = "the-raw-token-value-that-must-not-be-stored";
    store
        .insert(
            token_hash(secret),
            conformance::record(RecordKind::Access, "g", 9_999_999_999),
        )
        .await
        .expect("insert");
    drop(store);
    let bytes = std::fs::read(&path).expect("db file");
    let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap_or_default();
    let needle = secret.as_bytes();
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    assert!(!wal.windows(needle.len()).any(|w| w == needle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_racing_for_a_code_consume_it_once_without_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let (a, b) = (
        SqliteStore::open(&path).expect("opens"),
        SqliteStore::open(&path).expect("opens"),
    );
    // With deferred transactions one of these races ended in "database is locked" within
    // a few hundred on the development machine.
    for i in 0..1000 {
        let code = token_hash(&format!("code-{i}"));
        let rec = conformance::record(RecordKind::Code, &format!("g{i}"), 9_999_999_999);
        a.insert(code, rec).await.expect("insert");
        let (x, y) = tokio::join!(a.consume(code), b.consume(code));
        let (x, y) = (x.expect("no error at A"), y.expect("no error at B"));
        let active = [x, y]
            .iter()
            .filter(|r| r.as_ref().is_some_and(|r| r.state == RecordState::Active))
            .count();
        assert_eq!(active, 1, "race {i}: exactly one saw the code active");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_opening_one_new_file_at_once_migrate_it_once() {
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let opening: Vec<_> = (0..4)
            .map(|_| {
                let path = path.clone();
                tokio::task::spawn_blocking(move || SqliteStore::open(&path).map(drop))
            })
            .collect();
        for opened in opening {
            opened
                .await
                .expect("no panic")
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
    }
}

// === group commit (batch.rs) ===

/// `n` access records `prefix0..`, with the client id `bad` for the indexes in `bad`.
fn numbered(prefix: &str, n: usize, bad: &[usize]) -> Vec<(String, Record)> {
    (0..n)
        .map(|i| {
            let mut rec = conformance::record(RecordKind::Access, "g", 9_999_999_999);
            if bad.contains(&i) {
                rec.client_id = "bad".to_string();
            }
            (format!("{prefix}{i}"), rec)
        })
        .collect()
}

/// Inserts them all at once (every future polled before any resolves, so they queue
/// together) and returns each one's result in order.
async fn insert_all(store: &SqliteStore, records: &[(String, Record)]) -> Vec<StoreResult<()>> {
    futures_util::future::join_all(
        records
            .iter()
            .map(|(token, rec)| store.insert(token_hash(token), rec.clone())),
    )
    .await
}

#[tokio::test]
async fn concurrent_inserts_are_all_readable_once_each_resolves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let store = SqliteStore::open(&path).expect("opens");
    let records = numbered("t", 600, &[]);
    let results = insert_all(&store, &records).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // Through the store's reader and through another connection: committed, not just queued.
    let other = Connection::open(&path).expect("opens");
    for (token, rec) in &records {
        assert_eq!(
            store.get(token_hash(token)).await.expect("get").as_ref(),
            Some(rec)
        );
        assert_eq!(
            read(&other, &token_hash(token)).expect("read").as_ref(),
            Some(rec)
        );
    }
}

#[tokio::test]
async fn a_failing_insert_fails_only_its_own_caller() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("opens");
    // A real constraint the statement trips over: SQLite refuses records of client `bad`.
    store
        .conn
        .lock()
        .expect("not poisoned")
        .execute_batch(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON records WHEN NEW.client_id = 'bad' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .expect("trigger");
    let bad = [3, 150, 299];
    let records = numbered("t", 300, &bad);
    let results = insert_all(&store, &records).await;
    for (i, ((token, rec), result)) in records.iter().zip(&results).enumerate() {
        let stored = store.get(token_hash(token)).await.expect("get");
        if bad.contains(&i) {
            assert!(
                matches!(result, Err(StoreError::Sqlite(_))),
                "{i}: {result:?}"
            );
            assert_eq!(stored, None, "{i} was refused");
        } else {
            assert!(result.is_ok(), "{i}: {result:?}");
            assert_eq!(stored.as_ref(), Some(rec), "{i}");
        }
    }
}

#[tokio::test]
async fn dropping_the_store_commits_what_is_queued() {
    use futures_util::FutureExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let records = numbered("t", 400, &[]);
    {
        let store = SqliteStore::open(&path).expect("opens");
        for (token, rec) in &records {
            // One poll queues the insert; nobody waits for the answer.
            let _ = store.insert(token_hash(token), rec.clone()).now_or_never();
        }
    }
    let store = SqliteStore::open(&path).expect("reopens");
    for (token, rec) in &records {
        assert_eq!(
            store.get(token_hash(token)).await.expect("get").as_ref(),
            Some(rec),
            "{token}"
        );
    }
}

#[tokio::test]
async fn two_stores_on_one_file_batch_inserts_side_by_side() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let a = SqliteStore::open(&path).expect("opens");
    let b = SqliteStore::open(&path).expect("opens");
    let at_a = numbered("a", 300, &[]);
    let at_b = numbered("b", 300, &[]);
    let (ra, rb) = tokio::join!(insert_all(&a, &at_a), insert_all(&b, &at_b));
    assert!(ra.iter().chain(&rb).all(Result::is_ok), "{ra:?} {rb:?}");
    for (token, rec) in at_a.iter().chain(&at_b) {
        assert_eq!(
            a.get(token_hash(token)).await.expect("get").as_ref(),
            Some(rec)
        );
        assert_eq!(
            b.get(token_hash(token)).await.expect("get").as_ref(),
            Some(rec)
        );
    }
}

#[tokio::test]
async fn lookups_through_the_map_see_what_another_store_commits_and_stop_mapping() {
    // Two stores on one file: the other's commits are what the lookups' map must not hide.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    let (store, other) = (
        SqliteStore::open(&path).expect("opens"),
        SqliteStore::open(&path).expect("opens again"),
    );
    let rec = conformance::record(RecordKind::Access, "g", 9_999_999_999);
    other
        .insert(token_hash("a"), rec.clone())
        .await
        .expect("insert");
    // Unchanged for longer than MAP_AFTER_QUIET: the lookups map the file.
    for _ in 0..2 {
        assert!(store.get(token_hash("a")).await.expect("get").is_some());
        tokio::time::sleep(lookups::MAP_AFTER_QUIET + Duration::from_millis(100)).await;
    }
    assert!(store.get(token_hash("a")).await.expect("get").is_some());
    let mapped = store.lookups.mapped();
    for n in 0..50 {
        let hash = token_hash(&format!("b{n}"));
        other.insert(hash, rec.clone()).await.expect("insert");
        assert_eq!(
            store.get(hash).await.expect("get"),
            Some(rec.clone()),
            "b{n}"
        );
    }
    assert!(mapped, "mapped after a quiet second");
    assert!(!store.lookups.mapped(), "not mapped while the file changes");
}

#[tokio::test]
async fn lookups_are_answered_on_the_worker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("t.db")).expect("opens");
    let rec = conformance::record(RecordKind::Access, "g", 9_999_999_999);
    store
        .insert(token_hash("a"), rec.clone())
        .await
        .expect("insert");
    // Twenty lookups queued in one tick, one of them for a token nobody issued.
    let hashes: Vec<_> = (0..20)
        .map(|n| token_hash(if n == 7 { "nobody" } else { "a" }))
        .collect();
    let answers = futures_util::future::join_all(hashes.iter().map(|h| store.get(*h))).await;
    for (n, answer) in answers.into_iter().enumerate() {
        let want = (n != 7).then(|| rec.clone());
        assert_eq!(answer.expect("get"), want, "lookup {n}");
    }
    assert_eq!(store.lookups.on_worker_counts(), (20, 0));
}

#[test]
fn lookups_still_answer_once_the_runtime_the_store_was_opened_on_is_gone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    };
    let rec = conformance::record(RecordKind::Access, "g", 9_999_999_999);
    let first = runtime();
    let store = first.block_on(async {
        let store = SqliteStore::open(&dir.path().join("t.db")).expect("opens");
        store
            .insert(token_hash("a"), rec.clone())
            .await
            .expect("insert");
        assert_eq!(
            store.get(token_hash("a")).await.expect("get"),
            Some(rec.clone())
        );
        store
    });
    assert_eq!(store.lookups.on_worker_counts(), (1, 0));
    // The worker's task went with its runtime: the thread answers now.
    drop(first);
    let got = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(10), store.get(token_hash("a"))).await
    });
    assert_eq!(
        got.expect("answered, not left queued").expect("get"),
        Some(rec)
    );
    assert_eq!(store.lookups.on_worker_counts(), (1, 0));
}

/// The most pages the WAL of the database at `path` ever held: its file is reused from the
/// start once the WAL starts over, so its length says how far it grew.
fn wal_extent(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let len = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    // A 32-byte header, then frames of a 24-byte header and a 4 KiB page.
    len.saturating_sub(32) / (24 + 4096)
}

/// Inserts `n` records, each its own commit (awaited in turn), named from `round`.
async fn fill(store: &SqliteStore, round: usize, n: usize) {
    for i in 0..n {
        let rec = conformance::record(RecordKind::Access, &format!("g{round}-{i}"), 9_999_999_999);
        let hash = token_hash(&format!("t{round}-{i}"));
        store.insert(hash, rec).await.expect("insert");
    }
}

#[tokio::test]
async fn the_checkpoint_thread_copies_the_wal_back_so_that_it_starts_over() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    // The thread is nudged from 40 pages; the writer never checkpoints itself.
    let limits = checkpoint::Thresholds {
        nudge: 40,
        writer: i32::MAX,
    };
    let store = SqliteStore::open_with(&path, limits).expect("opens");
    let rounds = 12;
    let mut first = 0;
    for round in 0..rounds {
        fill(&store, round, 40).await;
        if round == 0 {
            first = wal_extent(&path);
            assert!(
                first >= 40,
                "a round fills the WAL past the nudge: {first} pages"
            );
        }
        // A pass that began after the round's last commit copies all of it (while commits
        // keep coming, none can: then only the writer's bound starts the WAL over).
        // No commit nudges the thread again when its pass ended short of the last commit (a
        // reader, the revocations poller, held an older snapshot) or between two of the
        // round's commits (the next one started the WAL over, and the rest of the round
        // stayed under the nudge): then one more commit, past the nudge, does.
        let start = Instant::now();
        let mut wrote = Instant::now();
        for extra in 0.. {
            if store.checkpointer.caught_up() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "no checkpoint in round {round}"
            );
            let below = store.checkpointer.wal_after_commit() < limits.nudge as u64;
            if below || wrote.elapsed() > Duration::from_millis(200) {
                let rec = conformance::record(RecordKind::Access, "more", 9_999_999_999);
                let hash = token_hash(&format!("x{round}-{extra}"));
                store.insert(hash, rec).await.expect("insert");
                wrote = Instant::now();
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    assert!(store.checkpointer.passes() >= rounds as u64);
    // Without checkpoints the WAL would hold every round's pages.
    let extent = wal_extent(&path);
    assert!(
        extent <= 3 * first,
        "the WAL grew to {extent} pages; a round writes {first}"
    );
    for i in [0, 39] {
        let hash = token_hash(&format!("t{}-{i}", rounds - 1));
        assert!(
            store.get(hash).await.expect("get").is_some(),
            "t-{i} is there"
        );
    }
}

#[tokio::test]
async fn the_writer_bounds_the_wal_itself_when_the_thread_does_not_copy_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t.db");
    // The thread is never nudged; the writer checkpoints from 40 pages.
    let limits = checkpoint::Thresholds {
        nudge: i32::MAX,
        writer: 40,
    };
    let store = SqliteStore::open_with(&path, limits).expect("opens");
    for round in 0..12 {
        fill(&store, round, 40).await;
    }
    let extent = wal_extent(&path);
    // 40 pages and the few one commit adds past them (12 rounds unchecked: hundreds).
    assert!(extent <= 60, "the WAL grew to {extent} pages");
    assert_eq!(store.checkpointer.passes(), 0);
    let hash = token_hash("t11-39");
    assert!(store.get(hash).await.expect("get").is_some());
}
