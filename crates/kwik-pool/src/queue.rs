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
//!
//! The `ACTIVE` bit says a job of the shard is running: the worker's, or one a caller runs in
//! place ([`ShardQueue::try_claim_idle`], for `WorkerPool::try_run_inline`). Whoever holds it is
//! the only one running a job of the shard, which keeps per-key order when the jobs do not all
//! run on the worker: a caller claims only an empty, inactive shard (nothing of its keys is
//! queued or running, so nothing can be overtaken), and the worker claims the bit before it
//! takes a job off the queue. The worker keeps the bit while its queue is not empty, so the
//! busy path pays one claim per busy period, not per job.
//!
//! The worker takes the queued jobs a batch at a time: one lock moves every queued job into its
//! [`Batch`], so the lock line is shared with submitters once per batch instead of once per
//! job. Jobs in the batch keep their slots until each is taken to run, so the bound and the
//! `queued` count are the same as if they were still in the queue.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use crossbeam_utils::CachePadded;
use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::task::Envelope;

/// The `state` bit set once the shard takes no more jobs.
const CLOSED: usize = 1 << (usize::BITS - 1);
/// The `state` bit held while a job of the shard runs (on its worker or on a caller).
const ACTIVE: usize = 1 << (usize::BITS - 2);
/// The `state` bits that count reserved slots.
const SLOTS: usize = !(CLOSED | ACTIVE);

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
    /// Slots reserved (queued jobs plus reservations not pushed yet), and the `CLOSED` and
    /// `ACTIVE` bits.
    state: CachePadded<AtomicUsize>,
    /// Submitters waiting for room.
    waiting: CachePadded<AtomicUsize>,
    /// The highest slot count seen.
    high_water: AtomicUsize,
    capacity: usize,
    low_water: usize,
    jobs: Mutex<Jobs>,
    /// Set by the worker when it parks (on an empty queue, or on a shard a caller holds); the
    /// next push, or the caller's release, wakes it.
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
        self.state.load(Ordering::Relaxed) & SLOTS
    }

    /// The highest [`len`](Self::len) seen.
    pub(crate) fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    /// Reserves a slot if one is free, whoever else is waiting.
    pub(crate) fn try_reserve(&self) -> Result<(), Refused> {
        self.reserve_below(self.capacity)
    }

    /// Reserves a slot if one is free and no submitter waits for room (who would get it first).
    pub(crate) fn try_reserve_unwaited(&self) -> Result<(), Refused> {
        if self.waiting.load(Ordering::SeqCst) != 0 {
            return Err(Refused::Full);
        }
        self.try_reserve()
    }

    /// Reserves a slot, waiting for room while the queue is full. Submitters that arrive while
    /// others wait queue behind them.
    pub(crate) async fn reserve(&self) -> Result<(), Refused> {
        match self.try_reserve_unwaited() {
            Err(Refused::Full) => {}
            done => return done,
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
            if current & SLOTS >= limit {
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
        let reserved = (current & SLOTS) + 1;
        if reserved > self.high_water.load(Ordering::Relaxed) {
            self.high_water.fetch_max(reserved, Ordering::Relaxed);
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

    /// The next job, for the worker; `None` once the shard is closed, every reserved slot has
    /// been taken and no caller runs a job of it. `active` says whether the worker holds the
    /// `ACTIVE` bit: a job is only returned with the bit held, and the bit is given up before
    /// the worker parks, so callers may run jobs in place while the shard is idle.
    pub(crate) fn poll_pop(
        &self,
        cx: &mut Context<'_>,
        active: &mut bool,
        batch: &mut Batch<'_>,
    ) -> Poll<Option<Envelope>> {
        if let Some(envelope) = self.pop_active(active, batch) {
            return Poll::Ready(Some(envelope));
        }
        if *active {
            self.state.fetch_and(!ACTIVE, Ordering::SeqCst);
            *active = false;
        }
        if self.state.load(Ordering::SeqCst) == CLOSED {
            return Poll::Ready(None);
        }
        self.worker.register(cx.waker());
        self.parked.store(true, Ordering::SeqCst);
        if let Some(envelope) = self.pop_active(active, batch) {
            self.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(Some(envelope));
        }
        if *active {
            // Claimed, but the job is reserved and not pushed yet: its push will wake us.
            self.state.fetch_and(!ACTIVE, Ordering::SeqCst);
            *active = false;
        }
        // `close` sets the bit before it wakes: after registering, a second look cannot miss it.
        if self.state.load(Ordering::SeqCst) == CLOSED {
            self.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Takes the next job with the `ACTIVE` bit held (claiming it if `active` is false and a
    /// slot is reserved). `None` if nothing is queued, or if a caller holds the bit (its
    /// release wakes the worker).
    fn pop_active(&self, active: &mut bool, batch: &mut Batch<'_>) -> Option<Envelope> {
        if let Some(envelope) = batch.jobs.pop_front() {
            // Jobs are only ever in the batch while the bit is held.
            debug_assert!(*active);
            self.release_slot();
            return Some(envelope);
        }
        if !*active {
            let mut current = self.state.load(Ordering::SeqCst);
            loop {
                if current & SLOTS == 0 || current & ACTIVE != 0 {
                    return None;
                }
                match self.state.compare_exchange_weak(
                    current,
                    current | ACTIVE,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                ) {
                    Ok(_) => break,
                    Err(actual) => current = actual,
                }
            }
            *active = true;
        }
        self.pop(batch)
    }

    /// Claims an idle shard for a job the caller runs in place: succeeds only when no slot is
    /// reserved, no job runs, and the shard is open. Give it back with
    /// [`release_claim`](Self::release_claim).
    pub(crate) fn try_claim_idle(&self) -> Result<(), Refused> {
        match self
            .state
            .compare_exchange(0, ACTIVE, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => Ok(()),
            Err(current) if current & CLOSED != 0 => Err(Refused::Closed),
            Err(_) => Err(Refused::Full),
        }
    }

    /// Ends a caller's in-place job: drops the `ACTIVE` bit and wakes the worker if jobs were
    /// queued meanwhile (it may have parked on the bit) or the shard was closed.
    pub(crate) fn release_claim(&self) {
        let before = self.state.fetch_and(!ACTIVE, Ordering::SeqCst);
        if before & (SLOTS | CLOSED) != 0
            && self.parked.load(Ordering::SeqCst)
            && self.parked.swap(false, Ordering::SeqCst)
        {
            self.worker.wake();
        }
    }

    /// Whether no job is queued or reserved (a hint: it may change at once).
    pub(crate) fn is_idle(&self) -> bool {
        self.len() == 0
    }

    /// Moves every queued job into the (empty) `batch` and returns the first.
    fn pop(&self, batch: &mut Batch<'_>) -> Option<Envelope> {
        debug_assert!(batch.jobs.is_empty());
        std::mem::swap(&mut self.lock().queue, &mut batch.jobs);
        let envelope = batch.jobs.pop_front()?;
        self.release_slot();
        Some(envelope)
    }

    /// An empty batch for this shard's worker.
    pub(crate) fn batch(&self) -> Batch<'_> {
        Batch {
            queue: self,
            jobs: VecDeque::with_capacity(self.capacity.min(PREALLOCATED)),
        }
    }

    fn release_slot(&self) {
        let left = (self.state.fetch_sub(1, Ordering::SeqCst) & SLOTS) - 1;
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

/// Jobs the worker took off the queue and has not run yet. Each keeps its slot until it is
/// taken to run; a batch dropped with jobs in it (the worker was aborted) drops them, which
/// tells their handles the pool closed, and gives their slots back.
pub(crate) struct Batch<'a> {
    queue: &'a ShardQueue,
    jobs: VecDeque<Envelope>,
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let count = self.jobs.len();
        if count == 0 {
            return;
        }
        let dropped = std::mem::take(&mut self.jobs);
        self.queue.state.fetch_sub(count, Ordering::SeqCst);
        if self.queue.waiting.load(Ordering::SeqCst) > 0 {
            self.queue.room.notify_waiters();
        }
        // Last, as in `ShardQueue::abort`: a handle woken by its job's drop sees the count
        // without it.
        drop(dropped);
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
