//! A lossy UDP relay between QUIC clients and a server on loopback.

mod conditions;
mod link;
mod rng;
mod stats;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle, JoinSet};

pub use conditions::{Direction, LinkConditions};
pub use stats::{LinkStats, RelayStats};

use link::{Intake, Sink, run_sender};
use rng::SplitMix64;
use stats::Counters;

/// Largest datagram the relay reads; anything longer is truncated by the operating system.
const MAX_DATAGRAM: usize = 65_535;

/// Socket buffers requested for the relay's own sockets, so that the relay itself does not add
/// loss beyond what it was asked for when a burst arrives (the kernel caps the request at
/// `net.core.{r,w}mem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// Errors from [`RelayBuilder::start`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// A loss, duplication or reordering probability is outside `0.0..=1.0` (or NaN).
    #[error("{direction} {knob} probability must be within 0.0..=1.0, got {value}")]
    InvalidProbability {
        /// The direction configured with it.
        direction: Direction,
        /// Which probability: `"loss"`, `"duplicate"` or `"reorder"`.
        knob: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A delay, jitter or reorder hold exceeds [`LinkConditions::MAX_DELAY`].
    #[error("{direction} {knob} must be at most one day, got {value:?}")]
    DelayTooLong {
        /// The direction configured with it.
        direction: Direction,
        /// Which duration: `"delay"`, `"jitter"` or `"reorder_hold"`.
        knob: &'static str,
        /// The rejected value.
        value: Duration,
    },
    /// A bandwidth cap of zero bytes per second.
    #[error("{direction} bandwidth must be greater than zero")]
    ZeroBandwidth {
        /// The direction configured with it.
        direction: Direction,
    },
    /// A queue capacity of zero packets.
    #[error("{direction} queue capacity must be greater than zero")]
    ZeroQueueCapacity {
        /// The direction configured with it.
        direction: Direction,
    },
    /// The upstream address is not a loopback address; the relay only serves local tests.
    #[error("upstream {0} is not a loopback address")]
    NotLoopback(SocketAddr),
    /// The relay's socket could not be bound on 127.0.0.1.
    #[error("failed to bind the relay socket")]
    Bind(#[source] io::Error),
}

/// A UDP relay on `127.0.0.1` that forwards datagrams between clients and one upstream server,
/// losing, duplicating, reordering, delaying and rate-limiting them as configured, with a seeded
/// random number generator.
///
/// Clients send to [`LossyRelay::local_addr`] instead of the server. The relay gives each client
/// address its own socket towards the server (so the server sees one peer per client) and maps
/// the server's replies back. Each direction of each client flow draws its packets' fates from
/// its own generator, derived from the seed, the direction and the order in which clients
/// appeared: with a fixed seed, the n-th packet of a flow is lost, duplicated, held back and
/// jittered alike on every run (only queue overflow depends on timing).
///
/// [`LossyRelay::shutdown`] stops the relay and joins all its tasks; dropping it aborts them.
///
/// # Examples
///
/// ```
/// use std::net::SocketAddr;
/// use kwik_test_support::LossyRelay;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
/// let relay = LossyRelay::builder()
///     .duplicate(1.0)
///     .seed(7)
///     .start(server.local_addr()?)
///     .await?;
///
/// let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
/// client.send_to(b"ping", relay.local_addr()).await?;
/// let mut buf = [0; 16];
/// for _ in 0..2 {
///     let (len, _) = server.recv_from(&mut buf).await?;
///     assert_eq!(&buf[..len], b"ping");
/// }
/// let stats = relay.shutdown().await;
/// assert_eq!(stats.client_to_server.duplicated, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct LossyRelay {
    local_addr: SocketAddr,
    upstream: SocketAddr,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl LossyRelay {
    /// A builder for a relay; by default both directions are perfect links.
    pub fn builder() -> RelayBuilder {
        RelayBuilder::new()
    }

    /// The address clients send to (`127.0.0.1` and an ephemeral port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server the relay forwards to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.upstream
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        self.counters.snapshot()
    }

    /// Waits until `until` holds for the counters and returns the snapshot that satisfied it:
    /// the way to wait for traffic without sleeping. Wrap it in a timeout if the condition may
    /// never hold.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_test_support::LossyRelay;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    /// let relay = LossyRelay::builder().loss(0.5).seed(1).start(server.local_addr()?).await?;
    /// let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
    /// for _ in 0..100 {
    ///     client.send_to(b"datagram", relay.local_addr())?;
    /// }
    /// let stats = relay
    ///     .wait_for(|s| s.client_to_server.received == 100 && s.in_flight() == 0)
    ///     .await;
    /// let link = stats.client_to_server;
    /// assert_eq!(link.forwarded + link.dropped, 100);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for(&self, mut until: impl FnMut(&RelayStats) -> bool) -> RelayStats {
        loop {
            let mut changed = pin!(self.counters.changed.notified());
            // Register before reading, so that an update between the read and the await still
            // wakes us.
            changed.as_mut().enable();
            let stats = self.stats();
            if until(&stats) {
                return stats;
            }
            changed.await;
        }
    }

    /// Stops the relay, joins all its tasks and returns the final counters. Packets still
    /// queued or delayed are discarded.
    ///
    /// # Panics
    ///
    /// Resumes the panic of a relay task that panicked (a bug in this crate).
    pub async fn shutdown(mut self) -> RelayStats {
        if let Some(stop) = self.stop.take() {
            // An error means the task has already ended, which joining reveals.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            resume_panic(task.await);
        }
        self.stats()
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        // Aborting the front task drops its JoinSet, which aborts every flow task.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Configures and starts a [`LossyRelay`]. The setters named after an impairment set it for both
/// directions; [`RelayBuilder::client_to_server`] and [`RelayBuilder::server_to_client`] replace
/// one direction's conditions as a whole.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use kwik_test_support::{LinkConditions, LossyRelay};
///
/// let asymmetric = LossyRelay::builder()
///     .seed(42)
///     .client_to_server(LinkConditions::new().bandwidth(125_000).queue_capacity(64))
///     .server_to_client(LinkConditions::new().loss(0.02).delay(Duration::from_millis(20)));
/// # drop(asymmetric);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[must_use = "a builder does nothing until started"]
pub struct RelayBuilder {
    client_to_server: LinkConditions,
    server_to_client: LinkConditions,
    seed: u64,
}

impl RelayBuilder {
    /// Default [`RelayBuilder::seed`]: fixed, so that runs are reproducible unless a test asks
    /// otherwise.
    pub const DEFAULT_SEED: u64 = 0x6B77_696B; // "kwik"

    fn new() -> Self {
        Self {
            client_to_server: LinkConditions::new(),
            server_to_client: LinkConditions::new(),
            seed: Self::DEFAULT_SEED,
        }
    }

    fn both(mut self, set: impl Fn(LinkConditions) -> LinkConditions) -> Self {
        self.client_to_server = set(self.client_to_server);
        self.server_to_client = set(self.server_to_client);
        self
    }

    /// Drop probability in both directions; see [`LinkConditions::loss`]. Default: 0.
    pub fn loss(self, probability: f64) -> Self {
        self.both(|c| c.loss(probability))
    }

    /// Duplication probability in both directions; see [`LinkConditions::duplicate`].
    /// Default: 0.
    pub fn duplicate(self, probability: f64) -> Self {
        self.both(|c| c.duplicate(probability))
    }

    /// Reordering probability in both directions; see [`LinkConditions::reorder`]. Default: 0.
    pub fn reorder(self, probability: f64) -> Self {
        self.both(|c| c.reorder(probability))
    }

    /// Longest hold of a reordered packet in both directions; see
    /// [`LinkConditions::reorder_hold`]. Default: 1 ms.
    pub fn reorder_hold(self, hold: Duration) -> Self {
        self.both(|c| c.reorder_hold(hold))
    }

    /// Fixed one-way delay in both directions; see [`LinkConditions::delay`]. Default: zero.
    pub fn delay(self, delay: Duration) -> Self {
        self.both(|c| c.delay(delay))
    }

    /// Random extra delay bound in both directions; see [`LinkConditions::jitter`].
    /// Default: zero.
    pub fn jitter(self, jitter: Duration) -> Self {
        self.both(|c| c.jitter(jitter))
    }

    /// Bandwidth cap of each direction, in bytes per second; see [`LinkConditions::bandwidth`].
    /// Default: uncapped.
    pub fn bandwidth(self, bytes_per_sec: u64) -> Self {
        self.both(|c| c.bandwidth(bytes_per_sec))
    }

    /// Queue capacity of each direction, in packets; see [`LinkConditions::queue_capacity`].
    /// Default: 1000.
    pub fn queue_capacity(self, packets: usize) -> Self {
        self.both(|c| c.queue_capacity(packets))
    }

    /// Replaces the conditions from clients to the server. Default: a perfect link.
    pub fn client_to_server(mut self, conditions: LinkConditions) -> Self {
        self.client_to_server = conditions;
        self
    }

    /// Replaces the conditions from the server to clients. Default: a perfect link.
    pub fn server_to_client(mut self, conditions: LinkConditions) -> Self {
        self.server_to_client = conditions;
        self
    }

    /// Seed of the random decisions. Default: [`RelayBuilder::DEFAULT_SEED`].
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Validates the configuration, binds `127.0.0.1:0` and starts relaying to `upstream`, which
    /// must be a loopback address. Must be called within a tokio runtime (with the time driver
    /// enabled when a delay, jitter, bandwidth cap or reordering is configured).
    pub async fn start(self, upstream: SocketAddr) -> Result<LossyRelay, RelayError> {
        self.client_to_server.validate(Direction::ClientToServer)?;
        self.server_to_client.validate(Direction::ServerToClient)?;
        if !upstream.ip().is_loopback() {
            return Err(RelayError::NotLoopback(upstream));
        }
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(RelayError::Bind)?;
        enlarge_buffers(&socket);
        let local_addr = socket.local_addr().map_err(RelayError::Bind)?;
        let counters = Arc::new(Counters::default());
        let front = Front {
            socket: Arc::new(socket),
            flows: HashMap::new(),
            spawner: FlowSpawner {
                upstream,
                client_to_server: self.client_to_server,
                server_to_client: self.server_to_client,
                seed: self.seed,
                counters: Arc::clone(&counters),
                tasks: JoinSet::new(),
            },
        };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(front.run(stopped));
        Ok(LossyRelay {
            local_addr,
            upstream,
            counters,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// The relay's public side: reads clients' datagrams and routes them to their flows.
struct Front {
    socket: Arc<UdpSocket>,
    /// Client → server intake of each client address.
    flows: HashMap<SocketAddr, Intake>,
    spawner: FlowSpawner,
}

impl Front {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut buf = vec![0; MAX_DATAGRAM];
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                Some(done) = self.spawner.tasks.join_next() => resume_panic(done),
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => self.route(&buf[..len], from).await,
                    Err(e) if is_transient(&e) => {}
                    // The public socket is unusable: nothing more can be relayed.
                    Err(_) => break,
                },
            }
        }
        self.flows.clear();
        self.spawner.tasks.abort_all();
        while let Some(done) = self.spawner.tasks.join_next().await {
            resume_panic(done);
        }
    }

    async fn route(&mut self, packet: &[u8], from: SocketAddr) {
        let intake = match self.flows.entry(from) {
            Entry::Occupied(flow) => flow.into_mut(),
            Entry::Vacant(slot) => match self.spawner.open(&self.socket, from).await {
                Ok(intake) => slot.insert(intake),
                // No socket for this client (descriptors exhausted?): drop the datagram; the
                // client's next one tries again.
                Err(_) => return,
            },
        };
        intake.offer(packet);
    }
}

/// Opens client flows: a socket towards the server and the three tasks that serve it.
struct FlowSpawner {
    upstream: SocketAddr,
    client_to_server: LinkConditions,
    server_to_client: LinkConditions,
    seed: u64,
    counters: Arc<Counters>,
    /// Every flow task; owned by the front task so that ending it ends them.
    tasks: JoinSet<()>,
}

impl FlowSpawner {
    /// Opens the flow of `client` and returns its client → server intake.
    async fn open(&mut self, front: &Arc<UdpSocket>, client: SocketAddr) -> io::Result<Intake> {
        let local: SocketAddr = if self.upstream.is_ipv4() {
            (Ipv4Addr::LOCALHOST, 0).into()
        } else {
            (Ipv6Addr::LOCALHOST, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        enlarge_buffers(&socket);
        socket.connect(self.upstream).await?;
        let socket = Arc::new(socket);

        let index = self.counters.clients.fetch_add(1, Ordering::AcqRel);
        let (to_server, to_server_queue) = Intake::new(
            self.client_to_server.clone(),
            Direction::ClientToServer,
            SplitMix64::for_stream(self.seed, 2 * index),
            Arc::clone(&self.counters),
        );
        let (to_client, to_client_queue) = Intake::new(
            self.server_to_client.clone(),
            Direction::ServerToClient,
            SplitMix64::for_stream(self.seed, 2 * index + 1),
            Arc::clone(&self.counters),
        );
        self.tasks.spawn(run_sender(
            to_server_queue,
            Sink::Upstream(Arc::clone(&socket)),
            Direction::ClientToServer,
            self.client_to_server.reorder_hold,
            Arc::clone(&self.counters),
        ));
        self.tasks.spawn(run_sender(
            to_client_queue,
            Sink::Client {
                socket: Arc::clone(front),
                addr: client,
            },
            Direction::ServerToClient,
            self.server_to_client.reorder_hold,
            Arc::clone(&self.counters),
        ));
        self.tasks.spawn(read_upstream(socket, to_client));
        Ok(to_server)
    }
}

/// Reads the server's replies for one client and hands them to that client's intake.
async fn read_upstream(socket: Arc<UdpSocket>, mut to_client: Intake) {
    let mut buf = vec![0; MAX_DATAGRAM];
    loop {
        match socket.recv(&mut buf).await {
            Ok(len) => to_client.offer(&buf[..len]),
            Err(e) if is_transient(&e) => {}
            Err(_) => return,
        }
    }
}

/// Errors a UDP socket reports for an earlier datagram (an ICMP port unreachable, typically
/// while the server is not up yet or already gone); the socket itself is fine.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

fn enlarge_buffers(socket: &UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    // Best effort: a smaller buffer only makes bursts likelier to overflow it.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
}

fn resume_panic(joined: Result<(), JoinError>) {
    if let Err(error) = joined
        && error.is_panic()
    {
        std::panic::resume_unwind(error.into_panic());
    }
}
