//! The behaviour every `TokenStore` must have; each implementation's tests run this.

use super::*;
use std::sync::Mutex;

/// A subscriber that remembers what the feed handed it.
#[derive(Default)]
struct Recorder(Mutex<Vec<Revoked>>);

impl RevocationSink for Recorder {
    fn revoked(&self, event: Revoked) -> BoxFuture<'_, ()> {
        self.0.lock().expect("not poisoned").push(event);
        Box::pin(async {})
    }
}

impl Recorder {
    /// The token hashes received so far, sorted, and forgotten.
    fn take(&self) -> Vec<TokenHash> {
        let mut seen: Vec<TokenHash> = std::mem::take(&mut *self.0.lock().expect("not poisoned"))
            .into_iter()
            .filter_map(|e| match e {
                Revoked::Token(h) => Some(h),
                Revoked::Everything => None,
            })
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }
}

pub fn record(kind: RecordKind, grant: &str, expires_at: u64) -> Record {
    Record {
        kind,
        state: RecordState::Active,
        grant_id: grant.to_string(),
        client_id: "mail-app".to_string(),
        sub: "alice".to_string(),
        username: Some("alice".to_string()),
        scopes: vec!["email".to_string(), "email.send".to_string()],
        issued_at: 1_000,
        expires_at,
        grant_expires_at: expires_at + 50_000,
        redirect_uri: Some("http://127.0.0.1:7000/redirect".to_string()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_string()),
        name: Some("Alice Liddell".to_string()),
        email: None,
        csrf: Some("csrf".to_string()),
        browser: Some("browser-hash".to_string()),
        audiences: vec![
            "https://api.example/mail".to_string(),
            "reports".to_string(),
        ],
        jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".to_string()),
    }
}

/// How a store gets rid of expired records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// `sweep(now)` deletes them (memory, SQLite).
    Sweep,
    /// Each record carries a TTL and the database drops it by itself (Redis); `sweep` is a
    /// no-op and the records' timestamps here are far from the real clock.
    Ttl,
}

/// Runs every rule against `store`, which must start empty and sweeps on call.
pub async fn run(store: &dyn TokenStore) {
    run_with(store, Expiry::Sweep).await
}

/// Runs every rule against `store`, which must start empty.
pub async fn run_with(store: &dyn TokenStore, expiry: Expiry) {
    let code = token_hash("code-1");
    let access = token_hash("access-1");
    let refresh = token_hash("refresh-1");
    let other = token_hash("access-other-grant");
    let recorder = Arc::new(Recorder::default());
    let sink: Arc<dyn RevocationSink> = recorder.clone();
    store.subscribe(&sink);

    // insert / get round-trips every field.
    let code_record = record(RecordKind::Code, "g1", 5_000);
    store
        .insert(code, code_record.clone())
        .await
        .expect("insert");
    assert_eq!(
        store.get(code).await.expect("get"),
        Some(code_record.clone())
    );
    assert_eq!(store.get(token_hash("nope")).await.expect("get"), None);

    // consume: exactly one caller sees Active.
    let first = store
        .consume(code)
        .await
        .expect("consume")
        .expect("present");
    assert_eq!(first.state, RecordState::Active);
    let second = store
        .consume(code)
        .await
        .expect("consume")
        .expect("present");
    assert_eq!(second.state, RecordState::Used);
    assert_eq!(
        store.consume(token_hash("nope")).await.expect("consume"),
        None
    );

    // revoke_grant revokes the whole chain and nothing else.
    store
        .insert(access, record(RecordKind::Access, "g1", 5_000))
        .await
        .expect("insert");
    store
        .insert(refresh, record(RecordKind::Refresh, "g1", 9_000))
        .await
        .expect("insert");
    store
        .insert(other, record(RecordKind::Access, "g2", 5_000))
        .await
        .expect("insert");
    let mut revoked = store.revoke_grant("g1").await.expect("revoke_grant");
    revoked.sort();
    let mut want = vec![code, access, refresh];
    want.sort();
    assert_eq!(revoked, want);
    assert_eq!(
        recorder.take(),
        want,
        "revoke_grant publishes every hash before it returns"
    );
    for h in [code, access, refresh] {
        assert_eq!(
            store.get(h).await.expect("get").expect("present").state,
            RecordState::Revoked
        );
    }
    assert_eq!(
        store.get(other).await.expect("get").expect("present").state,
        RecordState::Active
    );

    // A revoked single-use record cannot be consumed back to life.
    let again = store
        .consume(refresh)
        .await
        .expect("consume")
        .expect("present");
    assert_eq!(again.state, RecordState::Revoked);
    assert_eq!(
        store
            .get(refresh)
            .await
            .expect("get")
            .expect("present")
            .state,
        RecordState::Revoked
    );

    // revoke one record.
    let before = store.revoke(other).await.expect("revoke").expect("present");
    assert_eq!(before.state, RecordState::Active);
    assert_eq!(
        recorder.take(),
        vec![other],
        "revoke publishes before it returns"
    );
    assert_eq!(
        store.revoke(token_hash("nope")).await.expect("revoke"),
        None
    );
    assert_eq!(
        recorder.take(),
        Vec::<TokenHash>::new(),
        "nothing revoked, nothing published"
    );
    assert!(!store
        .get(other)
        .await
        .expect("get")
        .expect("present")
        .is_live(1_000));

    // delete and sweep.
    store.delete(other).await.expect("delete");
    assert_eq!(store.get(other).await.expect("get"), None);
    if expiry == Expiry::Sweep {
        let swept = store.sweep(6_000).await.expect("sweep");
        assert_eq!(swept, 2, "code and access expired at 5000");
        assert_eq!(store.get(access).await.expect("get"), None);
        assert!(store.get(refresh).await.expect("get").is_some());
    }
    assert_eq!(
        store.revoke_grant("g2").await.expect("revoke_grant"),
        Vec::<TokenHash>::new()
    );

    grant_end_travels_with_every_record(store).await;
    server_keys_are_created_once(store).await;
    proof_ids_are_spent_once_across_sharers(store).await;
    login_failures_count_in_a_sliding_window(store).await;
}

/// `add_failure` counts a key's failures since a time; `clear_failures` forgets them; a
/// ban is read back until it ends.
async fn login_failures_count_in_a_sliding_window(store: &dyn TokenStore) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let key = "user:alice";
    assert_eq!(store.add_failure(key, now - 100, 0).await.expect("add"), 1);
    assert_eq!(store.add_failure(key, now, now - 50).await.expect("add"), 1);
    assert_eq!(
        store.add_failure(key, now, 0).await.expect("add"),
        3,
        "two failures in one second both count"
    );
    assert_eq!(
        store.add_failure("ip:10.0.0.1", now, 0).await.expect("add"),
        1
    );
    store.clear_failures(key).await.expect("clear");
    assert_eq!(store.add_failure(key, now, 0).await.expect("add"), 1);
    assert_eq!(store.banned_until(key).await.expect("ban"), None);
    store.ban(key, now + 3600).await.expect("ban");
    assert_eq!(
        store.banned_until(key).await.expect("ban"),
        Some(now + 3600)
    );
}

/// The grant's end is kept with each of its records through every state change.
async fn grant_end_travels_with_every_record(store: &dyn TokenStore) {
    let end = 7_777;
    let hashes = [token_hash("end-code"), token_hash("end-refresh")];
    for (h, kind) in hashes.iter().zip([RecordKind::Code, RecordKind::Refresh]) {
        let r = Record {
            grant_expires_at: end,
            ..record(kind, "g-end", 7_000)
        };
        store.insert(*h, r).await.expect("insert");
    }
    let used = store.consume(hashes[0]).await.expect("consume");
    assert_eq!(used.map(|r| r.grant_expires_at), Some(end));
    store.revoke_grant("g-end").await.expect("revoke_grant");
    for h in hashes {
        let r = store.get(h).await.expect("get").expect("present");
        assert_eq!((r.grant_expires_at, r.state), (end, RecordState::Revoked));
    }
}

/// `server_key` stores the first candidate and hands it to every later caller.
async fn server_keys_are_created_once(store: &dyn TokenStore) {
    let first = store.server_key("csrf", [1; 32]).await.expect("key");
    assert_eq!(first, [1; 32]);
    let again = store.server_key("csrf", [2; 32]).await.expect("key");
    assert_eq!(again, [1; 32], "a second candidate never replaces the key");
    let other = store.server_key("other", [3; 32]).await.expect("key");
    assert_eq!(other, [3; 32], "names are independent");
    store.sweep(u64::MAX / 2).await.expect("sweep");
    assert_eq!(
        store.server_key("csrf", [4; 32]).await.expect("key"),
        [1; 32],
        "keys are never swept"
    );
}

/// `spend_proof_id`: a store shared by instances says "first" once per id; a store one
/// process owns leaves the answer to the process's own set and always says "first".
async fn proof_ids_are_spent_once_across_sharers(store: &dyn TokenStore) {
    let id = [7; 32];
    assert!(store.spend_proof_id(id, 60).await.expect("spends"));
    let again = store.spend_proof_id(id, 60).await.expect("spends");
    assert_eq!(again, !store.shares_proof_ids());
    assert!(store.spend_proof_id([8; 32], 60).await.expect("spends"));
}
