//! One shard's bounded FIFO: a slot count that submitters reserve, the queued jobs, and the two
//! wake-ups (the shard's worker when a job arrives, blocked submitters when room frees up).
//!
//! Why not a channel: tokio's bounded `mpsc` wakes a blocked sender for every job taken off the
//! queue (and takes its semaphore's mutex to do it), and wakes the receiver for every job sent.
//! Under overload, the cost per job was those wake-ups, not the jobs. Here:
//!
//! - the worker is woken only when it parked on an empty queue (a flag the submitter reads);
//! - blocked submitters are woken when the queue has drained to `low_water` (half its capacity),
//!   so each wake-up refills half a queue instead of one slot; while any submitter waits, new
//!   ones queue behind it instead of taking the freed slots, so nobody waits forever.
//!
//! Reserving a slot is separate from pushing the job, so a job is only boxed once it is sure to
//! be queued, and `try_submit` can hand the caller's job back untouched.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use crossbeam_utils::CachePadded;
use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::task::Envelope;

/// The `state` bit set once the shard takes no more jobs; the other bits count reserved slots.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// Queued jobs preallocated per shard; a larger capacity grows the deque on demand.
const PREALLOCATED: usize = 64;

/// Why a slot could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every slot is taken.
    Full,
    /// The shard was closed (shutdown, abort, or the pool was dropped).
    Closed,
}

pub(crate) struct ShardQueue {
    /// Slots reserved (queued jobs plus reservations not pushed yet), and the `CLOSED` bit.
    state: CachePadded<AtomicUsize>,
    /// Submitters waiting for room.
    waiting: CachePadded<AtomicUsize>,
    /// The highest slot count seen.
    high_water: AtomicUsize,
    capacity: usize,
    low_water: usize,
    jobs: Mutex<Jobs>,
    /// Set by the worker when it parks on an empty queue; the next push wakes it.
    parked: AtomicBool,
    worker: AtomicWaker,
    room: Notify,
}

struct Jobs {
    queue: VecDeque<Envelope>,
    /// Set by `abort`: jobs pushed afterwards are dropped at once (their handles learn
    /// `PoolClosed`), since no worker will ever take them.
    aborted: bool,
}

impl ShardQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: CachePadded::new(AtomicUsize::new(0)),
            waiting: CachePadded::new(AtomicUsize::new(0)),
            high_water: AtomicUsize::new(0),
            capacity,
            low_water: capacity / 2,
            jobs: Mutex::new(Jobs {
                queue: VecDeque::with_capacity(capacity.min(PREALLOCATED)),
                aborted: false,
            }),
            parked: AtomicBool::new(false),
            worker: AtomicWaker::new(),
            room: Notify::new(),
        }
    }

    /// Slots reserved now (queued jobs, and reservations about to be pushed).
    pub(crate) fn len(&self) -> usize {
        self.state.load(Ordering::Relaxed) & !CLOSED
    }

    /// The highest [`len`](Self::len) seen.
    pub(crate) fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    /// Reserves a slot if one is free, whoever else is waiting.
    pub(crate) fn try_reserve(&self) -> Result<(), Refused> {
        self.reserve_below(self.capacity)
    }

    /// Reserves a slot, waiting for room while the queue is full. Submitters that arrive while
    /// others wait queue behind them.
    pub(crate) async fn reserve(&self) -> Result<(), Refused> {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            match self.try_reserve() {
                Err(Refused::Full) => {}
                done => return done,
            }
        }
        loop {
            let mut notified = pin!(self.room.notified());
            notified.as_mut().enable();
            let waiter = Waiter::new(&self.waiting);
            // Registered first, counted second, checked last: a pop that lands on `low_water`
            // after this check sees `waiting > 0` and wakes us. Only a drained queue lets a
            // newcomer in, so the waiters before it get the room first.
            match self.reserve_below(self.low_water + 1) {
                Err(Refused::Full) => {}
                done => return done,
            }
            notified.await;
            drop(waiter);
            match self.try_reserve() {
                Err(Refused::Full) => {}
                done => return done,
            }
        }
    }

    fn reserve_below(&self, limit: usize) -> Result<(), Refused> {
        let mut current = self.state.load(Ordering::SeqCst);
        loop {
            if current & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            if current >= limit {
                return Err(Refused::Full);
            }
            match self.state.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // Read first: the mark is rarely beaten, and a load does not take the cache line.
        if current + 1 > self.high_water.load(Ordering::Relaxed) {
            self.high_water.fetch_max(current + 1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Gives back a reserved slot that will not be pushed.
    pub(crate) fn unreserve(&self) {
        self.release_slot();
    }

    /// Queues a job in a reserved slot and wakes the worker if it parked.
    pub(crate) fn push(&self, envelope: Envelope) {
        let mut jobs = self.lock();
        if jobs.aborted {
            drop(jobs);
            self.state.fetch_sub(1, Ordering::SeqCst);
            // Dropping the job tells its handle that the pool closed.
            drop(envelope);
            return;
        }
        jobs.queue.push_back(envelope);
        drop(jobs);
        // The worker sets `parked` before it re-checks the queue under the lock: either it sees
        // this job, or this load sees its flag.
        if self.parked.load(Ordering::SeqCst) && self.parked.swap(false, Ordering::SeqCst) {
            self.worker.wake();
        }
    }

    /// The next job; `None` once the shard is closed and every reserved slot has been taken.
    pub(crate) fn poll_pop(&self, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        if let Some(envelope) = self.pop() {
            return Poll::Ready(Some(envelope));
        }
        if self.state.load(Ordering::SeqCst) == CLOSED {
            return Poll::Ready(None);
        }
        self.worker.register(cx.waker());
        self.parked.store(true, Ordering::SeqCst);
        if let Some(envelope) = self.pop() {
            self.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(Some(envelope));
        }
        // `close` sets the bit before it wakes: after registering, a second look cannot miss it.
        if self.state.load(Ordering::SeqCst) == CLOSED {
            self.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Whether no job is queued or reserved (a hint: it may change at once).
    pub(crate) fn is_idle(&self) -> bool {
        self.len() == 0
    }

    fn pop(&self) -> Option<Envelope> {
        let envelope = self.lock().queue.pop_front()?;
        self.release_slot();
        Some(envelope)
    }

    fn release_slot(&self) {
        let left = (self.state.fetch_sub(1, Ordering::SeqCst) & !CLOSED) - 1;
        if left == self.low_water && self.waiting.load(Ordering::SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }

    /// Refuses further reservations; the worker takes what is queued, then stops.
    pub(crate) fn close(&self) {
        self.state.fetch_or(CLOSED, Ordering::SeqCst);
        self.worker.wake();
        self.room.notify_waiters();
    }

    /// Closes the shard and drops every queued job (their handles learn `PoolClosed`), as well
    /// as any pushed later. Returns how many were dropped.
    pub(crate) fn abort(&self) -> usize {
        self.close();
        let dropped = {
            let mut jobs = self.lock();
            jobs.aborted = true;
            std::mem::take(&mut jobs.queue)
        };
        let count = dropped.len();
        self.state.fetch_sub(count, Ordering::SeqCst);
        // Outside the lock: a job's destructor may do anything, including submit again.
        drop(dropped);
        count
    }

    fn lock(&self) -> MutexGuard<'_, Jobs> {
        // Nothing panics while holding the lock (pushes and pops of a deque), but a poisoned
        // queue is still a consistent queue.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One submitter counted in `waiting` until it stops waiting, including when its future is
/// dropped mid-wait.
struct Waiter<'a>(&'a AtomicUsize);

impl<'a> Waiter<'a> {
    fn new(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Self(waiting)
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
