//! The workload, identical for every variant: connect the sessions, then drive one
//! bidirectional stream per session against an echo server and measure.
//!
//! A variant only says how to open a session and a stream ([`Target`]); everything measured
//! (pacing, latency, CPU, memory, tasks, errors) is done here, the same way for all of them.
//!
//! Echo mode is open loop: each session sends at `rate / connections` messages per second on a
//! fixed schedule, staggered across sessions, whatever the replies do. A message carries its
//! *intended* send time, and its latency is measured from that time, so a sender that falls
//! behind (a blocked write, a late timer) shows up in the latency instead of silently lowering
//! the load (no coordinated omission). Bulk mode drops the schedule: every session keeps
//! [`BULK_WINDOW`] messages in flight and latency runs from the actual write.
//!
//! Send times fall on the ticks of tokio's timer. Its wheel fires on whole-millisecond ticks
//! and rounds every deadline up to the next one, so a message scheduled between two ticks
//! leaves up to 1 ms after its intended time by construction: timer resolution, charged as
//! latency to every variant alike. The driver knows where the ticks fall ([`TimerOrigin`]) and
//! schedules each message on the last tick at or before its ideal time: the same moments as
//! before (a timer cannot fire between ticks), the same aggregate rate, but lateness now
//! measures the system rather than the timer's resolution. A runtime thread parked between two
//! ticks would still wake late (tokio parks for whole ticks); the [`TickPump`] wakes it on the
//! tick.
//!
//! Sending starts with a warm-up ([`Workload::warmup`]): the same load, echoed and checked, but
//! not measured. It covers what a fresh crowd of sessions does once, whatever the transport:
//! every session's stream opened and accepted, and the tail of a thousand handshakes'
//! post-handshake traffic. Latency, achieved rate and CPU are of the window after it; errors and
//! bytes count both.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use kwik::metrics::LatencyRecorder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::probe::{self, CpuWindow, PeakTracker};
use super::pump::TickPump;
use super::report::{Latency, Measured, Mode};

/// Messages each session keeps in flight in bulk mode: enough to fill the pipe on loopback,
/// few enough that memory stays bounded whatever the number of sessions.
pub(crate) const BULK_WINDOW: usize = 32;

/// How long after the send window replies may still arrive; later ones count as lost.
const DRAIN: Duration = Duration::from_secs(5);

/// How often the sampler reads RSS and alive tasks and refreshes the progress bar.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The byte every payload is filled with after its 8-byte timestamp, checked on return.
const FILL: u8 = b'k';

/// The read half of a stream.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a stream.
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// One bidirectional stream of a session, split.
pub(crate) struct Channel {
    pub(crate) reader: Reader,
    pub(crate) writer: Writer,
}

/// A server to measure against and the client side that reaches it.
pub(crate) trait Target: Clone + Send + Sync + 'static {
    /// A client session; dropping or closing it ends its streams.
    type Session: Send + Sync + 'static;

    /// Establishes one session (handshake included).
    fn connect(&self) -> impl Future<Output = anyhow::Result<Self::Session>> + Send + 'static;

    /// Opens the session's bidirectional stream for the echo workload.
    fn open(session: &Self::Session) -> impl Future<Output = anyhow::Result<Channel>> + Send + '_;

    /// Bytes written on every stream before the first message, to select the server's echo
    /// service; the server answers them with nothing and echoes what follows. Default: none,
    /// the server echoes from the first byte.
    fn service_line(&self) -> &'static [u8] {
        b""
    }

    /// Closes a session gracefully.
    fn close(session: Self::Session);

    /// Stops the embedded server, if any, and the client endpoints.
    fn shutdown(self) -> impl Future<Output = ()> + Send;
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Workload {
    pub(crate) mode: Mode,
    pub(crate) connections: usize,
    pub(crate) rate: u32,
    /// Measured sending time, after the warm-up.
    pub(crate) duration: Duration,
    /// Sending time before the measured window (echo and bulk).
    pub(crate) warmup: Duration,
    pub(crate) size: usize,
    /// Where the runtime's timer ticks fall.
    pub(crate) timer: TimerOrigin,
}

/// Counters shared by every session's task and read by the sampler.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    /// Echoes of messages sent in the measured window.
    measured: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

/// What one session's task hands back: its first error, if any.
type SessionOutcome = Option<String>;

/// Runs `workload` against `target` and measures it. `peak` was started before the target was
/// built, so the peak RSS covers the server too.
pub(crate) async fn run<T: Target>(
    variant: &str,
    target: T,
    workload: Workload,
    mut peak: PeakTracker,
    progress: &ProgressBar,
) -> anyhow::Result<Measured> {
    let runtime = tokio::runtime::Handle::current();
    let mut tasks_peak = runtime.metrics().num_alive_tasks();
    let rss_before = probe::current_rss_bytes().unwrap_or(0);
    let counters = Arc::new(Counters::default());
    // HDR histograms (3 significant digits, up to 60 s), sharded so sessions rarely contend.
    let latencies = Arc::new(LatencyRecorder::new());
    let mut first_error = None;

    // Every session at once, as a crowd of clients arriving together would.
    progress.set_message(format!("{variant}: connecting {}", workload.connections));
    let setup_started = Instant::now();
    let mut connecting = JoinSet::new();
    for _ in 0..workload.connections {
        connecting.spawn(target.connect());
    }
    let mut sessions = Vec::with_capacity(workload.connections);
    while let Some(joined) = connecting.join_next().await {
        match joined.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(session) => sessions.push(session),
            Err(err) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                first_error.get_or_insert_with(|| format!("connect: {err:#}"));
            }
        }
    }
    let setup_seconds = setup_started.elapsed().as_secs_f64();
    tasks_peak = tasks_peak.max(runtime.metrics().num_alive_tasks());
    peak.sample();
    let established = sessions.len();

    let mut measured = Measured {
        variant: variant.to_owned(),
        mode: workload.mode,
        connections: workload.connections,
        sessions: established,
        target_rate: 0.0,
        achieved_rate: 0.0,
        latency_us: Latency::default(),
        cpu_percent: 0.0,
        rss_peak_bytes: 0,
        rss_per_session_bytes: None,
        tasks_peak: 0,
        errors: 0,
        bytes: 0,
        setup_seconds,
        first_error: None,
    };

    if workload.mode == Mode::Connect {
        let rss_after = probe::current_rss_bytes().unwrap_or(0);
        measured.rss_per_session_bytes =
            (established > 0).then(|| rss_after.saturating_sub(rss_before) / established as u64);
        // Connecting is the whole workload: its CPU share is over the setup window.
        for session in sessions {
            T::close(session);
        }
        target.shutdown().await;
        measured.tasks_peak = tasks_peak;
        measured.rss_peak_bytes = peak.peak();
        measured.errors = counters.errors.load(Ordering::Relaxed);
        measured.first_error = first_error;
        return Ok(measured);
    }

    // A tick of the timer, a little ahead of now: every session's first deadline is after it.
    let grid = workload.timer.grid();
    let ahead = Instant::now().saturating_duration_since(grid).as_millis() + 2;
    let base = grid + TICK * u32::try_from(ahead).unwrap_or(u32::MAX);
    let window_start = base + workload.warmup;
    let end = window_start + workload.duration;
    let deadline = tokio::time::Instant::from_std(end + DRAIN);
    // Only a schedule needs the ticks on time; bulk mode has none.
    let pump = match workload.mode {
        Mode::Echo => Some(TickPump::start(workload.timer.tick_started(), TICK)?),
        _ => None,
    };
    let per_session_interval = match workload.mode {
        Mode::Echo => Some(Duration::from_secs_f64(
            workload.connections as f64 / f64::from(workload.rate),
        )),
        _ => None,
    };
    let mut running = JoinSet::new();
    for (index, session) in sessions.into_iter().enumerate() {
        let counters = Arc::clone(&counters);
        let latencies = Arc::clone(&latencies);
        let pacing = match per_session_interval {
            // Stagger the sessions over one interval so the aggregate rate is smooth.
            Some(interval) => Pacing::Open {
                interval,
                offset: interval.mul_f64(index as f64 / workload.connections as f64),
            },
            None => Pacing::Window(Arc::new(Semaphore::new(BULK_WINDOW))),
        };
        let size = workload.size;
        let service_line = target.service_line();
        running.spawn(async move {
            let outcome = drive::<T>(
                &session,
                service_line,
                pacing,
                size,
                Schedule {
                    base,
                    warmup: workload.warmup,
                    end,
                    deadline,
                },
                &counters,
                &latencies,
            )
            .await;
            (session, outcome)
        });
    }

    progress.set_message(variant.to_owned());
    let mut done = Vec::with_capacity(workload.connections);
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    let warmed_up = tokio::time::sleep_until(window_start.into());
    tokio::pin!(warmed_up);
    let mut cpu = None;
    loop {
        tokio::select! {
            () = &mut warmed_up, if cpu.is_none() => cpu = Some(CpuWindow::start()),
            joined = running.join_next() => match joined {
                Some(Ok((session, outcome))) => {
                    if let Some(err) = outcome {
                        first_error.get_or_insert(err);
                    }
                    done.push(session);
                }
                Some(Err(join)) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert_with(|| format!("session task: {join}"));
                }
                None => break,
            },
            _ = ticker.tick() => {
                peak.sample();
                tasks_peak = tasks_peak.max(runtime.metrics().num_alive_tasks());
                let elapsed = base.elapsed().min(workload.warmup + workload.duration);
                progress.set_position(elapsed.as_millis() as u64);
            }
        }
    }
    let window = window_start.elapsed().min(workload.duration).as_secs_f64();
    measured.cpu_percent = cpu.map_or(0.0, |cpu| cpu.percent());
    if let Some(pump) = pump {
        pump.stop().await;
    }
    // Sessions close once every session is done: the sessions that finish first would otherwise
    // tear down (CLOSE frames, path and task ends) while the others still send and measure
    // their last messages, and that teardown, not the steady state, made kwik's p99.9.
    for session in done {
        T::close(session);
    }
    progress.set_position((workload.warmup + workload.duration).as_millis() as u64);
    target.shutdown().await;
    peak.sample();

    let sent = counters.sent.load(Ordering::Relaxed);
    let received = counters.received.load(Ordering::Relaxed);
    let echoed_in_window = counters.measured.load(Ordering::Relaxed);
    measured.target_rate = match workload.mode {
        Mode::Echo => f64::from(workload.rate),
        _ => 0.0,
    };
    measured.achieved_rate = if window > 0.0 {
        echoed_in_window as f64 / window
    } else {
        0.0
    };
    measured.latency_us = Latency::from_stats(&latencies.snapshot());
    measured.rss_peak_bytes = peak.peak();
    measured.tasks_peak = tasks_peak;
    // A message sent and never echoed back is an error, as is every failure counted above.
    measured.errors = counters.errors.load(Ordering::Relaxed) + sent.saturating_sub(received);
    measured.bytes = counters.bytes.load(Ordering::Relaxed);
    measured.first_error = first_error;
    Ok(measured)
}

/// The resolution of tokio's timer.
const TICK: Duration = Duration::from_millis(1);

/// How far before a tick the send deadlines go, so that the timer, which rounds every deadline
/// up to a tick, puts each on its own tick whatever the uncertainty of [`TimerOrigin`].
const GRID_MARGIN: Duration = Duration::from_micros(100);

/// Where the ticks of the runtime's timer fall. tokio counts its 1 ms ticks from an instant it
/// takes while the runtime is built, and does not expose; the instants read just before and
/// just after `build()` bracket it, within the few tens of microseconds `build()` takes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimerOrigin {
    /// Read just before the runtime was built: no later than tick 0.
    before: Instant,
    /// Read just after: no earlier than tick 0.
    after: Instant,
}

impl TimerOrigin {
    /// Builds the runtime with `build`, noting where its timer's ticks fall.
    pub(crate) fn bracket<R>(build: impl FnOnce() -> R) -> (R, Self) {
        let before = Instant::now();
        let built = build();
        let after = Instant::now();
        (built, Self { before, after })
    }

    /// Send deadlines go on `grid + k ms`: each is at most [`GRID_MARGIN`] plus the bracket's
    /// width before tick `k`, so the timer rounds it up to tick `k` (as long as the bracket is
    /// narrower than a tick minus the margin; a wider one makes some deadlines fire a tick late,
    /// as without a grid: less precise, never wrong). Latency runs from these instants, a little
    /// before the tick: the figures can only be pessimistic by that much.
    fn grid(self) -> Instant {
        self.before.checked_sub(GRID_MARGIN).unwrap_or(self.before)
    }

    /// An instant a tick is known to have started by: where the tick pump aims.
    fn tick_started(self) -> Instant {
        self.after
    }
}

/// How a session schedules its messages.
enum Pacing {
    /// Open loop: one message every `interval`, the first at `offset` after the start.
    Open {
        interval: Duration,
        offset: Duration,
    },
    /// Closed loop: a message whenever fewer than the window's permits are in flight.
    Window(Arc<Semaphore>),
}

/// When a session sends.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    /// The start of sending; messages carry their send time relative to it.
    base: Instant,
    /// Messages sent earlier than this after `base` are not measured.
    warmup: Duration,
    /// The end of sending.
    end: Instant,
    /// Replies later than this count as lost.
    deadline: tokio::time::Instant,
}

/// One session: opens its stream, selects the echo service with `service_line` (if not
/// empty), sends and receives until the window ends, drains.
async fn drive<T: Target>(
    session: &T::Session,
    service_line: &[u8],
    pacing: Pacing,
    size: usize,
    schedule: Schedule,
    counters: &Counters,
    latencies: &LatencyRecorder,
) -> SessionOutcome {
    let Schedule {
        base,
        warmup,
        end,
        deadline,
    } = schedule;
    let mut first_error = None;
    let channel = match T::open(session).await {
        Ok(channel) => channel,
        Err(err) => {
            counters.errors.fetch_add(1, Ordering::Relaxed);
            return Some(format!("open stream: {err:#}"));
        }
    };
    let Channel { reader, mut writer } = channel;
    if !service_line.is_empty()
        && let Err(err) = writer.write_all(service_line).await
    {
        counters.errors.fetch_add(1, Ordering::Relaxed);
        return Some(format!("select the echo service: {err}"));
    }
    let window = match &pacing {
        Pacing::Window(permits) => Some(Arc::clone(permits)),
        Pacing::Open { .. } => None,
    };
    let send = tokio::time::timeout_at(
        deadline,
        send_loop(writer, pacing, size, base, end, counters),
    );
    let receive = tokio::time::timeout_at(
        deadline,
        receive_loop(reader, size, (base, warmup), window, latencies, counters),
    );
    let (sent, received) = tokio::join!(send, receive);
    for (what, result) in [("send", sent), ("receive", received)] {
        let message = match result {
            Ok(Ok(())) => continue,
            Ok(Err(err)) => format!("{what}: {err}"),
            Err(_) => format!("{what}: still running {DRAIN:?} after the window"),
        };
        counters.errors.fetch_add(1, Ordering::Relaxed);
        first_error.get_or_insert(message);
    }
    first_error
}

async fn send_loop(
    mut writer: Writer,
    pacing: Pacing,
    size: usize,
    base: Instant,
    end: Instant,
    counters: &Counters,
) -> std::io::Result<()> {
    let mut message = vec![FILL; size];
    match pacing {
        Pacing::Open { interval, offset } => {
            let mut ideal = base + offset;
            while ideal < end {
                // `base` is on a tick, so whole milliseconds from it are ticks too.
                let ticks = (ideal - base).as_millis();
                let intended = base + TICK * u32::try_from(ticks).unwrap_or(u32::MAX);
                tokio::time::sleep_until(intended.into()).await;
                // The intended time, not the actual one: lateness is part of the latency.
                stamp(&mut message, intended - base);
                writer.write_all(&message).await?;
                counters.sent.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(size as u64, Ordering::Relaxed);
                ideal += interval;
            }
        }
        Pacing::Window(permits) => {
            while Instant::now() < end {
                permits
                    .acquire()
                    .await
                    .map_err(std::io::Error::other)?
                    .forget();
                stamp(&mut message, base.elapsed());
                writer.write_all(&message).await?;
                counters.sent.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(size as u64, Ordering::Relaxed);
            }
        }
    }
    // FIN: the server finishes its side once it has echoed everything.
    writer.shutdown().await
}

/// Reads the echoes; `(base, warmup)`: messages sent before `base + warmup` are checked and
/// counted but not measured.
async fn receive_loop(
    mut reader: Reader,
    size: usize,
    (base, warmup): (Instant, Duration),
    window: Option<Arc<Semaphore>>,
    latencies: &LatencyRecorder,
    counters: &Counters,
) -> std::io::Result<()> {
    let mut message = vec![0; size];
    loop {
        let mut filled = 0;
        while filled < size {
            match reader.read(&mut message[filled..]).await? {
                0 if filled == 0 => return Ok(()),
                0 => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "stream ended inside a message",
                    ));
                }
                n => filled += n,
            }
        }
        let now = base.elapsed();
        let sent_at = read_stamp(&message)?;
        if sent_at >= warmup {
            latencies.record(now.saturating_sub(sent_at), true);
            counters.measured.fetch_add(1, Ordering::Relaxed);
        }
        counters.received.fetch_add(1, Ordering::Relaxed);
        counters.bytes.fetch_add(size as u64, Ordering::Relaxed);
        if let Some(permits) = &window {
            permits.add_permits(1);
        }
    }
}

/// Writes the send time (since the run's base) into the first 8 bytes.
fn stamp(message: &mut [u8], since_base: Duration) {
    let nanos = u64::try_from(since_base.as_nanos()).unwrap_or(u64::MAX);
    message[..8].copy_from_slice(&nanos.to_le_bytes());
}

/// Reads the send time back and checks that the rest of the echo is intact.
fn read_stamp(message: &[u8]) -> std::io::Result<Duration> {
    let (stamp, fill) = message.split_at(8);
    if fill.iter().any(|&b| b != FILL) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "echo differs from the message sent",
        ));
    }
    let mut nanos = [0; 8];
    nanos.copy_from_slice(stamp);
    Ok(Duration::from_nanos(u64::from_le_bytes(nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_and_corruption_is_caught() {
        let mut message = vec![FILL; 64];
        stamp(&mut message, Duration::from_micros(1234));
        assert_eq!(read_stamp(&message).unwrap(), Duration::from_micros(1234));
        message[40] = 0;
        assert!(read_stamp(&message).is_err());
    }
}
