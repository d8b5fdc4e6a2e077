//! What one direction of the relay does to packets: loss, duplication, reordering, delay,
//! jitter, a bandwidth cap and a bounded queue.

use std::fmt;
use std::time::Duration;

use super::RelayError;

/// The direction of a packet through a [`LossyRelay`](crate::LossyRelay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a client to the upstream server.
    ClientToServer,
    /// From the upstream server back to a client.
    ServerToClient,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ClientToServer => "client-to-server",
            Self::ServerToClient => "server-to-client",
        })
    }
}

/// The impairments of one direction of the relay. The default is a perfect link: no loss, no
/// duplication, no reordering, no delay, no bandwidth cap.
///
/// Per packet, in order: the packet is dropped with probability `loss`; otherwise it is queued,
/// followed by a duplicate with probability `duplicate`; with probability `reorder` it (or its
/// duplicate) is held back and released right after the next packet of its direction, or after
/// `reorder_hold` if none comes; the packet released first is never held itself. A queued copy
/// leaves once the bandwidth cap lets it through, plus `delay`, plus a uniform random extra in
/// `0..=jitter`; copies keep their order apart from reordering.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kwik_test_support::LinkConditions;
///
/// let satellite = LinkConditions::new()
///     .loss(0.01)
///     .delay(Duration::from_millis(300))
///     .jitter(Duration::from_millis(20))
///     .bandwidth(1_000_000);
/// assert_eq!(satellite.bandwidth_limit(), Some(1_000_000));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConditions {
    pub(crate) loss: f64,
    pub(crate) duplicate: f64,
    pub(crate) reorder: f64,
    pub(crate) reorder_hold: Duration,
    pub(crate) delay: Duration,
    pub(crate) jitter: Duration,
    pub(crate) bandwidth: Option<u64>,
    pub(crate) queue_capacity: usize,
}

impl LinkConditions {
    /// Default [`LinkConditions::queue_capacity`]: netem's default `limit`.
    pub const DEFAULT_QUEUE_CAPACITY: usize = 1000;

    /// Default [`LinkConditions::reorder_hold`]: some ten loopback round trips, long enough for
    /// the next packet of a busy flow, short enough not to stall a sender that waits for
    /// acknowledgements before sending more (10 ms tripled the time of a 5%-reordering QUIC
    /// transfer here; 1 ms costs it a third).
    pub const DEFAULT_REORDER_HOLD: Duration = Duration::from_millis(1);

    /// Longest accepted delay, jitter or reorder hold: one day, far beyond any test, and small
    /// enough that adding them never overflows.
    pub const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// A perfect link (the default).
    pub fn new() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_hold: Self::DEFAULT_REORDER_HOLD,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth: None,
            queue_capacity: Self::DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// Probability in `0.0..=1.0` that a packet is dropped. Default: 0.
    pub fn loss(mut self, probability: f64) -> Self {
        self.loss = probability;
        self
    }

    /// Probability in `0.0..=1.0` that a packet is sent twice. Default: 0.
    pub fn duplicate(mut self, probability: f64) -> Self {
        self.duplicate = probability;
        self
    }

    /// Probability in `0.0..=1.0` that a packet is held back and released after the next one.
    /// Default: 0.
    pub fn reorder(mut self, probability: f64) -> Self {
        self.reorder = probability;
        self
    }

    /// The longest a reordered packet waits for a successor before it is released anyway.
    /// Default: [`LinkConditions::DEFAULT_REORDER_HOLD`] (1 ms).
    pub fn reorder_hold(mut self, hold: Duration) -> Self {
        self.reorder_hold = hold;
        self
    }

    /// Fixed one-way delay added to every packet, at most [`LinkConditions::MAX_DELAY`].
    /// Default: zero.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Upper bound of a uniform random delay added on top of [`LinkConditions::delay`]; jitter
    /// never reorders packets. Default: zero.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }

    /// Caps the direction at `bytes_per_sec` (UDP payload bytes); packets wait their turn in the
    /// queue. Must be greater than zero. Default: uncapped.
    pub fn bandwidth(mut self, bytes_per_sec: u64) -> Self {
        self.bandwidth = Some(bytes_per_sec);
        self
    }

    /// The most copies one client's direction queues at once, whether waiting for bandwidth or
    /// for their delay (netem's `limit`); arrivals beyond it are dropped and counted
    /// in [`LinkStats::queue_dropped`](crate::LinkStats::queue_dropped). Must be greater than
    /// zero. Default: [`LinkConditions::DEFAULT_QUEUE_CAPACITY`] (1000).
    pub fn queue_capacity(mut self, packets: usize) -> Self {
        self.queue_capacity = packets;
        self
    }

    /// The bandwidth cap in bytes per second, if any.
    pub fn bandwidth_limit(&self) -> Option<u64> {
        self.bandwidth
    }

    /// Whether packets may have to wait before they are sent.
    pub(crate) fn shapes(&self) -> bool {
        self.bandwidth.is_some() || !self.delay.is_zero() || !self.jitter.is_zero()
    }

    pub(crate) fn validate(&self, direction: Direction) -> Result<(), RelayError> {
        for (knob, value) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(RelayError::InvalidProbability {
                    direction,
                    knob,
                    value,
                });
            }
        }
        for (knob, value) in [
            ("delay", self.delay),
            ("jitter", self.jitter),
            ("reorder_hold", self.reorder_hold),
        ] {
            if value > Self::MAX_DELAY {
                return Err(RelayError::DelayTooLong {
                    direction,
                    knob,
                    value,
                });
            }
        }
        if self.bandwidth == Some(0) {
            return Err(RelayError::ZeroBandwidth { direction });
        }
        if self.queue_capacity == 0 {
            return Err(RelayError::ZeroQueueCapacity { direction });
        }
        Ok(())
    }
}

impl Default for LinkConditions {
    fn default() -> Self {
        Self::new()
    }
}
