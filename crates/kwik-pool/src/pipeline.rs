//! The streaming pipeline (seed 002's `StreamingProcessor`): chunks through named stages.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{BoxFuture, Either, TryFutureExt};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::error::{BuildError, PipelineError};

type BoxError = Box<dyn Error + Send + Sync>;
type StageFn<A, B> =
    Arc<dyn Fn(Vec<A>) -> BoxFuture<'static, Result<Vec<B>, BoxError>> + Send + Sync>;
/// A chunk with its input index, or the error that stopped the run.
type Msg<T> = Result<(usize, Vec<T>), PipelineError>;
/// Spawns the stages built so far between an input channel and the returned output channel.
type Connect<In, Out> =
    Arc<dyn Fn(mpsc::Receiver<Msg<In>>, &Run) -> mpsc::Receiver<Msg<Out>> + Send + Sync>;

const DEFAULT_CHUNK_SIZE: usize = 1024;
/// Two chunks between stages: one being handed over while the next is ready.
const DEFAULT_BUFFER: usize = 2;
const DEFAULT_MAX_RETRIES: u32 = 2;
const DEFAULT_BACKOFF: Duration = Duration::from_millis(10);

/// A chain of named stages run over a stream of items, chunk by chunk.
///
/// Input items are grouped in chunks of `chunk_size`; each chunk goes through the stages in
/// order. A stage runs up to `parallelism` chunks at once (each on its own tokio task) and hands
/// them on in input order; channels between stages hold `buffer` chunks, so at most
/// [`max_chunks_in_flight`](Self::max_chunks_in_flight) chunks exist at any time whatever the
/// input length. A chunk whose stage fails is retried `max_retries` times with a doubling backoff;
/// after the last attempt the output yields a [`PipelineError`] naming the stage and the chunk
/// index, then ends.
///
/// # Examples
///
/// ```
/// use std::convert::Infallible;
/// use futures_util::{StreamExt, stream};
/// use kwik_pool::Pipeline;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let pipeline = Pipeline::builder()
///     .chunk_size(100)
///     .stage("double", 4, |chunk: Vec<u64>| async move {
///         Ok::<_, Infallible>(chunk.into_iter().map(|x| x * 2).collect())
///     })
///     .stage("describe", 1, |chunk: Vec<u64>| async move {
///         Ok::<_, Infallible>(chunk.into_iter().map(|x| format!("#{x}")).collect())
///     })
///     .build()
///     .unwrap();
/// let out: Vec<String> =
///     pipeline.run(stream::iter(0..1_000)).map(Result::unwrap).collect().await;
/// assert_eq!(out.len(), 1_000);
/// assert_eq!(out[999], "#1998");
/// # }
/// ```
pub struct Pipeline<In, Out> {
    connect: Connect<In, Out>,
    run: Run,
    chunk_size: usize,
    parallelism: Vec<usize>,
}

/// The settings every stage reads when a run starts.
#[derive(Clone)]
struct Run {
    runtime: Handle,
    buffer: usize,
    retry: Retry,
}

#[derive(Clone, Copy)]
struct Retry {
    max_retries: u32,
    backoff: Duration,
}

/// Settings and stages of a [`Pipeline`]; see [`Pipeline::builder`].
#[must_use = "a builder does nothing until `build()` is called"]
pub struct PipelineBuilder<In, Out> {
    connect: Connect<In, Out>,
    stages: Vec<(String, usize)>,
    chunk_size: usize,
    buffer: usize,
    retry: Retry,
    runtime: Option<Handle>,
}

impl<In: Send + 'static> Pipeline<In, In> {
    /// Starts a pipeline whose input items are `In`; add stages with
    /// [`stage`](PipelineBuilder::stage).
    ///
    /// # Examples
    ///
    /// See [`Pipeline`].
    pub fn builder() -> PipelineBuilder<In, In> {
        PipelineBuilder {
            connect: Arc::new(|rx, _: &Run| rx),
            stages: Vec::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            buffer: DEFAULT_BUFFER,
            retry: Retry {
                max_retries: DEFAULT_MAX_RETRIES,
                backoff: DEFAULT_BACKOFF,
            },
            runtime: None,
        }
    }
}

impl<In: Send + 'static, Out: Send + 'static> PipelineBuilder<In, Out> {
    /// Items per chunk. Default: 1024.
    ///
    /// # Examples
    ///
    /// See [`Pipeline`].
    pub fn chunk_size(mut self, items: usize) -> Self {
        self.chunk_size = items;
        self
    }

    /// Chunks each channel between two stages can hold. Default: 2.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::Pipeline;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder()
    ///     .buffer(4)
    ///     .stage("noop", 1, |c: Vec<u8>| async move { Ok::<_, std::io::Error>(c) })
    ///     .build()
    ///     .unwrap();
    /// // feeder + channel + (stage + hand-over + channel) + consumer
    /// assert_eq!(pipeline.max_chunks_in_flight(), 1 + 4 + (1 + 1 + 4) + 1);
    /// # }
    /// ```
    pub fn buffer(mut self, chunks: usize) -> Self {
        self.buffer = chunks;
        self
    }

    /// Retries of a failed chunk in one stage before the run stops. Default: 2.
    ///
    /// Retrying needs the chunk again, so while `max_retries > 0` each attempt gets a clone.
    ///
    /// # Examples
    ///
    /// See [`Pipeline`].
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// Wait before the first retry of a chunk, doubled before each further one. Default: 10 ms.
    ///
    /// # Examples
    ///
    /// See [`Pipeline`].
    pub fn backoff(mut self, first: Duration) -> Self {
        self.retry.backoff = first;
        self
    }

    /// The runtime stage tasks run on. Default: the runtime `build()` is called from.
    ///
    /// # Examples
    ///
    /// See [`PoolBuilder::runtime`](crate::PoolBuilder::runtime).
    pub fn runtime(mut self, handle: Handle) -> Self {
        self.runtime = Some(handle);
        self
    }

    /// Appends a stage named `name` that turns each chunk of `Out` into a chunk of `Next`,
    /// running up to `parallelism` chunks at once.
    ///
    /// # Examples
    ///
    /// See [`Pipeline`].
    pub fn stage<Next, F, Fut, E>(
        self,
        name: impl Into<String>,
        parallelism: usize,
        f: F,
    ) -> PipelineBuilder<In, Next>
    where
        Out: Clone,
        Next: Send + 'static,
        F: Fn(Vec<Out>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Next>, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let name = name.into();
        let label: Arc<str> = Arc::from(name.as_str());
        let f: StageFn<Out, Next> =
            Arc::new(move |chunk| Box::pin(f(chunk).map_err(Into::into)) as BoxFuture<'static, _>);
        let previous = self.connect;
        let connect: Connect<In, Next> = Arc::new(move |rx, run: &Run| {
            let rx = previous(rx, run);
            spawn_stage(rx, run, Arc::clone(&label), parallelism, Arc::clone(&f))
        });
        let mut stages = self.stages;
        stages.push((name, parallelism));
        PipelineBuilder {
            connect,
            stages,
            chunk_size: self.chunk_size,
            buffer: self.buffer,
            retry: self.retry,
            runtime: self.runtime,
        }
    }

    /// Validates the settings.
    ///
    /// # Errors
    ///
    /// A [`BuildError`] naming the first bad value (a zero chunk size, buffer or parallelism, no
    /// stage), or [`BuildError::NoRuntime`] outside a runtime with no
    /// [`runtime`](Self::runtime) given.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_pool::{BuildError, Pipeline};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let err = Pipeline::builder()
    ///     .stage("parse", 0, |c: Vec<u8>| async move { Ok::<_, std::io::Error>(c) })
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err, BuildError::ZeroParallelism { stage: "parse".into() });
    /// # }
    /// ```
    pub fn build(self) -> Result<Pipeline<In, Out>, BuildError> {
        if self.chunk_size == 0 {
            return Err(BuildError::ZeroChunkSize);
        }
        if self.buffer == 0 {
            return Err(BuildError::ZeroBuffer);
        }
        if self.stages.is_empty() {
            return Err(BuildError::NoStages);
        }
        if let Some((stage, _)) = self
            .stages
            .iter()
            .find(|(_, parallelism)| *parallelism == 0)
        {
            return Err(BuildError::ZeroParallelism {
                stage: stage.clone(),
            });
        }
        let runtime = match self.runtime {
            Some(handle) => handle,
            None => Handle::try_current().map_err(|_| BuildError::NoRuntime)?,
        };
        Ok(Pipeline {
            connect: self.connect,
            run: Run {
                runtime,
                buffer: self.buffer,
                retry: self.retry,
            },
            chunk_size: self.chunk_size,
            parallelism: self
                .stages
                .into_iter()
                .map(|(_, parallelism)| parallelism)
                .collect(),
        })
    }
}

impl<In: Send + 'static, Out: Send + 'static> Pipeline<In, Out> {
    /// Runs the pipeline over `input`; the returned stream yields the outputs in input order.
    ///
    /// Stages start at once and stop when the input ends, when a chunk fails for good, or when
    /// the output stream is dropped. A pipeline can be run any number of times.
    ///
    /// # Examples
    ///
    /// See [`Pipeline`].
    pub fn run<S>(&self, input: S) -> PipelineOutput<Out>
    where
        S: Stream<Item = In> + Send + 'static,
    {
        let in_flight = Arc::new(InFlight::default());
        let (tx, rx) = mpsc::channel(self.run.buffer);
        let chunk_size = self.chunk_size;
        let feeder_in_flight = Arc::clone(&in_flight);
        self.run.runtime.spawn(async move {
            let chunks = input.chunks(chunk_size).enumerate();
            futures_util::pin_mut!(chunks);
            while let Some((index, chunk)) = chunks.next().await {
                feeder_in_flight.enter();
                if tx.send(Ok((index, chunk))).await.is_err() {
                    break; // the run stopped downstream
                }
            }
        });
        let rx = (self.connect)(rx, &self.run);
        PipelineOutput {
            rx,
            current: Vec::new().into_iter(),
            holding: false,
            done: false,
            in_flight,
        }
    }

    /// The most chunks that can exist at once during a run: the feeder's, the channels', each
    /// stage's `parallelism` plus one being handed on, and the consumer's.
    ///
    /// # Examples
    ///
    /// See [`PipelineBuilder::buffer`].
    pub fn max_chunks_in_flight(&self) -> usize {
        let buffer = self.run.buffer;
        1 + buffer
            + self
                .parallelism
                .iter()
                .map(|p| p + 1 + buffer)
                .sum::<usize>()
            + 1
    }
}

impl<In, Out> fmt::Debug for Pipeline<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("chunk_size", &self.chunk_size)
            .field("buffer", &self.run.buffer)
            .field("parallelism", &self.parallelism)
            .finish_non_exhaustive()
    }
}

impl<In, Out> fmt::Debug for PipelineBuilder<In, Out> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineBuilder")
            .field("stages", &self.stages)
            .field("chunk_size", &self.chunk_size)
            .field("buffer", &self.buffer)
            .finish_non_exhaustive()
    }
}

/// Spawns one stage: reads chunks from `rx`, runs up to `parallelism` at once, forwards them in
/// order; an error is forwarded and ends the stage.
fn spawn_stage<A, B>(
    mut rx: mpsc::Receiver<Msg<A>>,
    run: &Run,
    name: Arc<str>,
    parallelism: usize,
    f: StageFn<A, B>,
) -> mpsc::Receiver<Msg<B>>
where
    A: Clone + Send + 'static,
    B: Send + 'static,
{
    let (tx, out) = mpsc::channel(run.buffer);
    let (runtime, retry) = (run.runtime.clone(), run.retry);
    run.runtime.spawn(async move {
        let results = stream::poll_fn(move |cx| rx.poll_recv(cx))
            .map(|msg: Msg<A>| match msg {
                Ok((index, chunk)) => {
                    let attempt = process(Arc::clone(&f), Arc::clone(&name), index, chunk, retry);
                    let task = runtime.spawn(attempt);
                    let name = Arc::clone(&name);
                    Either::Left(async move {
                        task.await.unwrap_or_else(|_panic| {
                            Err(PipelineError::StagePanicked {
                                stage: name.to_string(),
                                chunk: index,
                            })
                        })
                    })
                }
                Err(error) => Either::Right(std::future::ready(Err(error))),
            })
            .buffered(parallelism);
        futures_util::pin_mut!(results);
        while let Some(result) = results.next().await {
            let stop = result.is_err();
            if tx.send(result).await.is_err() || stop {
                break;
            }
        }
    });
    out
}

/// Runs one chunk through one stage, retrying with a doubling backoff.
async fn process<A: Clone, B>(
    f: StageFn<A, B>,
    name: Arc<str>,
    index: usize,
    mut chunk: Vec<A>,
    retry: Retry,
) -> Msg<B> {
    let mut attempt = 0;
    loop {
        let last = attempt >= retry.max_retries;
        // The last attempt takes the chunk itself; earlier ones need it again if they fail.
        let input = if last {
            std::mem::take(&mut chunk)
        } else {
            chunk.clone()
        };
        match f(input).await {
            Ok(output) => return Ok((index, output)),
            Err(source) if last => {
                return Err(PipelineError::StageFailed {
                    stage: name.to_string(),
                    chunk: index,
                    attempts: attempt + 1,
                    source,
                });
            }
            Err(_retried) => {
                let delay = retry.backoff.saturating_mul(1_u32 << attempt.min(16));
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                attempt += 1;
            }
        }
    }
}

/// Chunks entered and left: the high-water mark proves the memory bound.
#[derive(Debug, Default)]
struct InFlight {
    now: AtomicUsize,
    high_water: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.high_water.fetch_max(now, Ordering::Relaxed);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The output of [`Pipeline::run`]: a stream of items in input order, or one error.
pub struct PipelineOutput<T> {
    rx: mpsc::Receiver<Msg<T>>,
    current: std::vec::IntoIter<T>,
    holding: bool,
    done: bool,
    in_flight: Arc<InFlight>,
}

impl<T> PipelineOutput<T> {
    /// The most chunks that existed at once so far in this run (never above
    /// [`Pipeline::max_chunks_in_flight`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use kwik_pool::Pipeline;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let pipeline = Pipeline::builder()
    ///     .chunk_size(10)
    ///     .stage("noop", 2, |c: Vec<u32>| async move { Ok::<_, std::io::Error>(c) })
    ///     .build()
    ///     .unwrap();
    /// let mut out = pipeline.run(futures_util::stream::iter(0..10_000));
    /// while let Some(item) = out.next().await {
    ///     item.unwrap();
    /// }
    /// assert!(out.max_chunks_in_flight() <= pipeline.max_chunks_in_flight());
    /// # }
    /// ```
    pub fn max_chunks_in_flight(&self) -> usize {
        self.in_flight.high_water.load(Ordering::Relaxed)
    }
}

// Nothing in the output is ever pinned: items are moved out of a plain vector iterator.
impl<T> Unpin for PipelineOutput<T> {}

impl<T> Stream for PipelineOutput<T> {
    type Item = Result<T, PipelineError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(item) = this.current.next() {
                return Poll::Ready(Some(Ok(item)));
            }
            if this.holding {
                this.holding = false;
                this.in_flight.leave();
            }
            if this.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(this.rx.poll_recv(cx)) {
                Some(Ok((_index, chunk))) => {
                    this.current = chunk.into_iter();
                    this.holding = true;
                }
                Some(Err(error)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(error)));
                }
                None => this.done = true,
            }
        }
    }
}

impl<T> fmt::Debug for PipelineOutput<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineOutput")
            .field("done", &self.done)
            .field("max_chunks_in_flight", &self.max_chunks_in_flight())
            .finish_non_exhaustive()
    }
}
