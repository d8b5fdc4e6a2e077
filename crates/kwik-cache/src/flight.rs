//! Single-flight: one load per key in progress, its outcome handed to every waiter.
//!
//! A waiter blocks on a condition variable (sync loaders) or parks a [`Waker`] (async loaders),
//! so the async forms work under any executor. The loader's side holds a [`Lead`] guard: if the
//! loader panics or its future is dropped, the guard abandons the flight and the waiters retry
//! (one of them becomes the new leader) instead of waiting forever.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::{Condvar, Mutex};

/// A loader's error as handed to the other waiters; each downcasts it to its own error type.
pub(crate) type SharedError = Arc<dyn Any + Send + Sync>;

/// How a load ended.
pub(crate) enum Outcome<V> {
    Value(V),
    Error(SharedError),
    /// The loader panicked or was cancelled: wait again or lead.
    Abandoned,
}

impl<V: Clone> Clone for Outcome<V> {
    fn clone(&self) -> Self {
        match self {
            Self::Value(v) => Self::Value(v.clone()),
            Self::Error(e) => Self::Error(Arc::clone(e)),
            Self::Abandoned => Self::Abandoned,
        }
    }
}

enum State<V> {
    Pending(Vec<Waker>),
    Done(Outcome<V>),
}

/// One load in progress.
pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    done: Condvar,
}

impl<V: Clone> Flight<V> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State::Pending(Vec::new())),
            done: Condvar::new(),
        }
    }

    /// Blocks the thread until the load ends.
    pub(crate) fn wait(&self) -> Outcome<V> {
        let mut state = self.state.lock();
        loop {
            match &*state {
                State::Done(outcome) => return outcome.clone(),
                State::Pending(_) => self.done.wait(&mut state),
            }
        }
    }

    /// Waits for the load to end without blocking the thread.
    pub(crate) fn wait_async(&self) -> WaitAsync<'_, V> {
        WaitAsync { flight: self }
    }

    /// Publishes the outcome and wakes every waiter.
    pub(crate) fn complete(&self, outcome: Outcome<V>) {
        let previous = std::mem::replace(&mut *self.state.lock(), State::Done(outcome));
        self.done.notify_all();
        if let State::Pending(wakers) = previous {
            for waker in wakers {
                waker.wake();
            }
        }
    }
}

/// Future returned by [`Flight::wait_async`].
pub(crate) struct WaitAsync<'a, V> {
    flight: &'a Flight<V>,
}

impl<V: Clone> Future for WaitAsync<'_, V> {
    type Output = Outcome<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome<V>> {
        let mut state = self.flight.state.lock();
        match &mut *state {
            State::Done(outcome) => Poll::Ready(outcome.clone()),
            State::Pending(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The leader's obligation to end its flight: `finish` publishes the outcome; dropping it
/// unfinished (panic, cancelled future) runs `on_abandon` and publishes `Abandoned`.
pub(crate) struct Lead<V: Clone, F: FnMut(&Arc<Flight<V>>)> {
    flight: Arc<Flight<V>>,
    /// Unregisters the flight from its shard; run before the outcome is published.
    unregister: F,
    finished: bool,
}

impl<V: Clone, F: FnMut(&Arc<Flight<V>>)> Lead<V, F> {
    pub(crate) fn new(flight: Arc<Flight<V>>, unregister: F) -> Self {
        Self {
            flight,
            unregister,
            finished: false,
        }
    }

    /// Ends the flight with an error; the caller has already dealt with the cache.
    pub(crate) fn fail(mut self, error: SharedError) {
        self.finished = true;
        (self.unregister)(&self.flight);
        self.flight.complete(Outcome::Error(error));
    }

    /// Ends the flight with a value; the caller unregistered it while inserting the value, under
    /// the same shard lock, so that a newcomer sees either the flight or the value.
    pub(crate) fn succeed(mut self, value: V) {
        self.finished = true;
        self.flight.complete(Outcome::Value(value));
    }

    pub(crate) fn flight(&self) -> &Arc<Flight<V>> {
        &self.flight
    }
}

impl<V: Clone, F: FnMut(&Arc<Flight<V>>)> Drop for Lead<V, F> {
    fn drop(&mut self) {
        if !self.finished {
            (self.unregister)(&self.flight);
            self.flight.complete(Outcome::Abandoned);
        }
    }
}
