//! One shard's bounded FIFO: a ring of job slots that submitters reserve and fill without a
//! lock, the worker that empties it, and the two wake-ups (the worker when a job arrives,
//! blocked submitters when room frees up).
//!
//! Why not a channel: tokio's bounded `mpsc` wakes a blocked sender for every job taken off the
//! queue (and takes its semaphore's mutex to do it), and wakes the receiver for every job sent.
//! Under overload, the cost per job was those wake-ups, not the jobs. Here:
//!
//! - one word (`state`) holds the count of reserved slots, the position of the next one and two
//!   flags; a submitter reserves a slot and learns where it is with one compare-and-swap, then
//!   fills it and publishes it with one swap on the slot's own flag. No lock is taken per job;
//! - the worker is woken only when it waits on the slot being filled (its flag says so);
//! - a submitter facing a full queue first yields a few times, retrying (`SUBMIT_SPINS`), then
//!   sleeps; sleepers are woken when the queue has drained to `low_water` (half its capacity),
//!   so each wake-up refills half a queue instead of one slot; while any submitter sleeps, new
//!   ones queue behind them instead of taking the freed slots, so nobody waits forever.
//!
//! Reserving a slot is separate from filling it, so a job is only boxed once it is sure to be
//! queued, and `try_submit` can hand the caller's job back untouched. A reservation given up
//! fills its slot with a skip mark, so the worker never waits on a slot nobody will fill.
//!
//! Jobs stay in the ring, in their slots, until the worker takes each to run: the bound and the
//! `queued` count hold for every queued job. The ring has `capacity` rounded up to a power of
//! two slots, allocated with the shard: the reservation count keeps at most `capacity` of them
//! in use, so a slot is only filled again after the worker has taken its previous job.
//!
//! Only the shard's worker takes jobs out of the ring. When it stops for good (its task is
//! aborted or dropped by its runtime), it [abandons](ShardQueue::abandon) the ring: the shard
//! is closed and what is still queued is dropped; a slot filled later sees the mark left in it
//! and its submitter drops the job. Either way the job's handle learns that the pool closed.
//!
//! The `ACTIVE` bit says a job of the shard is running: the worker's, or one a caller runs in
//! place ([`ShardQueue::try_claim_idle`], for `WorkerPool::try_run_inline`). Whoever holds it is
//! the only one running a job of the shard, which keeps per-key order when the jobs do not all
//! run on the worker: a caller claims only an empty, inactive shard (nothing of its keys is
//! queued or running, so nothing can be overtaken), and the worker claims the bit before it
//! takes a job off the queue. The worker keeps the bit while its queue is not empty, so the
//! busy path pays one claim per busy period, not per job.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use crossbeam_utils::CachePadded;
use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::task::Envelope;

/// The `state` bit set once the shard takes no more jobs.
const CLOSED: u64 = 1 << 63;
/// The `state` bit held while a job of the shard runs (on its worker or on a caller).
const ACTIVE: u64 = 1 << 62;
/// Where the `state` field with the next slot's position starts.
const TAIL_SHIFT: u32 = 32;
/// The `state` bits with the position of the next slot to reserve. It wraps at 2^30, a multiple
/// of every ring length (a power of two no larger than `MAX_QUEUE_CAPACITY`), so a position
/// names the same slot on either side of the wrap.
const TAIL: u64 = ((1 << 30) - 1) << TAIL_SHIFT;
/// The `state` bits that count reserved slots (filled or not, not taken by the worker yet).
const SLOTS: u64 = (1 << TAIL_SHIFT) - 1;

/// Yields a submitter makes on a full queue, retrying between them, before it waits to be woken.
/// A full queue under a steady stream drains within a few yields (its worker runs jobs every
/// ~200 ns), while a waiter costs a `Notify` registration and a wake-up from the worker's
/// thread, which moves the submitting task onto that thread. `pool_overload`, binaries
/// alternating, medians of 9 runs: keyed 4.56 M jobs/s with no spins against 5.38 with 4; in a
/// second batch 5.40, 5.62 and 5.70 with 4, 8 and 16 (execute: 5.11, 5.02, 5.45 and 5.64 with
/// 0, 4, 8 and 16).
const SUBMIT_SPINS: u32 = 16;

/// A slot's flag: nothing in it, and the worker is not waiting on it.
const EMPTY: u8 = 0;
/// A slot's flag: a job is in it.
const FULL: u8 = 1;
/// A slot's flag: its reservation was given up; the worker skips it.
const SKIP: u8 = 2;
/// A slot's flag: empty, and the worker waits for it to be filled (its filler wakes it).
const WAITING: u8 = 3;
/// A slot's flag: the worker is gone; whoever fills the slot takes the job back and drops it.
const ABANDONED: u8 = 4;

/// Why a slot could not be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Every slot is taken.
    Full,
    /// The shard was closed (shutdown, abort, or the pool was dropped).
    Closed,
}

/// A reserved slot, by its position in the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reservation(u64);

struct Slot {
    flag: AtomicU8,
    envelope: UnsafeCell<MaybeUninit<Envelope>>,
}

pub(crate) struct ShardQueue {
    /// Slots reserved, the position of the next one, and the `CLOSED` and `ACTIVE` bits.
    state: CachePadded<AtomicU64>,
    /// Submitters waiting for room.
    waiting: CachePadded<AtomicUsize>,
    /// The position of the next job the worker takes; only the worker reads or writes it.
    head: CachePadded<AtomicU64>,
    /// The highest slot count seen.
    high_water: AtomicUsize,
    capacity: usize,
    low_water: usize,
    /// `slots.len() - 1`.
    mask: u64,
    slots: Box<[Slot]>,
    /// Set by the worker when it parks; a caller's [`release_claim`](Self::release_claim)
    /// wakes it (a filled slot wakes it through the slot's flag).
    parked: AtomicBool,
    worker: AtomicWaker,
    room: Notify,
}

// SAFETY: a slot's envelope is written only by the submitter holding its reservation (before
// the flag's swap publishes it) and read only by the worker or its guard (after a load of the
// flag saw `FULL`); `Envelope` is `Send`.
unsafe impl Sync for ShardQueue {}

impl ShardQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        let len = capacity.next_power_of_two();
        Self {
            state: CachePadded::new(AtomicU64::new(0)),
            waiting: CachePadded::new(AtomicUsize::new(0)),
            head: CachePadded::new(AtomicU64::new(0)),
            high_water: AtomicUsize::new(0),
            capacity,
            low_water: capacity / 2,
            mask: len as u64 - 1,
            slots: (0..len)
                .map(|_| Slot {
                    flag: AtomicU8::new(EMPTY),
                    envelope: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
            parked: AtomicBool::new(false),
            worker: AtomicWaker::new(),
            room: Notify::new(),
        }
    }

    /// Slots reserved now (queued jobs, and reservations about to be filled).
    pub(crate) fn len(&self) -> usize {
        (self.state.load(Ordering::Relaxed) & SLOTS) as usize
    }

    /// The highest [`len`](Self::len) seen.
    pub(crate) fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    /// Reserves a slot if one is free, whoever else is waiting.
    pub(crate) fn try_reserve(&self) -> Result<Reservation, Refused> {
        self.reserve_below(self.capacity)
    }

    /// Reserves a slot if one is free and no submitter waits for room (who would get it first).
    pub(crate) fn try_reserve_unwaited(&self) -> Result<Reservation, Refused> {
        if self.waiting.load(Ordering::SeqCst) != 0 {
            return Err(Refused::Full);
        }
        self.try_reserve()
    }

    /// Reserves a slot, waiting for room while the queue is full: first by yielding a few
    /// times (`SUBMIT_SPINS`), then asleep until the queue has drained to `low_water`.
    /// Submitters that arrive while others wait queue behind them.
    pub(crate) async fn reserve(&self) -> Result<Reservation, Refused> {
        match self.try_reserve_unwaited() {
            Err(Refused::Full) => {}
            done => return done,
        }
        for _ in 0..SUBMIT_SPINS {
            tokio::task::yield_now().await;
            match self.try_reserve_unwaited() {
                Err(Refused::Full) => {}
                done => return done,
            }
        }
        loop {
            let mut notified = pin!(self.room.notified());
            notified.as_mut().enable();
            let waiter = Waiter::new(&self.waiting);
            // Registered first, counted second, checked last: a take that lands on `low_water`
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

    fn reserve_below(&self, limit: usize) -> Result<Reservation, Refused> {
        let mut current = self.state.load(Ordering::SeqCst);
        loop {
            if current & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            let reserved = current & SLOTS;
            if reserved >= limit as u64 {
                return Err(Refused::Full);
            }
            let next = (current & ACTIVE)
                | (current.wrapping_add(1 << TAIL_SHIFT) & TAIL)
                | (reserved + 1);
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        // Read first: the mark is rarely beaten, and a load does not take the cache line.
        let reserved = (current & SLOTS) as usize + 1;
        if reserved > self.high_water.load(Ordering::Relaxed) {
            self.high_water.fetch_max(reserved, Ordering::Relaxed);
        }
        Ok(Reservation((current & TAIL) >> TAIL_SHIFT))
    }

    fn slot(&self, position: u64) -> &Slot {
        &self.slots[(position & self.mask) as usize]
    }

    /// Queues a job in its reserved slot and wakes the worker if it waits for it.
    pub(crate) fn push(&self, reservation: Reservation, envelope: Envelope) {
        let slot = self.slot(reservation.0);
        // SAFETY: the reservation makes this submitter the slot's only writer until the swap
        // below, and the worker took the slot's previous job before the count let it be
        // reserved again.
        unsafe { (*slot.envelope.get()).write(envelope) };
        if let Some(job) = self.publish(slot, FULL) {
            // The worker is gone: the job's handle learns that the pool closed.
            drop(job);
        }
    }

    /// Gives back a reserved slot that will not be filled.
    pub(crate) fn unreserve(&self, reservation: Reservation) {
        let _never_filled = self.publish(self.slot(reservation.0), SKIP);
    }

    /// Sets a reserved slot's flag to `mark` and wakes the worker if it waits for the slot. If
    /// the worker is gone, gives the slot back and returns its job (if `mark` is `FULL`).
    fn publish(&self, slot: &Slot, mark: u8) -> Option<Envelope> {
        match slot.flag.swap(mark, Ordering::AcqRel) {
            EMPTY => None,
            WAITING => {
                self.worker.wake();
                None
            }
            abandoned => {
                debug_assert_eq!(abandoned, ABANDONED);
                slot.flag.store(ABANDONED, Ordering::Relaxed);
                self.state.fetch_sub(1, Ordering::SeqCst);
                // SAFETY: written just before the swap by this submitter; nobody else reads a
                // slot once the worker is gone.
                (mark == FULL).then(|| unsafe { (*slot.envelope.get()).assume_init_read() })
            }
        }
    }

    /// The next job, for the worker; `None` once the shard is closed, every reserved slot has
    /// been taken and no caller runs a job of it. `active` says whether the worker holds the
    /// `ACTIVE` bit: a job is only returned with the bit held, and the bit is given up before
    /// the worker parks, so callers may run jobs in place while the shard is idle.
    ///
    /// # Safety
    ///
    /// Only the shard's worker calls this and [`abandon`](Self::abandon), one call at a time:
    /// nothing else takes jobs out of the ring.
    pub(crate) unsafe fn poll_pop(
        &self,
        cx: &mut Context<'_>,
        active: &mut bool,
    ) -> Poll<Option<Envelope>> {
        if let Some(envelope) = self.pop_active(active) {
            return Poll::Ready(Some(envelope));
        }
        if *active {
            self.state.fetch_and(!ACTIVE, Ordering::SeqCst);
            *active = false;
        }
        if self.is_drained() {
            return Poll::Ready(None);
        }
        self.worker.register(cx.waker());
        self.parked.store(true, Ordering::SeqCst);
        // The next job goes in the slot at `head`, whether it is reserved already or not: ask
        // its filler for a wake-up (unless it is filled already, which the look below sees).
        let _ = self
            .slot(self.head.load(Ordering::Relaxed))
            .flag
            .compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire);
        if let Some(envelope) = self.pop_active(active) {
            self.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(Some(envelope));
        }
        if *active {
            // Claimed, but the job is reserved and not filled yet: filling it will wake us.
            self.state.fetch_and(!ACTIVE, Ordering::SeqCst);
            *active = false;
        }
        // `close` sets the bit before it wakes: after registering, a second look cannot miss it.
        if self.is_drained() {
            self.parked.store(false, Ordering::Relaxed);
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Closed, with nothing reserved and no job running in place.
    fn is_drained(&self) -> bool {
        self.state.load(Ordering::SeqCst) & !TAIL == CLOSED
    }

    /// Takes the next job with the `ACTIVE` bit held (claiming it if `active` is false and a
    /// slot is reserved). `None` if the next slot is not filled yet, or if a caller holds the
    /// bit (its release wakes the worker).
    fn pop_active(&self, active: &mut bool) -> Option<Envelope> {
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
        self.take()
    }

    /// Takes the job at `head` if its slot is filled, skipping given-up slots.
    fn take(&self) -> Option<Envelope> {
        loop {
            let head = self.head.load(Ordering::Relaxed);
            let slot = self.slot(head);
            let flag = slot.flag.load(Ordering::Acquire);
            if flag != FULL && flag != SKIP {
                return None;
            }
            // SAFETY: `FULL` was published by the slot's filler after it wrote the envelope;
            // only the worker takes it, once.
            let envelope =
                (flag == FULL).then(|| unsafe { (*slot.envelope.get()).assume_init_read() });
            slot.flag.store(EMPTY, Ordering::Release);
            self.head.store(head.wrapping_add(1), Ordering::Relaxed);
            self.release_slot();
            if envelope.is_some() {
                return envelope;
            }
        }
    }

    /// Claims an idle shard for a job the caller runs in place: succeeds only when no slot is
    /// reserved, no job runs, and the shard is open. Give it back with
    /// [`release_claim`](Self::release_claim).
    pub(crate) fn try_claim_idle(&self) -> Result<(), Refused> {
        let current = self.state.load(Ordering::SeqCst);
        if current & !TAIL != 0 {
            return Err(if current & CLOSED != 0 {
                Refused::Closed
            } else {
                Refused::Full
            });
        }
        match self.state.compare_exchange(
            current,
            current | ACTIVE,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
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

    fn release_slot(&self) {
        let left = ((self.state.fetch_sub(1, Ordering::SeqCst) & SLOTS) - 1) as usize;
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

    /// The worker is gone: closes the shard and drops every queued job (their handles learn
    /// `PoolClosed`); slots reserved and not filled yet are marked so that their fillers drop
    /// their jobs.
    ///
    /// # Safety
    ///
    /// As for [`poll_pop`](Self::poll_pop): only the shard's worker calls this, once it will
    /// not call `poll_pop` again.
    pub(crate) unsafe fn abandon(&self) {
        let reserved = {
            let state = self.state.fetch_or(CLOSED, Ordering::SeqCst);
            state & SLOTS
        };
        let head = self.head.load(Ordering::Relaxed);
        let mut dropped = Vec::new();
        let mut given_back = 0;
        // Closed: no slot past these can be reserved any more.
        for position in head..head + reserved {
            let slot = self.slot(position);
            match slot.flag.swap(ABANDONED, Ordering::AcqRel) {
                FULL => {
                    // SAFETY: published by its filler; the worker never took it.
                    dropped.push(unsafe { (*slot.envelope.get()).assume_init_read() });
                    given_back += 1;
                }
                SKIP => given_back += 1,
                // Not filled yet: its filler sees the mark and gives the slot back itself.
                _ => {}
            }
        }
        self.head.store(head + reserved, Ordering::Relaxed);
        self.state.fetch_sub(given_back, Ordering::SeqCst);
        self.room.notify_waiters();
        // Last, as the count is already down: a handle woken by its job's drop sees the count
        // without it, and a job's destructor may do anything, including submit again.
        drop(dropped);
    }
}

impl Drop for ShardQueue {
    fn drop(&mut self) {
        for slot in &mut self.slots {
            if *slot.flag.get_mut() == FULL {
                // SAFETY: filled and never taken.
                unsafe { slot.envelope.get_mut().assume_init_drop() };
            }
        }
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

#[cfg(test)]
mod tests {
    //! The ring's hand-overs on one thread, the test standing in for the worker.

    use std::sync::Arc;
    use std::task::Waker;

    use super::*;
    use crate::task::{Detached, Task};
    use crate::test_waker::{CountWakes, waker, wakes};

    /// Sets its flag when dropped: tells whether a queued job was dropped, and how often.
    struct DropCount(Arc<AtomicUsize>);

    impl Drop for DropCount {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A queued job that records `id` in `ran` when run and counts its drop in `drops`.
    fn envelope(id: usize, ran: &Arc<AtomicUsize>, drops: &Arc<AtomicUsize>) -> Envelope {
        let (ran, dropped) = (Arc::clone(ran), DropCount(Arc::clone(drops)));
        Envelope {
            task: Task::Detached(Box::pin(Detached::new(async move {
                let _dropped = dropped;
                ran.store(id, Ordering::Relaxed);
            }))),
            timeout: None,
            queued_at: None,
        }
    }

    struct Worker {
        wakes: Arc<CountWakes>,
        waker: Waker,
        active: bool,
    }

    impl Worker {
        fn new() -> Self {
            let (wakes, waker) = waker();
            Self {
                waker,
                wakes,
                active: false,
            }
        }

        fn wakes(&self) -> usize {
            wakes(&self.wakes)
        }

        /// Pops the next job and runs it; its id, or `None` when the pop is pending.
        fn run_next(&mut self, queue: &ShardQueue, ran: &AtomicUsize) -> Option<Option<usize>> {
            let mut cx = Context::from_waker(&self.waker);
            // SAFETY: this test is the queue's only worker.
            match unsafe { queue.poll_pop(&mut cx, &mut self.active) } {
                Poll::Pending => None,
                Poll::Ready(None) => Some(None),
                Poll::Ready(Some(mut envelope)) => {
                    assert_eq!(envelope.task.poll_run(&mut cx), Poll::Ready(true));
                    Some(Some(ran.load(Ordering::Relaxed)))
                }
            }
        }
    }

    fn counters() -> (Arc<AtomicUsize>, Arc<AtomicUsize>) {
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)))
    }

    #[test]
    fn jobs_come_out_in_reservation_order_across_many_wraps_of_the_ring() {
        let queue = ShardQueue::new(3);
        assert_eq!(queue.slots.len(), 4);
        let (ran, drops) = counters();
        let mut worker = Worker::new();
        let mut next = 1;
        for round in 0..50 {
            // Fill to 1, 2 or 3 jobs, then drain: the positions walk all the way round.
            let batch = round % 3 + 1;
            for id in next..next + batch {
                let slot = queue.try_reserve().unwrap();
                queue.push(slot, envelope(id, &ran, &drops));
            }
            match queue.try_reserve() {
                Ok(extra) => {
                    assert!(batch < 3);
                    queue.unreserve(extra);
                }
                Err(refused) => assert_eq!((refused, batch), (Refused::Full, 3)),
            }
            for id in next..next + batch {
                assert_eq!(worker.run_next(&queue, &ran), Some(Some(id)));
            }
            assert_eq!(worker.run_next(&queue, &ran), None);
            next += batch;
        }
        assert_eq!(drops.load(Ordering::Relaxed), next - 1);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn the_position_wraps_at_the_end_of_its_field() {
        let queue = ShardQueue::new(4);
        // Start two slots before the position field wraps to zero.
        let start = (TAIL >> TAIL_SHIFT) - 2;
        queue.state.store(start << TAIL_SHIFT, Ordering::Relaxed);
        queue.head.store(start, Ordering::Relaxed);
        let (ran, drops) = counters();
        let mut worker = Worker::new();
        for id in 1..=12 {
            let slot = queue.try_reserve().unwrap();
            queue.push(slot, envelope(id, &ran, &drops));
            assert_eq!(worker.run_next(&queue, &ran), Some(Some(id)));
        }
        // The reservations' positions wrapped to zero; the worker's kept counting, in the same
        // slots.
        assert_eq!(
            (queue.state.load(Ordering::Relaxed) & TAIL) >> TAIL_SHIFT,
            9
        );
        assert_eq!(queue.head.load(Ordering::Relaxed), start + 12);
        assert_eq!(queue.state.load(Ordering::Relaxed) & SLOTS, 0);
    }

    #[test]
    fn a_worker_waiting_on_a_reserved_slot_is_woken_when_it_is_filled() {
        let queue = ShardQueue::new(4);
        let (ran, drops) = counters();
        let mut worker = Worker::new();
        assert_eq!(worker.run_next(&queue, &ran), None, "nothing queued");
        let slot = queue.try_reserve().unwrap();
        // Reserved, not filled: the worker still waits, and is not woken by the reservation.
        assert_eq!(worker.run_next(&queue, &ran), None);
        assert_eq!(worker.wakes(), 0);
        queue.push(slot, envelope(1, &ran, &drops));
        assert_eq!(worker.wakes(), 1);
        assert_eq!(worker.run_next(&queue, &ran), Some(Some(1)));
        // A slot filled while the worker was not waiting wakes nobody.
        let slot = queue.try_reserve().unwrap();
        queue.push(slot, envelope(2, &ran, &drops));
        assert_eq!(worker.wakes(), 1);
        assert_eq!(worker.run_next(&queue, &ran), Some(Some(2)));
    }

    #[test]
    fn a_given_up_reservation_is_skipped_and_wakes_a_waiting_worker() {
        let queue = ShardQueue::new(4);
        let (ran, drops) = counters();
        let mut worker = Worker::new();
        let (first, second) = (queue.try_reserve().unwrap(), queue.try_reserve().unwrap());
        queue.push(second, envelope(2, &ran, &drops));
        // The first slot is not filled yet: the second job waits behind it.
        assert_eq!(worker.run_next(&queue, &ran), None);
        queue.unreserve(first);
        assert_eq!(worker.wakes(), 1);
        assert_eq!(worker.run_next(&queue, &ran), Some(Some(2)));
        assert_eq!(queue.len(), 0);
        // Given up alone, with nothing behind it.
        let slot = queue.try_reserve().unwrap();
        queue.unreserve(slot);
        assert_eq!(worker.run_next(&queue, &ran), None);
        assert_eq!(queue.len(), 0);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn an_abandoned_ring_drops_its_jobs_and_the_ones_filled_later() {
        let queue = ShardQueue::new(8);
        let (ran, drops) = counters();
        let mut worker = Worker::new();
        let late = queue.try_reserve().unwrap();
        for id in 1..=3 {
            let slot = queue.try_reserve().unwrap();
            queue.push(slot, envelope(id, &ran, &drops));
        }
        let given_up = queue.try_reserve().unwrap();
        // The first slot is not filled: the worker takes nothing.
        assert_eq!(worker.run_next(&queue, &ran), None);
        // SAFETY: the test is the worker, and polls no more.
        unsafe { queue.abandon() };
        assert_eq!(
            drops.load(Ordering::Relaxed),
            3,
            "the filled slots are dropped"
        );
        assert_eq!(queue.len(), 2, "two reservations are still out");
        assert_eq!(queue.try_reserve(), Err(Refused::Closed));
        queue.push(late, envelope(9, &ran, &drops));
        assert_eq!(
            drops.load(Ordering::Relaxed),
            4,
            "filled after, dropped by its filler"
        );
        queue.unreserve(given_up);
        assert_eq!(queue.len(), 0);
        assert_eq!(ran.load(Ordering::Relaxed), 0, "nothing ran");
    }

    #[test]
    fn a_slot_takes_the_64_bytes_the_builder_documents() {
        assert_eq!(size_of::<Slot>(), 64);
    }

    #[test]
    fn a_dropped_queue_drops_what_it_still_holds() {
        let queue = ShardQueue::new(2);
        let (ran, drops) = counters();
        for id in 1..=2 {
            let slot = queue.try_reserve().unwrap();
            queue.push(slot, envelope(id, &ran, &drops));
        }
        drop(queue);
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }
}
