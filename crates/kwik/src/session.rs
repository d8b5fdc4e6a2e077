//! [`Session`] and [`Listener`]: the transport's, plus the lease that keeps the process-wide
//! runtime alive while they exist.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::global::Lease;

/// A KWIK session (see [`kwik_transport::Session`], which it dereferences to).
///
/// A session made by [`dial_addr`](crate::dial_addr) or accepted by a
/// [`listen_addr`](crate::listen_addr) listener holds a share of the process-wide runtime:
/// the runtime shuts down once the last such session and listener are dropped. Its streams
/// work while the session handle lives; keep it alongside them.
#[derive(Clone)]
pub struct Session {
    inner: kwik_transport::Session,
    _lease: Option<Arc<Lease>>,
}

impl Session {
    pub(crate) fn new(inner: kwik_transport::Session, lease: Option<Arc<Lease>>) -> Self {
        Self {
            inner,
            _lease: lease,
        }
    }

    pub(crate) fn with_lease(mut self, lease: Arc<Lease>) -> Self {
        self._lease = Some(lease);
        self
    }

    /// The transport session, without the lease.
    pub fn transport(&self) -> &kwik_transport::Session {
        &self.inner
    }
}

impl Deref for Session {
    type Target = kwik_transport::Session;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("client", &self.inner.is_client())
            .field("remote", &self.inner.remote_address())
            .field("global", &self._lease.is_some())
            .finish()
    }
}

/// A KWIK listener (see [`kwik_transport::Listener`], which it dereferences to); the sessions
/// it accepts share its lease on the process-wide runtime, if it has one.
pub struct Listener {
    inner: kwik_transport::Listener,
    lease: Option<Arc<Lease>>,
}

impl Listener {
    pub(crate) fn new(inner: kwik_transport::Listener, lease: Option<Arc<Lease>>) -> Self {
        Self { inner, lease }
    }

    pub(crate) fn with_lease(mut self, lease: Arc<Lease>) -> Self {
        self.lease = Some(lease);
        self
    }

    /// The next session whose handshake completed; `None` once the listener is closed.
    pub async fn accept(&self) -> Option<Session> {
        let session = self.inner.accept().await?;
        Some(Session::new(session, self.lease.clone()))
    }
}

impl Deref for Listener {
    type Target = kwik_transport::Listener;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.inner.local_addr())
            .field("global", &self.lease.is_some())
            .finish()
    }
}
