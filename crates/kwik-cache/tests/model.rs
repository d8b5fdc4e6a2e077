//! Model test: random operation sequences on a one-shard cache must match a reference LRU + TTL
//! + weight model exactly — returned values, contents, and the order and cause of evictions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kwik_cache::{Cache, EvictionCause, MockClock};
use proptest::prelude::*;

/// Mirrors the crate's bound on expired entries reclaimed from the cold end per write.
const WRITE_RECLAIM_BOUND: usize = 16;

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, u32),
    InsertTtl(u8, u32, u64),
    Get(u8),
    Remove(u8),
    Advance(u64),
    Sweep,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..12, 0u32..8).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0u8..12, 0u32..8, 1u64..6).prop_map(|(k, v, t)| Op::InsertTtl(k, v, t)),
        4 => (0u8..12).prop_map(Op::Get),
        1 => (0u8..12).prop_map(Op::Remove),
        2 => (0u64..4).prop_map(Op::Advance),
        1 => Just(Op::Sweep),
    ]
}

fn weigh(v: u32) -> u32 {
    v + 1
}

struct Item {
    key: u8,
    value: u32,
    expires: Option<u64>,
}

/// The reference: a deque from most to least recently used.
struct Model {
    capacity: usize,
    max_weight: u64,
    ttl: Option<u64>,
    now: u64,
    items: VecDeque<Item>,
    events: Vec<(u8, EvictionCause)>,
}

impl Model {
    fn expired(&self, i: usize) -> bool {
        self.items[i].expires.is_some_and(|e| self.now >= e)
    }

    fn weight(&self) -> u64 {
        self.items.iter().map(|i| u64::from(weigh(i.value))).sum()
    }

    fn pos(&self, key: u8) -> Option<usize> {
        self.items.iter().position(|i| i.key == key)
    }

    fn evict(&mut self, i: usize, cause: EvictionCause) {
        let cause = if self.expired(i) {
            EvictionCause::Expired
        } else {
            cause
        };
        let item = self.items.remove(i).expect("index in range");
        self.events.push((item.key, cause));
    }

    fn get(&mut self, key: u8) -> Option<u32> {
        let i = self.pos(key)?;
        if self.expired(i) {
            self.evict(i, EvictionCause::Expired);
            return None;
        }
        let item = self.items.remove(i).expect("index in range");
        let value = item.value;
        self.items.push_front(item);
        Some(value)
    }

    fn insert(&mut self, key: u8, value: u32, ttl: Option<u64>) -> bool {
        let w = u64::from(weigh(value));
        if w > self.max_weight {
            return false;
        }
        let expires = ttl.or(self.ttl).map(|t| self.now + t);
        if let Some(i) = self.pos(key) {
            self.items.remove(i);
            self.items.push_front(Item {
                key,
                value,
                expires,
            });
            while self.weight() > self.max_weight && self.items.len() > 1 {
                self.evict(self.items.len() - 1, EvictionCause::Weight);
            }
            return true;
        }
        for _ in 0..WRITE_RECLAIM_BOUND {
            match self.items.len().checked_sub(1) {
                Some(last) if self.expired(last) => self.evict(last, EvictionCause::Expired),
                _ => break,
            }
        }
        while !self.items.is_empty()
            && (self.items.len() >= self.capacity || self.weight() + w > self.max_weight)
        {
            let cause = if self.items.len() >= self.capacity {
                EvictionCause::Capacity
            } else {
                EvictionCause::Weight
            };
            self.evict(self.items.len() - 1, cause);
        }
        self.items.push_front(Item {
            key,
            value,
            expires,
        });
        true
    }

    fn remove(&mut self, key: u8) -> Option<u32> {
        let i = self.pos(key)?;
        if self.expired(i) {
            self.evict(i, EvictionCause::Expired);
            return None;
        }
        self.items.remove(i).map(|item| item.value)
    }

    fn sweep(&mut self) -> usize {
        let before = self.items.len();
        let mut i = 0;
        while i < self.items.len() {
            if self.expired(i) {
                self.evict(i, EvictionCause::Expired);
            } else {
                i += 1;
            }
        }
        before - self.items.len()
    }
}

fn run(capacity: usize, max_weight: u64, ttl: Option<u64>, ops: Vec<Op>) {
    let clock = MockClock::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    let mut builder = Cache::builder()
        .capacity(capacity)
        .max_weight(max_weight)
        .weigher(|_k: &u8, v: &u32| weigh(*v))
        .shards(1)
        .clock(clock.clone())
        .eviction_listener(move |k: &u8, _v: &u32, cause| log.lock().unwrap().push((*k, cause)));
    if let Some(ttl) = ttl {
        builder = builder.ttl(Duration::from_secs(ttl));
    }
    let cache = builder.build().unwrap();
    let mut model = Model {
        capacity,
        max_weight,
        ttl,
        now: 0,
        items: VecDeque::new(),
        events: Vec::new(),
    };

    for (step, op) in ops.into_iter().enumerate() {
        let mut sorted = false;
        match op {
            Op::Insert(k, v) => {
                assert_eq!(
                    cache.insert(k, v).is_ok(),
                    model.insert(k, v, None),
                    "{step}: {op:?}"
                );
            }
            Op::InsertTtl(k, v, t) => {
                let stored = cache.insert_with_ttl(k, v, Duration::from_secs(t)).is_ok();
                assert_eq!(stored, model.insert(k, v, Some(t)), "{step}: {op:?}");
            }
            Op::Get(k) => assert_eq!(cache.get(&k), model.get(k), "{step}: {op:?}"),
            Op::Remove(k) => assert_eq!(cache.remove(&k), model.remove(k), "{step}: {op:?}"),
            Op::Advance(s) => {
                clock.advance(Duration::from_secs(s));
                model.now += s;
            }
            Op::Sweep => {
                // A sweep resumes where the last one stopped and ends at the end of the slab;
                // two calls with a budget above the capacity cover every entry.
                let reclaimed = cache.run_pending_tasks() + cache.run_pending_tasks();
                assert_eq!(reclaimed, model.sweep(), "{step}: {op:?}");
                sorted = true;
            }
        }
        let mut got = std::mem::take(&mut *events.lock().unwrap());
        let mut want = std::mem::take(&mut model.events);
        if sorted {
            got.sort_by_key(|e| e.0);
            want.sort_by_key(|e| e.0);
        }
        assert_eq!(got, want, "evictions after step {step}: {op:?}");
        assert_eq!(cache.len(), model.items.len(), "len after step {step}");
        assert_eq!(cache.weight(), model.weight(), "weight after step {step}");
        for k in 0..12u8 {
            let live = model.pos(k).is_some_and(|i| !model.expired(i));
            assert_eq!(cache.contains(&k), live, "contains({k}) after step {step}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn one_shard_cache_matches_the_reference_model(
        capacity in 1usize..8,
        max_weight in 4u64..24,
        ttl in proptest::option::of(1u64..6),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        run(capacity, max_weight, ttl, ops);
    }
}

#[test]
fn model_agrees_on_a_handwritten_sequence() {
    run(
        3,
        100,
        None,
        vec![
            Op::Insert(1, 0),
            Op::Insert(2, 0),
            Op::Insert(3, 0),
            Op::Get(1),
            Op::Insert(4, 0),       // evicts 2
            Op::InsertTtl(5, 0, 2), // evicts 3
            Op::Advance(2),
            Op::Get(5), // expired
            Op::Sweep,
        ],
    );
}
