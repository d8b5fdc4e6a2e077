//! A waker that counts its wake-ups, for the unit tests of the pool's hand-overs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};

pub(crate) struct CountWakes(AtomicUsize);

impl Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// A fresh waker and the count of its wake-ups.
pub(crate) fn waker() -> (Arc<CountWakes>, Waker) {
    let count = Arc::new(CountWakes(AtomicUsize::new(0)));
    (Arc::clone(&count), Waker::from(count))
}

/// How many times the waker counted by `count` was woken.
pub(crate) fn wakes(count: &CountWakes) -> usize {
    count.0.load(Ordering::Relaxed)
}
