//! Relay counters: atomics updated by the relay's tasks, read as [`RelayStats`] snapshots.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Counters of one direction of a [`LossyRelay`](crate::LossyRelay), summed over its clients.
///
/// Every packet that reaches the relay is `received`; each copy it makes (the original, and a
/// duplicate when one is injected) then ends in exactly one of `forwarded`, `dropped`,
/// `queue_dropped` or `send_failed`. So once nothing is in flight
/// (see [`LinkStats::in_flight`]):
///
/// `forwarded + dropped + queue_dropped + send_failed == received + duplicated`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// Datagrams read from the sending side.
    pub received: u64,
    /// Datagrams (originals and duplicates) sent on to the receiving side.
    pub forwarded: u64,
    /// Datagrams dropped by the random loss.
    pub dropped: u64,
    /// Copies dropped because the direction's queue was full (tail drop, like a router).
    pub queue_dropped: u64,
    /// Extra copies injected by duplication.
    pub duplicated: u64,
    /// Datagrams released after the one that followed them.
    pub reordered: u64,
    /// Copies the operating system refused to send (for example: nobody listens upstream).
    pub send_failed: u64,
}

impl LinkStats {
    /// Copies accepted by the relay and not yet forwarded, dropped or failed: queued, delayed or
    /// held back for reordering.
    ///
    /// A snapshot reads its outputs before its inputs, so this is never below the true number at
    /// the time of the snapshot: zero means the direction really was idle.
    pub fn in_flight(&self) -> u64 {
        (self.received + self.duplicated)
            .saturating_sub(self.forwarded + self.dropped + self.queue_dropped + self.send_failed)
    }
}

/// A snapshot of a [`LossyRelay`](crate::LossyRelay)'s counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayStats {
    /// Client → server: datagrams from clients to the upstream server.
    pub client_to_server: LinkStats,
    /// Server → client: replies from the upstream server to the clients.
    pub server_to_client: LinkStats,
    /// Distinct client addresses seen so far.
    pub clients: u64,
}

impl RelayStats {
    /// Copies in flight in both directions.
    pub fn in_flight(&self) -> u64 {
        self.client_to_server.in_flight() + self.server_to_client.in_flight()
    }
}

/// The live counters of one direction.
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    pub(crate) received: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) queue_dropped: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) reordered: AtomicU64,
    pub(crate) send_failed: AtomicU64,
}

impl LinkCounters {
    /// Adds one to `counter`. Release pairs with the Acquire loads of [`LinkCounters::snapshot`]
    /// so that a snapshot seeing an output also sees the input that caused it.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Release);
    }

    fn snapshot(&self) -> LinkStats {
        let load = |c: &AtomicU64| c.load(Ordering::Acquire);
        // Outputs first, inputs last: see `LinkStats::in_flight`.
        let forwarded = load(&self.forwarded);
        let dropped = load(&self.dropped);
        let queue_dropped = load(&self.queue_dropped);
        let send_failed = load(&self.send_failed);
        let reordered = load(&self.reordered);
        let duplicated = load(&self.duplicated);
        let received = load(&self.received);
        LinkStats {
            received,
            forwarded,
            dropped,
            queue_dropped,
            duplicated,
            reordered,
            send_failed,
        }
    }
}

/// Everything the relay's tasks count, plus the wake-up for [`LossyRelay::wait_for`].
///
/// [`LossyRelay::wait_for`]: crate::LossyRelay::wait_for
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) client_to_server: LinkCounters,
    pub(crate) server_to_client: LinkCounters,
    pub(crate) clients: AtomicU64,
    /// Notified after every batch of counter updates.
    pub(crate) changed: Notify,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> RelayStats {
        RelayStats {
            client_to_server: self.client_to_server.snapshot(),
            server_to_client: self.server_to_client.snapshot(),
            clients: self.clients.load(Ordering::Acquire),
        }
    }

    pub(crate) fn notify(&self) {
        self.changed.notify_waiters();
    }
}
