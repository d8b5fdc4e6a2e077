//! Single-flight loading: under concurrency the loader for a key runs once and every waiter gets
//! its outcome, sync and async.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use kwik_cache::Cache;

const CALLERS: usize = 64;

/// Safety net for the "wait until every caller has missed" loops below: they end as soon as the
/// other callers have run, which takes microseconds; the deadline only turns a bug into a failure
/// instead of a hang.
const DEADLINE: Duration = Duration::from_secs(60);

/// Every `get_or_*` call counts exactly one miss when it joins a load (as leader or waiter), under
/// the shard lock: once `misses` reaches `n`, all `n` callers are registered on the flight.
fn wait_for_misses(cache: &Cache<u64, String>, n: u64) {
    let start = Instant::now();
    while cache.stats().misses < n {
        assert!(start.elapsed() < DEADLINE, "callers never arrived");
        std::thread::yield_now();
    }
}

fn cache() -> Cache<u64, String> {
    Cache::builder().capacity(1_000).build().unwrap()
}

#[test]
fn sixty_four_concurrent_loads_run_the_loader_once() {
    let cache = cache();
    let runs = AtomicUsize::new(0);
    let barrier = Barrier::new(CALLERS);
    let values: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    cache.get_or_load(7, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        wait_for_misses(&cache, CALLERS as u64);
                        "loaded".to_string()
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(values.iter().all(|v| v == "loaded"));
    assert_eq!(values.len(), CALLERS);
    assert_eq!(cache.get(&7).as_deref(), Some("loaded"));
    let stats = cache.stats();
    assert_eq!((stats.misses, stats.inserts), (CALLERS as u64, 1));
}

#[derive(Debug, PartialEq)]
struct BackendDown;

#[test]
fn a_failing_loader_gives_every_waiter_the_error_and_caches_nothing() {
    let cache = cache();
    let runs = AtomicUsize::new(0);
    let barrier = Barrier::new(CALLERS);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLERS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    cache.get_or_try_load(7, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        wait_for_misses(&cache, CALLERS as u64);
                        Err::<String, _>(BackendDown)
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let errors: Vec<_> = results.into_iter().map(Result::unwrap_err).collect();
    assert_eq!(errors.len(), CALLERS);
    // Every caller holds the very same error.
    assert!(
        errors
            .iter()
            .all(|e| Arc::ptr_eq(e, &errors[0]) && **e == BackendDown)
    );
    assert!(!cache.contains(&7));
    assert_eq!(cache.stats().inserts, 0);
    // The next load starts afresh.
    assert_eq!(cache.get_or_load(7, || "second".to_string()), "second");
}

#[test]
fn a_panicking_loader_does_not_wedge_the_key() {
    let cache = cache();
    let panicked = catch_unwind(AssertUnwindSafe(|| {
        cache.get_or_load(1, || panic!("loader bug"));
    }));
    assert!(panicked.is_err());
    assert_eq!(cache.get_or_load(1, || "ok".to_string()), "ok");
}

#[test]
fn a_waiter_of_another_error_type_retries_the_load_itself() {
    let cache = cache();
    let runs = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let failing = s.spawn(|| {
            cache.get_or_try_load(3, || {
                runs.fetch_add(1, Ordering::SeqCst);
                wait_for_misses(&cache, 2);
                Err::<String, _>(BackendDown)
            })
        });
        wait_for_misses(&cache, 1);
        let infallible = s.spawn(|| {
            cache.get_or_load(3, || {
                runs.fetch_add(1, Ordering::SeqCst);
                "fallback".to_string()
            })
        });
        assert!(failing.join().unwrap().is_err());
        assert_eq!(infallible.join().unwrap(), "fallback");
    });
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

async fn wait_for_misses_async(cache: &Cache<u64, String>, n: u64) {
    let start = Instant::now();
    while cache.stats().misses < n {
        assert!(start.elapsed() < DEADLINE, "callers never arrived");
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_async_loads_run_the_loader_once() {
    let cache = Arc::new(cache());
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (cache, runs) = (Arc::clone(&cache), Arc::clone(&runs));
            tokio::spawn(async move {
                let loader_cache = Arc::clone(&cache);
                cache
                    .get_or_load_async(9, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        wait_for_misses_async(&loader_cache, CALLERS as u64).await;
                        "async".to_string()
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "async");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get(&9).as_deref(), Some("async"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_async_loader_gives_every_waiter_the_error() {
    let cache = Arc::new(cache());
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (cache, runs) = (Arc::clone(&cache), Arc::clone(&runs));
            tokio::spawn(async move {
                let loader_cache = Arc::clone(&cache);
                cache
                    .get_or_try_load_async(9, || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        wait_for_misses_async(&loader_cache, CALLERS as u64).await;
                        Err::<String, _>(BackendDown)
                    })
                    .await
            })
        })
        .collect();
    let mut errors = Vec::new();
    for task in tasks {
        errors.push(task.await.unwrap().unwrap_err());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])));
    assert!(!cache.contains(&9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_async_loader_hands_the_load_to_a_waiter() {
    let cache = Arc::new(cache());
    let leader = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .get_or_load_async(5, std::future::pending::<String>)
                .await
        })
    };
    wait_for_misses_async(&cache, 1).await;
    let waiter = {
        let cache = Arc::clone(&cache);
        tokio::spawn(async move {
            cache
                .get_or_load_async(5, || async { "took over".to_string() })
                .await
        })
    };
    wait_for_misses_async(&cache, 2).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    assert_eq!(waiter.await.unwrap(), "took over");
    assert_eq!(cache.get(&5).as_deref(), Some("took over"));
}

#[test]
fn the_cache_and_its_loading_futures_can_cross_threads() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let cache = cache();
    send_sync(&cache);
    let load = cache.get_or_load_async(1, || async { String::new() });
    send(&load);
    let try_load = cache.get_or_try_load_async(1, || async { Err::<String, _>(BackendDown) });
    send(&try_load);
}
