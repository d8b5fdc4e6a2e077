//! The dispatch seam between a path reader and whatever processes its packets.
//!
//! Every received packet becomes a [`PacketJob`]; the path reader hands it to the session's
//! [`Executor`] under the path id as ordering key and awaits the returned [`Submit`] future, so an
//! executor that is full pushes back on the reader (and through QUIC flow control, on the peer).
//! kwik-transport ships [`InlineExecutor`] and [`SpawnExecutor`]; the `kwik` facade plugs its
//! sharded worker pool in (ordered per key, bounded).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::error::ExecutorClosed;
use crate::path::PathShared;
use crate::session::SessionInner;

/// One received packet (without its length prefix) and the path it came from.
///
/// Running it decodes the frames and applies them to the session; it never blocks and never
/// awaits, so any executor can run it anywhere. Moving it costs three words.
pub struct PacketJob {
    pub(crate) packet: Bytes,
    /// Position of the packet on its path (RELAY_DATA frames are applied in this order).
    pub(crate) seq: u64,
    pub(crate) session: Arc<SessionInner>,
    pub(crate) path: Arc<PathShared>,
}

impl PacketJob {
    /// Decodes and applies the packet. A protocol error closes the path with the documented
    /// CLOSE code; nothing is returned because there is nobody to return it to.
    pub fn run(self) {
        self.session
            .handle_packet(&self.path, self.packet, self.seq);
    }

    /// Size of the packet body in bytes.
    pub fn len(&self) -> usize {
        self.packet.len()
    }

    /// Whether the packet body is empty (never true for a job built by a path reader).
    pub fn is_empty(&self) -> bool {
        self.packet.is_empty()
    }
}

impl fmt::Debug for PacketJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PacketJob")
            .field("path", &self.path.id())
            .field("len", &self.packet.len())
            .finish()
    }
}

/// Runs packet jobs. `key` identifies the path the packet came on, and is unique in the process
/// for the path's whole life (unlike the path id, which restarts at 0 in every session): an
/// executor that keeps jobs of one key in order gives the receiver the in-order processing a
/// QUIC stream already provides, and can spread keys over its workers as they are.
///
/// The protocol state is offset-keyed and credit is monotonic, so an unordered executor
/// ([`SpawnExecutor`]) is still correct for stream data; see docs/protocol.md, "Executors".
pub trait Executor: Send + Sync + 'static {
    /// Submits `job` under `key`. The returned future completes once the executor has accepted
    /// the job (a bounded executor waits for room: back-pressure) or fails when it is closed.
    fn submit(&self, key: u64, job: PacketJob) -> Submit<'_>;
}

/// The future returned by [`Executor::submit`]: either already complete (no allocation) or a
/// boxed future for executors that must wait for capacity.
pub struct Submit<'a>(SubmitInner<'a>);

enum SubmitInner<'a> {
    Ready(Option<Result<(), ExecutorClosed>>),
    Pending(Pin<Box<dyn Future<Output = Result<(), ExecutorClosed>> + Send + 'a>>),
}

impl<'a> Submit<'a> {
    /// A submission that has already completed with `result`.
    pub fn ready(result: Result<(), ExecutorClosed>) -> Self {
        Self(SubmitInner::Ready(Some(result)))
    }

    /// A submission completing when `fut` does.
    pub fn from_future(fut: impl Future<Output = Result<(), ExecutorClosed>> + Send + 'a) -> Self {
        Self(SubmitInner::Pending(Box::pin(fut)))
    }
}

impl Future for Submit<'_> {
    type Output = Result<(), ExecutorClosed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            SubmitInner::Ready(result) => Poll::Ready(result.take().unwrap_or(Err(ExecutorClosed))),
            SubmitInner::Pending(fut) => fut.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for Submit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Submit")
    }
}

/// Runs each job on the path reader task itself: in order, no hand-off, and the reader reads
/// the next packet only once this one is applied (natural back-pressure). The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct InlineExecutor;

impl Executor for InlineExecutor {
    fn submit(&self, _key: u64, job: PacketJob) -> Submit<'_> {
        job.run();
        Submit::ready(Ok(()))
    }
}

/// Spawns one tokio task per packet: the seed's "before", kept as a baseline.
///
/// Knowingly **unordered** (two packets of one path may run concurrently and finish in any
/// order) and **unbounded** in tasks (memory stays bounded by the stream windows). Must be used
/// inside a tokio runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpawnExecutor;

impl Executor for SpawnExecutor {
    fn submit(&self, _key: u64, job: PacketJob) -> Submit<'_> {
        drop(tokio::spawn(async move { job.run() }));
        Submit::ready(Ok(()))
    }
}
