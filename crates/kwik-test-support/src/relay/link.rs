//! One direction of one client flow: the intake that decides each packet's fate and schedules
//! it, and the sender task that releases packets on time.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::conditions::{Direction, LinkConditions};
use super::rng::SplitMix64;
use super::stats::{Counters, LinkCounters};

/// A copy of a packet waiting in a direction's queue.
#[derive(Debug)]
pub(crate) struct Queued {
    data: Box<[u8]>,
    /// When the copy may leave; `None` on links that never wait.
    release: Option<Instant>,
    /// Whether the copy is held back until the next one has left.
    hold: bool,
}

impl Queued {
    async fn released(&self) {
        if let Some(at) = self.release {
            tokio::time::sleep_until(at).await;
        }
    }
}

/// The intake of one direction of one client flow: draws each packet's fate and queues it.
#[derive(Debug)]
pub(crate) struct Intake {
    conditions: LinkConditions,
    direction: Direction,
    rng: SplitMix64,
    shaper: Shaper,
    queue: mpsc::Sender<Queued>,
    counters: Arc<Counters>,
}

impl Intake {
    /// An intake and the receiving end of its queue, for [`run_sender`].
    pub(crate) fn new(
        conditions: LinkConditions,
        direction: Direction,
        rng: SplitMix64,
        counters: Arc<Counters>,
    ) -> (Self, mpsc::Receiver<Queued>) {
        let (queue, rx) = mpsc::channel(conditions.queue_capacity);
        let shaper = Shaper::new(&conditions);
        let intake = Self {
            conditions,
            direction,
            rng,
            shaper,
            queue,
            counters,
        };
        (intake, rx)
    }

    /// Takes one datagram received from the sending side.
    pub(crate) fn offer(&mut self, packet: &[u8]) {
        let counters = Arc::clone(&self.counters);
        let link = link_counters(&counters, self.direction);
        LinkCounters::bump(&link.received);
        // Every decision draws, whatever the probabilities, so that a seed fixes the fate of the
        // n-th packet of a link independently of the other knobs.
        let lost = self.rng.chance(self.conditions.loss);
        let duplicate = self.rng.chance(self.conditions.duplicate);
        let hold = self.rng.chance(self.conditions.reorder);
        let jitter_ns = u64::try_from(self.conditions.jitter.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(self.rng.up_to(jitter_ns));
        if lost {
            LinkCounters::bump(&link.dropped);
        } else if duplicate {
            LinkCounters::bump(&link.duplicated);
            // The second copy is the one held back: swapping two identical copies would
            // reorder nothing.
            self.enqueue(packet, false, jitter);
            self.enqueue(packet, hold, jitter);
        } else {
            self.enqueue(packet, hold, jitter);
        }
        counters.notify();
    }

    fn enqueue(&mut self, packet: &[u8], hold: bool, jitter: Duration) {
        let slot = self
            .conditions
            .shapes()
            .then(|| self.shaper.schedule(Instant::now(), packet.len(), jitter));
        let queued = Queued {
            data: packet.into(),
            release: slot.map(|s| s.release),
            hold,
        };
        match self.queue.try_send(queued) {
            Ok(()) => {
                if let Some(slot) = slot {
                    self.shaper.commit(slot);
                }
            }
            // Full is the router's tail drop; Closed only happens while the relay shuts down.
            Err(_) => {
                LinkCounters::bump(&link_counters(&self.counters, self.direction).queue_dropped);
            }
        }
    }
}

/// Where a direction's sender delivers its packets.
#[derive(Debug)]
pub(crate) enum Sink {
    /// The flow's own socket, connected to the upstream server.
    Upstream(Arc<UdpSocket>),
    /// The relay's public socket, back to the client's address.
    Client {
        socket: Arc<UdpSocket>,
        addr: SocketAddr,
    },
}

impl Sink {
    async fn send(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Upstream(socket) => socket.send(data).await,
            Self::Client { socket, addr } => socket.send_to(data, *addr).await,
        }
    }
}

/// Releases the packets of one direction of one flow, in queue order, each at its release time,
/// swapping a held packet with its successor. Ends when the intake is dropped.
pub(crate) async fn run_sender(
    mut queue: mpsc::Receiver<Queued>,
    sink: Sink,
    direction: Direction,
    reorder_hold: Duration,
    counters: Arc<Counters>,
) {
    let deliver = async |queued: Queued| {
        let link = link_counters(&counters, direction);
        match sink.send(&queued.data).await {
            Ok(_) => LinkCounters::bump(&link.forwarded),
            Err(_) => LinkCounters::bump(&link.send_failed),
        }
        counters.notify();
    };
    while let Some(first) = queue.recv().await {
        first.released().await;
        if !first.hold {
            deliver(first).await;
            continue;
        }
        match tokio::time::timeout(reorder_hold, queue.recv()).await {
            Ok(Some(next)) => {
                next.released().await;
                LinkCounters::bump(&link_counters(&counters, direction).reordered);
                deliver(next).await;
                deliver(first).await;
            }
            // No successor in time, or the flow is closing: release the held packet as is.
            Ok(None) | Err(_) => deliver(first).await,
        }
    }
}

fn link_counters(counters: &Counters, direction: Direction) -> &LinkCounters {
    match direction {
        Direction::ClientToServer => &counters.client_to_server,
        Direction::ServerToClient => &counters.server_to_client,
    }
}

/// Release times of a direction: a bandwidth serializer followed by a FIFO delay line.
#[derive(Clone, Copy, Debug)]
struct Shaper {
    bandwidth: Option<u64>,
    delay: Duration,
    /// When the serializer finishes the last accepted packet.
    busy_until: Option<Instant>,
    /// Release time of the last accepted packet; later packets never leave before it.
    last_release: Option<Instant>,
}

/// The schedule of one packet, applied with [`Shaper::commit`] once the packet is queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    transmitted: Instant,
    release: Instant,
}

impl Shaper {
    fn new(conditions: &LinkConditions) -> Self {
        Self {
            bandwidth: conditions.bandwidth,
            delay: conditions.delay,
            busy_until: None,
            last_release: None,
        }
    }

    fn schedule(&self, now: Instant, len: usize, jitter: Duration) -> Slot {
        let transmitted = match self.bandwidth {
            Some(bytes_per_sec) => {
                let start = self.busy_until.map_or(now, |busy| busy.max(now));
                later(start, serialization_time(len, bytes_per_sec))
            }
            None => now,
        };
        let release = later(transmitted, self.delay + jitter);
        let release = self.last_release.map_or(release, |last| last.max(release));
        Slot {
            transmitted,
            release,
        }
    }

    fn commit(&mut self, slot: Slot) {
        self.busy_until = Some(slot.transmitted);
        self.last_release = Some(slot.release);
    }
}

/// How long `len` bytes take at `bytes_per_sec` (> 0), rounded down to the nanosecond.
fn serialization_time(len: usize, bytes_per_sec: u64) -> Duration {
    let nanos = len as u128 * 1_000_000_000 / u128::from(bytes_per_sec.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// `at + by`, saturating at `at` for spans no test lives to see (Instant has no `MAX`).
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaper(conditions: LinkConditions) -> Shaper {
        Shaper::new(&conditions)
    }

    #[test]
    fn bandwidth_serializes_back_to_back_packets() {
        let mut s = shaper(LinkConditions::new().bandwidth(1_000));
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        for k in 1..=5 {
            let slot = s.schedule(t0, 100, Duration::ZERO);
            assert_eq!(slot.release, t0 + ms(100 * k));
            s.commit(slot);
        }
        // An idle serializer starts at the arrival time again.
        let slot = s.schedule(t0 + ms(2_000), 100, Duration::ZERO);
        assert_eq!(slot.release, t0 + ms(2_100));
    }

    #[test]
    fn uncommitted_slots_do_not_occupy_the_serializer() {
        let s = shaper(LinkConditions::new().bandwidth(1_000));
        let t0 = Instant::now();
        let a = s.schedule(t0, 100, Duration::ZERO);
        let b = s.schedule(t0, 100, Duration::ZERO);
        assert_eq!(a, b);
    }

    #[test]
    fn delay_and_jitter_add_up_and_never_reorder() {
        let ms = Duration::from_millis;
        let mut s = shaper(LinkConditions::new().delay(ms(50)).jitter(ms(20)));
        let t0 = Instant::now();
        let first = s.schedule(t0, 1_200, ms(20));
        assert_eq!(first.release, t0 + ms(70));
        s.commit(first);
        // Less jitter on the next packet must not let it overtake the first.
        let second = s.schedule(t0 + ms(1), 1_200, Duration::ZERO);
        assert_eq!(second.release, t0 + ms(70));
        s.commit(second);
        let third = s.schedule(t0 + ms(40), 1_200, ms(5));
        assert_eq!(third.release, t0 + ms(95));
    }

    #[test]
    fn bandwidth_then_delay() {
        let ms = Duration::from_millis;
        let mut s = shaper(LinkConditions::new().bandwidth(10_000).delay(ms(30)));
        let t0 = Instant::now();
        let first = s.schedule(t0, 1_000, Duration::ZERO);
        assert_eq!(first.transmitted, t0 + ms(100));
        assert_eq!(first.release, t0 + ms(130));
        s.commit(first);
        let second = s.schedule(t0, 500, Duration::ZERO);
        assert_eq!(second.release, t0 + ms(180));
    }

    #[test]
    fn serialization_time_rounds_down_and_never_divides_by_zero() {
        assert_eq!(serialization_time(3, 2), Duration::from_millis(1_500));
        assert_eq!(serialization_time(1, 3), Duration::from_nanos(333_333_333));
        assert_eq!(serialization_time(5, 0), Duration::from_secs(5));
    }
}
