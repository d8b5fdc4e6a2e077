//! The batcher (seed 002's `BatchProcessor`): items flushed to a sink by size or by delay.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{BatcherError, BuildError, SubmitError, TrySubmitError};

const DEFAULT_MAX_SIZE: usize = 100;
const DEFAULT_MAX_DELAY: Duration = Duration::from_millis(10);

/// Collects items and hands them to an async sink in batches.
///
/// A batch is flushed when it reaches `max_size` items, when `max_delay` has passed since its
/// first item, and on [`close`](Self::close), which flushes whatever is left. The intake is a
/// bounded queue: while the sink is busy, [`push`](Self::push) waits once `capacity` items are
/// waiting. Clones share one batcher.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use kwik_pool::Batcher;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let written = Arc::new(Mutex::new(Vec::new()));
/// let sink = written.clone();
/// let batcher = Batcher::builder()
///     .max_size(3)
///     .max_delay(Duration::from_millis(50))
///     .build(move |batch: Vec<u32>| {
///         let sink = sink.clone();
///         async move { sink.lock().unwrap().push(batch) }
///     })
///     .unwrap();
/// for item in 0..7 {
///     batcher.push(item).await.unwrap();
/// }
/// batcher.close().await.unwrap();
/// assert_eq!(*written.lock().unwrap(), vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
/// # }
/// ```
pub struct Batcher<T> {
    tx: mpsc::Sender<T>,
    shared: Arc<BatcherShared>,
}

struct BatcherShared {
    counters: Counters,
    /// Taken by the first `close`.
    close: Mutex<Option<(oneshot::Sender<()>, JoinHandle<()>)>>,
}

/// A snapshot of a [`Batcher`]'s counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BatcherStats {
    /// Items handed to the sink.
    pub items: u64,
    /// Batches flushed because they reached `max_size`.
    pub flushed_by_size: u64,
    /// Batches flushed because `max_delay` passed.
    pub flushed_by_delay: u64,
    /// Batches flushed by `close` (at most one).
    pub flushed_on_close: u64,
}

#[derive(Default)]
struct Counters {
    items: AtomicU64,
    by_size: AtomicU64,
    by_delay: AtomicU64,
    on_close: AtomicU64,
}

/// Settings for a [`Batcher`]; see [`Batcher::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct BatcherBuilder {
    max_size: usize,
    max_delay: Duration,
    capacity: Option<usize>,
    runtime: Option<Handle>,
}

impl Batcher<()> {
    /// Starts building a batcher.
    ///
    /// # Examples
    ///
    /// See [`Batcher`].
    pub fn builder() -> BatcherBuilder {
        BatcherBuilder {
            max_size: DEFAULT_MAX_SIZE,
            max_delay: DEFAULT_MAX_DELAY,
            capacity: None,
            runtime: None,
        }
    }
}

impl BatcherBuilder {
    /// Items per batch at most; a full batch is flushed at once. Default: 100.
    ///
    /// # Examples
    ///
    /// See [`Batcher`].
    pub fn max_size(mut self, items: usize) -> Self {
        self.max_size = items;
        self
    }

    /// Longest an item waits for its batch to fill, from the batch's first item. Default: 10 ms.
    ///
    /// # Examples
    ///
    /// See [`Batcher`].
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Items the intake queue holds while the sink is busy. Default: `max_size`.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let batcher = kwik_pool::Batcher::builder()
    ///     .capacity(1_000)
    ///     .build(|batch: Vec<u8>| async move { drop(batch) })
    ///     .unwrap();
    /// batcher.close().await.unwrap();
    /// # }
    /// ```
    pub fn capacity(mut self, items: usize) -> Self {
        self.capacity = Some(items);
        self
    }

    /// The runtime the batcher's task runs on. Default: the runtime `build()` is called from.
    ///
    /// # Examples
    ///
    /// See [`PoolBuilder::runtime`](crate::PoolBuilder::runtime).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Validates the settings and starts the batcher's task, which calls `sink` with each batch
    /// (one call at a time).
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first bad value, or [`BuildError::NoRuntime`].
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::{Batcher, BuildError};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let err = Batcher::builder().max_size(0).build(|b: Vec<u8>| async move { drop(b) });
    /// assert_eq!(err.unwrap_err(), BuildError::ZeroMaxSize);
    /// # }
    /// ```
    pub fn build<T, F, Fut>(self, sink: F) -> Result<Batcher<T>, BuildError>
    where
        T: Send + 'static,
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if self.max_size == 0 {
            return Err(BuildError::ZeroMaxSize);
        }
        if self.max_delay.is_zero() {
            return Err(BuildError::ZeroMaxDelay);
        }
        let capacity = self.capacity.unwrap_or(self.max_size);
        if capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        let runtime = match self.runtime {
            Some(handle) => handle,
            None => Handle::try_current().map_err(|_| BuildError::NoRuntime)?,
        };
        let (tx, rx) = mpsc::channel(capacity);
        let (close_tx, close_rx) = oneshot::channel();
        let shared = Arc::new(BatcherShared {
            counters: Counters::default(),
            close: Mutex::new(None),
        });
        let flusher = Flusher {
            sink,
            max_size: self.max_size,
            shared: Arc::clone(&shared),
        };
        let task = runtime.spawn(flusher.run(rx, close_rx, self.max_delay));
        *shared.close.lock().unwrap_or_else(PoisonError::into_inner) = Some((close_tx, task));
        Ok(Batcher { tx, shared })
    }
}

impl<T: Send + 'static> Batcher<T> {
    /// Adds an item, waiting while the intake queue is full.
    ///
    /// # Errors
    ///
    /// [`SubmitError::Closed`] with the item after [`close`](Self::close) (or if the sink
    /// panicked).
    ///
    /// # Examples
    ///
    /// See [`Batcher`].
    pub async fn push(&self, item: T) -> Result<(), SubmitError<T>> {
        self.tx
            .send(item)
            .await
            .map_err(|rejected| SubmitError::Closed(rejected.0))
    }

    /// Adds an item without waiting.
    ///
    /// # Errors
    ///
    /// `Full` with the item while the intake queue is full, `Closed` after
    /// [`close`](Self::close).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let batcher = kwik_pool::Batcher::builder()
    ///     .capacity(1)
    ///     .build(|batch: Vec<u8>| async move { drop(batch) })
    ///     .unwrap();
    /// batcher.try_push(1).unwrap();
    /// // The batcher's task has not run yet (same thread): the one slot is taken.
    /// assert!(batcher.try_push(2).unwrap_err().is_full());
    /// batcher.close().await.unwrap();
    /// # }
    /// ```
    pub fn try_push(&self, item: T) -> Result<(), TrySubmitError<T>> {
        self.tx.try_send(item).map_err(|rejected| match rejected {
            mpsc::error::TrySendError::Full(item) => SubmitError::Full(item),
            mpsc::error::TrySendError::Closed(item) => SubmitError::Closed(item),
        })
    }

    /// Stops intake, flushes every item already pushed, and waits for the sink to finish.
    /// Later calls return at once.
    ///
    /// # Errors
    ///
    /// [`BatcherError::SinkPanicked`] if the sink panicked.
    ///
    /// # Examples
    ///
    /// See [`Batcher`].
    pub async fn close(&self) -> Result<BatcherStats, BatcherError> {
        let close = self
            .shared
            .close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((signal, task)) = close {
            // The task may already be gone (sink panic); the join below reports it.
            let _ = signal.send(());
            task.await.map_err(|_| BatcherError::SinkPanicked)?;
        }
        Ok(self.stats())
    }

    /// A snapshot of the batcher's counters.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let batcher = kwik_pool::Batcher::builder()
    ///     .max_size(2)
    ///     .build(|batch: Vec<u8>| async move { drop(batch) })
    ///     .unwrap();
    /// batcher.push(1).await.unwrap();
    /// let stats = batcher.close().await.unwrap();
    /// assert_eq!((stats.items, stats.flushed_on_close), (1, 1));
    /// # }
    /// ```
    pub fn stats(&self) -> BatcherStats {
        let c = &self.shared.counters;
        BatcherStats {
            items: c.items.load(Ordering::Relaxed),
            flushed_by_size: c.by_size.load(Ordering::Relaxed),
            flushed_by_delay: c.by_delay.load(Ordering::Relaxed),
            flushed_on_close: c.on_close.load(Ordering::Relaxed),
        }
    }
}

impl<T> Clone for Batcher<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for Batcher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("closed", &self.tx.is_closed())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Flush {
    Size,
    Delay,
    Close,
}

struct Flusher<F> {
    sink: F,
    max_size: usize,
    shared: Arc<BatcherShared>,
}

impl<F> Flusher<F> {
    async fn run<T, Fut>(
        mut self,
        mut rx: mpsc::Receiver<T>,
        mut close: oneshot::Receiver<()>,
        max_delay: Duration,
    ) where
        F: FnMut(Vec<T>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut batch = Vec::with_capacity(self.max_size);
        let mut closing = false;
        let deadline = tokio::time::sleep(max_delay);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                biased;
                // Every handle dropped counts as a close too.
                _ = &mut close, if !closing => {
                    // Refuses new pushes; what is queued still comes out of `recv`.
                    rx.close();
                    closing = true;
                }
                received = rx.recv() => match received {
                    Some(item) => {
                        if batch.is_empty() {
                            deadline.as_mut().reset(Instant::now() + max_delay);
                        }
                        batch.push(item);
                        if batch.len() >= self.max_size {
                            batch = self.flush(batch, Flush::Size).await;
                        }
                    }
                    None => {
                        if !batch.is_empty() {
                            self.flush(batch, Flush::Close).await;
                        }
                        return;
                    }
                },
                () = &mut deadline, if !batch.is_empty() => {
                    batch = self.flush(batch, Flush::Delay).await;
                }
            }
        }
    }

    /// Hands `batch` to the sink and returns an empty batch to fill next.
    async fn flush<T, Fut>(&mut self, batch: Vec<T>, reason: Flush) -> Vec<T>
    where
        F: FnMut(Vec<T>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let c = &self.shared.counters;
        c.items.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let counter = match reason {
            Flush::Size => &c.by_size,
            Flush::Delay => &c.by_delay,
            Flush::Close => &c.on_close,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (self.sink)(batch).await;
        Vec::with_capacity(self.max_size)
    }
}
