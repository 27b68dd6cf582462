use super::*;
use crate::store::token_hash;
use proptest::prelude::*;
use std::collections::HashMap;

fn key(n: u32) -> TokenHash {
    token_hash(&format!("token-{n}"))
}

/// An entry whose value (carried in `exp`) is `v`.
fn value(v: u64) -> Cached {
    Cached {
        identity: None,
        exp: Some(v),
        checked: 0,
    }
}

/// The value cached for `k` at `now`, if any (a miss's flight is left behind, harmless).
fn get(t: &Table, k: &TokenHash, now: u64) -> Option<u64> {
    match t.lookup(k, now) {
        Lookup::Hit(c) => c.exp,
        Lookup::Miss(_) => None,
    }
}

#[test]
fn an_entry_is_served_until_its_deadline_and_never_at_it() {
    let t = Table::new(100);
    t.insert(&key(1), value(7), 1_000, 10);
    assert_eq!(get(&t, &key(1), 999), Some(7));
    assert_eq!(get(&t, &key(1), 1_000), None);
    // Removed when found expired.
    assert_eq!(t.held(), 0);
    // Born expired: not kept at all.
    t.insert(&key(2), value(7), 10, 10);
    assert_eq!(t.held(), 0);
}

#[test]
fn the_capacity_bounds_the_entries_and_the_newest_are_kept() {
    for capacity in [1u64, 7, 300, 5_000] {
        let t = Table::new(capacity);
        for n in 0..(capacity as u32 * 4 + 10) {
            t.insert(&key(n), value(u64::from(n)), u64::MAX >> 2, 1);
            assert!(t.held() as u64 <= capacity, "capacity {capacity}");
        }
        assert_eq!(t.held() as u64, capacity);
        assert_eq!(t.live(2), capacity);
        // The newest entry is never the one evicted for itself.
        let last = capacity as u32 * 4 + 9;
        assert_eq!(get(&t, &key(last), 2), Some(u64::from(last)));
    }
}

#[test]
fn a_zero_capacity_caches_nothing() {
    let t = Table::new(0);
    t.insert(&key(1), value(1), 1_000, 1);
    assert_eq!(get(&t, &key(1), 2), None);
    assert_eq!(t.held(), 0);
}

#[test]
fn clock_keeps_entries_in_use_over_entries_seen_once() {
    // Under 256 entries: one shard, so the hand sees every entry.
    let t = Table::new(8);
    for n in 0..8 {
        t.insert(&key(n), value(u64::from(n)), 1_000_000, 1);
    }
    for n in 0..4 {
        assert_eq!(get(&t, &key(n), 2), Some(u64::from(n)));
    }
    // Tokens seen once take the places of the unused entries, not of those in use.
    for n in 100..104 {
        t.insert(&key(n), value(u64::from(n)), 1_000_000, 3);
    }
    for n in 0..4 {
        assert_eq!(get(&t, &key(n), 4), Some(u64::from(n)), "hot entry {n}");
    }
    for n in 4..8 {
        assert_eq!(get(&t, &key(n), 4), None, "cold entry {n}");
    }
}

#[test]
fn expired_entries_are_taken_before_live_ones() {
    let t = Table::new(4);
    t.insert(&key(1), value(1), 100, 1);
    for n in 2..5 {
        t.insert(&key(n), value(u64::from(n)), 1_000_000, 1);
        assert_eq!(get(&t, &key(n), 2), Some(u64::from(n)));
    }
    // Every live entry is referenced; the expired one goes first anyway.
    t.insert(&key(9), value(9), 1_000_000, 200);
    for n in 2..5 {
        assert_eq!(get(&t, &key(n), 201), Some(u64::from(n)));
    }
    assert_eq!(get(&t, &key(9), 201), Some(9));
}

#[test]
fn remove_and_clear_drop_entries() {
    let t = Table::new(1_000);
    for n in 0..600 {
        t.insert(&key(n), value(u64::from(n)), 1_000, 1);
    }
    t.remove(&key(5));
    assert_eq!(get(&t, &key(5), 2), None);
    assert_eq!(get(&t, &key(6), 2), Some(6));
    assert_eq!(t.held(), 599);
    t.clear();
    assert_eq!(t.held(), 0);
    assert_eq!(get(&t, &key(6), 2), None);
    // The count restarts from zero: the full capacity is usable again.
    for n in 0..1_000 {
        t.insert(&key(n), value(u64::from(n)), 1_000, 1);
    }
    assert_eq!(t.live(2), 1_000);
}

#[test]
fn misses_for_one_key_share_a_flight_until_it_lands() {
    let t = Table::new(100);
    let Lookup::Miss(first) = t.lookup(&key(1), 1) else {
        panic!("empty table");
    };
    let Lookup::Miss(second) = t.lookup(&key(1), 1) else {
        panic!("nothing landed yet");
    };
    assert!(Arc::ptr_eq(&first, &second));
    let Lookup::Miss(other) = t.lookup(&key(2), 1) else {
        panic!("empty table");
    };
    assert!(!Arc::ptr_eq(&first, &other));
    t.land(&key(1), &first, Some((value(3), u64::MAX >> 2)), 2);
    assert_eq!(get(&t, &key(1), 2), Some(3));
}

#[test]
fn an_answer_fetched_across_an_invalidation_is_not_cached() {
    let t = Table::new(100);
    let Lookup::Miss(flight) = t.lookup(&key(1), 1) else {
        panic!("empty table");
    };
    t.remove(&key(1));
    // A request after the revocation starts a call of its own.
    let Lookup::Miss(after) = t.lookup(&key(1), 1) else {
        panic!("nothing cached");
    };
    assert!(!Arc::ptr_eq(&flight, &after));
    t.land(&key(1), &flight, Some((value(3), u64::MAX >> 2)), 2);
    assert_eq!(t.held(), 0);
    // Nor across an invalidation of everything.
    t.clear();
    t.land(&key(1), &after, Some((value(4), u64::MAX >> 2)), 2);
    assert_eq!(t.held(), 0);
}

#[test]
fn the_last_caller_of_an_unfinished_flight_forgets_it() {
    let t = Table::new(100);
    let Lookup::Miss(a) = t.lookup(&key(1), 1) else {
        panic!("empty table");
    };
    let Lookup::Miss(b) = t.lookup(&key(1), 1) else {
        panic!("nothing landed");
    };
    t.leave(&key(1), &a);
    drop(a);
    // `b` still waits on it: the next miss joins it.
    let Lookup::Miss(c) = t.lookup(&key(1), 1) else {
        panic!("nothing landed");
    };
    assert!(Arc::ptr_eq(&b, &c));
    drop(c);
    t.leave(&key(1), &b);
    drop(b);
    let Lookup::Miss(d) = t.lookup(&key(1), 1) else {
        panic!("nothing landed");
    };
    assert_eq!(Arc::strong_count(&d), 2, "a new flight, the map's and ours");
}

#[derive(Debug, Clone)]
enum Op {
    Insert { k: u32, v: u64, life: u64 },
    Get(u32),
    Remove(u32),
    Clear,
    Advance(u64),
}

fn op(keys: u32) -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..keys, any::<u64>(), 0u64..50).prop_map(|(k, v, life)| Op::Insert { k, v, life }),
        4 => (0..keys).prop_map(Op::Get),
        1 => (0..keys).prop_map(Op::Remove),
        1 => Just(Op::Clear),
        2 => (0u64..20).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Against a map of key → (value, deadline): a hit is always the model's live value (never
    /// an expired, removed or overwritten one), the bound always holds, and when everything
    /// fits (capacity ≥ keys) nothing live is ever missing.
    #[test]
    fn the_table_answers_as_a_map_with_deadlines_does(
        capacity in 1u64..40,
        keys in 1u32..40,
        ops in proptest::collection::vec(op(40), 1..200),
    ) {
        let t = Table::new(capacity);
        let mut model: HashMap<u32, (u64, u64)> = HashMap::new();
        let mut now = 1u64;
        for op in ops {
            match op {
                Op::Insert { k, v, life } => {
                    let k = k % keys;
                    t.insert(&key(k), value(v), now + life, now);
                    if life > 0 {
                        model.insert(k, (v, now + life));
                    } else {
                        model.remove(&k);
                    }
                }
                Op::Get(k) => {
                    let k = k % keys;
                    let want = model.get(&k).filter(|(_, dl)| *dl > now).map(|(v, _)| *v);
                    let got = get(&t, &key(k), now);
                    if got.is_some() || u64::from(keys) <= capacity {
                        prop_assert_eq!(got, want, "key {} at {}", k, now);
                    }
                }
                Op::Remove(k) => {
                    let k = k % keys;
                    t.remove(&key(k));
                    model.remove(&k);
                }
                Op::Clear => {
                    t.clear();
                    model.clear();
                }
                Op::Advance(dt) => now += dt,
            }
            prop_assert!(t.held() as u64 <= capacity);
        }
    }
}
