//! The process-wide runtime behind [`dial_addr`] and [`listen_addr`]: created at the first
//! call, shared by every session and listener made that way, shut down when the last is gone.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use kwik_config::PerformanceConfig;
use kwik_pool::{ShutdownReport, WorkerPool};

use crate::error::{DialError, ListenError, RuntimeError};
use crate::runtime::Runtime;
use crate::session::{Listener, Session};
use crate::tls::{Identity, Trust};

/// Environment variable naming the configuration file of the process-wide runtime.
pub const CONFIG_ENV: &str = "KWIK_CONFIG";

/// The file read when [`CONFIG_ENV`] is not set, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "performance.toml";

/// The current process-wide runtime, if any session or listener still holds it.
static CURRENT: Mutex<Weak<Lease>> = Mutex::new(Weak::new());

/// Serialises creation, so that concurrent first calls build one runtime, not several.
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One share of the process-wide runtime; the runtime shuts down with the last share.
pub(crate) struct Lease {
    runtime: Runtime,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.runtime.shutdown_in_background();
    }
}

fn current() -> Option<Arc<Lease>> {
    CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .upgrade()
}

/// The current lease, or a new runtime built from the process's configuration.
async fn acquire() -> Result<Arc<Lease>, RuntimeError> {
    if let Some(lease) = current() {
        return Ok(lease);
    }
    let _creating = CREATING.lock().await;
    if let Some(lease) = current() {
        return Ok(lease);
    }
    let runtime = Runtime::from_config(&process_config()?).await?;
    let lease = Arc::new(Lease { runtime });
    *CURRENT.lock().unwrap_or_else(PoisonError::into_inner) = Arc::downgrade(&lease);
    Ok(lease)
}

/// `$KWIK_CONFIG`, else `./performance.toml` if present, else the defaults; then the
/// `KWIK_<SECTION>_<KEY>` environment overrides.
fn process_config() -> Result<PerformanceConfig, RuntimeError> {
    let config = match std::env::var_os(CONFIG_ENV) {
        Some(path) => PerformanceConfig::load(path)?,
        None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
            PerformanceConfig::load(DEFAULT_CONFIG_FILE)?
        }
        None => PerformanceConfig::default(),
    };
    Ok(config.with_env_overrides()?)
}

/// Dials `addr` on the process-wide runtime, creating it if no session or listener holds one.
///
/// The runtime's configuration comes from `$KWIK_CONFIG`, else `./performance.toml`, else the
/// defaults, with `KWIK_<SECTION>_<KEY>` overrides.
///
/// # Errors
///
/// [`DialError::Runtime`] if the runtime could not be built; otherwise as
/// [`Runtime::dial`](crate::Runtime::dial).
pub async fn dial_addr(addr: SocketAddr, trust: &Trust) -> Result<Session, DialError> {
    let lease = acquire().await?;
    let session = lease.runtime.dial(addr, trust).await?;
    Ok(session.with_lease(lease))
}

/// Listens on `addr` on the process-wide runtime, creating it if needed (see [`dial_addr`]).
/// The listener and the sessions it accepts keep the runtime alive.
///
/// # Errors
///
/// [`ListenError::Runtime`] if the runtime could not be built; otherwise as
/// [`Runtime::listen`](crate::Runtime::listen).
pub async fn listen_addr(addr: SocketAddr, identity: &Identity) -> Result<Listener, ListenError> {
    let lease = acquire().await?;
    let listener = lease.runtime.listen(addr, identity)?;
    Ok(listener.with_lease(lease))
}

/// The worker pool of the process-wide runtime while one lives (for monitoring: its
/// [`stats`](WorkerPool::stats)); `None` when no session or listener holds one.
pub fn global_pool() -> Option<WorkerPool> {
    current().map(|lease| lease.runtime.pool().clone())
}

/// The process-wide runtime while one lives.
pub fn global_runtime() -> Option<Runtime> {
    current().map(|lease| lease.runtime.clone())
}

/// Shuts the process-wide runtime down now, whatever still holds it, and forgets it: the next
/// [`dial_addr`] or [`listen_addr`] creates a fresh one. Sessions of the old runtime see their
/// paths fail. Returns `None` when there was none.
pub async fn close_global_pool(deadline: Duration) -> Option<ShutdownReport> {
    let lease = {
        let mut slot = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
        let lease = slot.upgrade();
        *slot = Weak::new();
        lease
    }?;
    Some(lease.runtime.shutdown(deadline).await)
}
