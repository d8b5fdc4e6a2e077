//! `--secondary`: each session's client is asked to add a path to every secondary server, and
//! `FILE` downloads are split over the paths it added, by relaying part lines through the client.
//!
//! [`Cluster`] is the server-wide list of secondaries with their counters; [`Secondaries`] is one
//! session's view: the path additions in flight, then the paths that were added and are not
//! known to be gone. A secondary is an ordinary `kwik serve` with the same files: it answers the
//! relayed part line like any other stream (docs/serve.md, "Several servers").

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kwik_transport::{AddPathError, PathId, RelayError, Session};
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Longest secondary address: ADD_PATH carries at most 262 bytes of `host:port`.
pub(crate) const MAX_ADDRESS_LEN: usize = 262;

/// How long a download waits for the session's path additions still in flight before it is
/// split over the paths added so far. A client answers ADD_PATH once its dial is done, within an
/// RTT of a handshake; an unreachable secondary would otherwise hold every first download of a
/// session for the client's whole handshake timeout.
pub(crate) const SETTLE_TIMEOUT: Duration = Duration::from_secs(1);

/// Checks a `--secondary` value: `host:port`, non-empty host, a port number, at most
/// [`MAX_ADDRESS_LEN`] bytes. The client resolves the host, so names are allowed.
pub(crate) fn parse_address(value: &str) -> Result<String, String> {
    if value.len() > MAX_ADDRESS_LEN {
        return Err(format!("longer than {MAX_ADDRESS_LEN} bytes"));
    }
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err("expected host:port".to_owned());
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err("expected host:port".to_owned());
    }
    match port.parse::<u16>() {
        Ok(port) if port != 0 => Ok(value.to_owned()),
        _ => Err(format!("invalid port {port:?}")),
    }
}

/// The server-wide secondaries and their counters.
#[derive(Debug)]
pub(crate) struct Cluster {
    secondaries: Vec<Secondary>,
}

#[derive(Debug)]
struct Secondary {
    address: String,
    added: AtomicU64,
    failed: AtomicU64,
    lost: AtomicU64,
    parts: AtomicU64,
    bytes: AtomicU64,
}

/// One secondary in `/api/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct SecondaryStatus {
    /// The address given with `--secondary`.
    pub(crate) address: String,
    /// Paths the clients added to it, since the start.
    pub(crate) added: u64,
    /// Path additions that failed (client refused, dial failed, no answer); a session that
    /// closed first is not counted.
    pub(crate) failed: u64,
    /// Added paths found gone when a part was relayed to them.
    pub(crate) lost: u64,
    /// Paths to it open now: added, in a live session, not found gone.
    pub(crate) live: u64,
    /// Download parts relayed to it.
    pub(crate) parts: u64,
    /// File bytes of those parts.
    pub(crate) bytes: u64,
}

impl Cluster {
    /// The secondaries at `addresses` (already checked by [`parse_address`]).
    pub(crate) fn new(addresses: impl IntoIterator<Item = String>) -> Self {
        Self {
            secondaries: addresses
                .into_iter()
                .map(|address| Secondary {
                    address,
                    added: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                    lost: AtomicU64::new(0),
                    parts: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Whether no secondary is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.secondaries.is_empty()
    }

    /// Every secondary's counters; `live` counts the paths of `sessions`.
    pub(crate) fn status<'a>(
        &self,
        sessions: impl IntoIterator<Item = &'a Secondaries>,
    ) -> Vec<SecondaryStatus> {
        let mut live = vec![0u64; self.secondaries.len()];
        for session in sessions {
            for target in session.live() {
                live[target.index] += 1;
            }
        }
        self.secondaries
            .iter()
            .zip(live)
            .map(|(s, live)| SecondaryStatus {
                address: s.address.clone(),
                added: s.added.load(Ordering::Relaxed),
                failed: s.failed.load(Ordering::Relaxed),
                lost: s.lost.load(Ordering::Relaxed),
                live,
                parts: s.parts.load(Ordering::Relaxed),
                bytes: s.bytes.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// A path of one session to a secondary: where to relay, and whose counters to update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    /// The path id the client gave the path.
    pub(crate) path: PathId,
    /// The secondary's position in the [`Cluster`].
    index: usize,
}

/// One session's paths to the secondaries.
pub(crate) struct Secondaries {
    cluster: Arc<Cluster>,
    session: Session,
    live: Mutex<Vec<Target>>,
    /// Path additions still in flight.
    pending: watch::Sender<usize>,
}

impl Secondaries {
    /// Asks `session`'s client to add a path to every secondary of `cluster`, concurrently, in
    /// tasks of `tasks` that end with the additions or when `stop` is cancelled. A failed
    /// addition is logged and counted; the session goes on without that path.
    pub(crate) fn start(
        cluster: Arc<Cluster>,
        session: Session,
        stop: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Arc<Self> {
        let count = cluster.secondaries.len();
        let this = Arc::new(Self {
            cluster,
            session,
            live: Mutex::new(Vec::with_capacity(count)),
            pending: watch::Sender::new(count),
        });
        for index in 0..count {
            let this = this.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let address = &this.cluster.secondaries[index].address;
                let result = tokio::select! {
                    () = stop.cancelled() => None,
                    result = this.session.add_path(address) => Some(result),
                };
                this.added(index, result);
            });
        }
        this
    }

    fn added(&self, index: usize, result: Option<Result<PathId, AddPathError>>) {
        let secondary = &self.cluster.secondaries[index];
        match result {
            Some(Ok(path)) => {
                secondary.added.fetch_add(1, Ordering::Relaxed);
                info!(secondary = %secondary.address, path, "client added a path");
                self.lock().push(Target { path, index });
            }
            // The session ended first: nothing failed, there is just nobody left to serve.
            Some(Err(AddPathError::SessionClosed(_))) | None => {}
            Some(Err(err)) => {
                secondary.failed.fetch_add(1, Ordering::Relaxed);
                warn!(secondary = %secondary.address, error = %err, "client could not add a path");
            }
        }
        self.pending.send_modify(|pending| *pending -= 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Target>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The paths a download can be split over: waits for the additions in flight (at most
    /// [`SETTLE_TIMEOUT`]), then returns the paths added and not known to be gone.
    pub(crate) async fn targets(&self) -> Vec<Target> {
        let mut pending = self.pending.subscribe();
        let _ = tokio::time::timeout(SETTLE_TIMEOUT, pending.wait_for(|n| *n == 0)).await;
        self.live()
    }

    fn live(&self) -> Vec<Target> {
        self.lock().clone()
    }

    /// Relays `line`, the request for a part of `len` file bytes, to `target` on client
    /// stream `stream_id`. Returns false if the path is gone (it is then forgotten) or the relay
    /// failed otherwise: the caller serves the part itself.
    pub(crate) fn relay(&self, target: Target, stream_id: u64, line: &str, len: u64) -> bool {
        let secondary = &self.cluster.secondaries[target.index];
        match self
            .session
            .relay(target.path, stream_id, line.as_bytes().to_vec())
        {
            Ok(()) => {
                secondary.parts.fetch_add(1, Ordering::Relaxed);
                secondary.bytes.fetch_add(len, Ordering::Relaxed);
                true
            }
            Err(RelayError::UnknownPath(_)) => {
                secondary.lost.fetch_add(1, Ordering::Relaxed);
                self.lock().retain(|t| *t != target);
                info!(secondary = %secondary.address, path = target.path, "path gone");
                false
            }
            Err(err) => {
                debug!(secondary = %secondary.address, error = %err, "relay failed");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        assert_eq!(parse_address("127.0.0.1:4433").unwrap(), "127.0.0.1:4433");
        assert!(parse_address("[::1]:4433").is_ok());
        assert!(parse_address("kwik.example:4433").is_ok());
        for bad in [
            "",
            "127.0.0.1",
            ":4433",
            "host:",
            "host:0",
            "host:70000",
            "a b:1",
        ] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
        let long = format!("{}:1", "h".repeat(MAX_ADDRESS_LEN));
        assert!(parse_address(&long).is_err());
    }

    #[test]
    fn status_counts_live_paths_per_secondary() {
        let cluster = Cluster::new(["a:1".to_owned(), "b:2".to_owned()]);
        assert!(!cluster.is_empty());
        let status = cluster.status([]);
        assert_eq!(status.len(), 2);
        assert_eq!(status[1].address, "b:2");
        assert_eq!(
            (status[0].added, status[0].live, status[0].parts),
            (0, 0, 0)
        );
    }
}
