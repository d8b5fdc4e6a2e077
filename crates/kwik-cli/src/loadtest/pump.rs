//! Wakes the runtime's I/O driver on every tick of tokio's timer while the sessions send, so
//! that messages due on a tick leave on that tick.
//!
//! tokio's timer has 1 ms ticks, and a runtime thread that parks computes its timeout in whole
//! ticks from the *current* tick: a thread parking `f` into tick `k - 1` sleeps a full tick and
//! fires tick `k`'s timers `f` late. Under the echo load the threads park right after serving a
//! tick's burst, so every burst was late by about the time the previous one took to serve,
//! charged as latency to every variant alike. This thread sleeps (with a 1 ns timer slack) until
//! just after each tick and sends one byte to a datagram socket the runtime's driver watches:
//! the parked thread wakes on time and fires the tick's timers. Its CPU, and that of the
//! wake-ups, is the process's, so it is counted in every variant's CPU figure.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long after a tick's start the driver is woken: the tick must have begun when it looks.
const AFTER_TICK: Duration = Duration::from_micros(20);

/// The pump thread and the task draining its bytes: [`stop`](Self::stop) them, or drop this.
pub(crate) struct TickPump {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    drain: Option<tokio::task::JoinHandle<()>>,
    /// Wake-ups the runtime has received.
    delivered: Arc<AtomicU64>,
}

impl TickPump {
    /// Starts waking the driver of the current runtime at `first_tick + AFTER_TICK + k × tick`.
    pub(crate) fn start(first_tick: Instant, tick: Duration) -> io::Result<Self> {
        let (pump_end, driver_end) = UnixDatagram::pair()?;
        pump_end.set_nonblocking(true)?;
        driver_end.set_nonblocking(true)?;
        let driver_end = tokio::net::UnixDatagram::from_std(driver_end)?;
        let delivered = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&delivered);
        let drain = tokio::spawn(async move {
            let mut buf = [0_u8; 64];
            while driver_end.recv(&mut buf).await.is_ok() {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("kwik-loadtest-tick-pump".to_owned())
            .spawn(move || {
                // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer slack.
                unsafe {
                    libc::prctl(libc::PR_SET_TIMERSLACK, 1_u64, 0_u64, 0_u64, 0_u64);
                }
                let mut next = first_tick + AFTER_TICK;
                while !stopping.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        // Fell behind (the machine is starved): skip to the next tick ahead.
                        let behind = (now - next).as_nanos() / tick.as_nanos();
                        next += tick * u32::try_from(behind).unwrap_or(u32::MAX);
                    }
                    // A full socket only means the driver has not caught up: nothing to add.
                    let _ = pump_end.send(&[0]);
                    next += tick;
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
            drain: Some(drain),
            delivered,
        })
    }

    /// Wake-ups the runtime has received so far (the tests read it).
    #[cfg_attr(not(test), allow(dead_code))]
    fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Stops the thread and the drain task, and waits for the task to end.
    pub(crate) async fn stop(mut self) {
        self.halt();
        if let Some(drain) = self.drain.take() {
            let _ = drain.await;
        }
    }

    /// Stops the thread (it ends within a tick: the wait is that short) and the drain task.
    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(drain) = &self.drain {
            drain.abort();
        }
    }
}

impl Drop for TickPump {
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wakes_the_runtime_every_tick_until_stopped() {
        let pump = TickPump::start(Instant::now(), Duration::from_millis(1)).unwrap();
        // Bounded: 10 wake-ups take 10 ms; the bound only guards against a hang.
        let mut waits = 0;
        while pump.delivered() < 10 {
            assert!(
                waits < 10_000,
                "the pump delivered {} wake-ups",
                pump.delivered()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
            waits += 1;
        }
        // Returns once the thread has ended and the drain task is gone.
        pump.stop().await;
    }
}
