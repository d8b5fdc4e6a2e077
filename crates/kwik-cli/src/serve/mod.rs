//! `kwik serve`: the demo server's services, one per KWIK stream.
//!
//! The first bytes of a stream pick its service ([`dispatch`]): HTTP/1.1 with keep-alive
//! ([`http`]), echo, or a byte range of a file ([`file`]), split over secondary servers
//! ([`secondary`]) when `--secondary` is given. docs/serve.md specifies the wire
//! format. Everything here works over any `AsyncRead + AsyncWrite` stream, so it is tested over
//! in-memory pipes; [`run`] plugs it into the streams of kwik-transport sessions.

mod dispatch;
mod file;
mod http;
mod metrics;
mod observe;
mod path;
mod run;
mod secondary;
mod status;
#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kwik_buffer::BufferPool;
use kwik_cache::BytesCache;
use kwik_config::CacheConfig;
use tokio::time::Instant;

use self::file::FileCounters;

pub(crate) use self::dispatch::serve_stream;
pub(crate) use self::observe::{RequestObserver, Route, RouteCounters};
pub(crate) use self::run::{ServeArgs, run};
pub(crate) use self::status::{RuntimeStatus, StatusSnapshot, StatusSource};

/// Default time a client has to send a request line or head (and a keep-alive connection may
/// sit idle between requests): long enough for a slow link, short enough that idle streams do
/// not pile up.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Default stream window assumed of clients: performance.toml's `[transport] stream_window`.
pub(crate) const DEFAULT_STREAM_WINDOW: u64 = 1024 * 1024;

/// Default size above which a static file is streamed from disk instead of cached: the cache
/// holds pages and small assets, not downloads.
pub(crate) const DEFAULT_MAX_CACHED_FILE: u64 = 256 * 1024;

/// Why [`ServicesBuilder::build`] refused its settings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BuildError {
    /// The root directory cannot be resolved.
    #[error("cannot open the root directory {}", path.display())]
    Root {
        /// The root as given.
        path: PathBuf,
        /// Why it could not be resolved.
        #[source]
        source: io::Error,
    },
    /// The root exists but is not a directory.
    #[error("root {} is not a directory", .0.display())]
    RootNotDirectory(PathBuf),
    /// `request_timeout(Duration::ZERO)`: every request would time out at once.
    #[error("request timeout must be greater than zero")]
    ZeroRequestTimeout,
    /// `stream_window(0)`: no block of a split download would fit.
    #[error("stream window must be greater than zero")]
    ZeroStreamWindow,
}

/// What every stream's service shares: the root, the response cache, the chunk buffers, the
/// request accounting and the runtime status.
pub(crate) struct Services {
    root: Option<PathBuf>,
    cache: Option<BytesCache<PathBuf>>,
    buffers: BufferPool,
    counters: RouteCounters,
    files: FileCounters,
    observer: Option<Arc<dyn RequestObserver>>,
    status: Option<Arc<dyn StatusSource>>,
    request_timeout: Duration,
    max_cached_file: u64,
    stream_window: u64,
    started: Instant,
}

/// Builds [`Services`]; obtained from [`Services::builder`].
pub(crate) struct ServicesBuilder {
    buffers: BufferPool,
    root: Option<PathBuf>,
    cache: Option<BytesCache<PathBuf>>,
    observer: Option<Arc<dyn RequestObserver>>,
    status: Option<Arc<dyn StatusSource>>,
    request_timeout: Duration,
    max_cached_file: u64,
    stream_window: u64,
}

impl Services {
    /// A builder; `buffers` supplies the chunks files are streamed through.
    pub(crate) fn builder(buffers: BufferPool) -> ServicesBuilder {
        ServicesBuilder {
            buffers,
            root: None,
            cache: None,
            observer: None,
            status: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_cached_file: DEFAULT_MAX_CACHED_FILE,
            stream_window: DEFAULT_STREAM_WINDOW,
        }
    }

    /// The current status, as served by `/api/status`.
    pub(crate) fn snapshot(&self) -> StatusSnapshot {
        StatusSnapshot {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            requests: self.counters.snapshot(),
            cache: self.cache.as_ref().map(|cache| cache.stats().into()),
            buffer: self.buffers.stats().into(),
            files: self.files.snapshot(),
            runtime: self.status.as_ref().map(|source| source.runtime_status()),
        }
    }

    /// The response cache, if caching is enabled.
    pub(crate) fn cache(&self) -> Option<&BytesCache<PathBuf>> {
        self.cache.as_ref()
    }

    fn observe(&self, route: Route, elapsed: Duration, ok: bool) {
        self.counters.observe(route, elapsed, ok);
        if let Some(observer) = &self.observer {
            observer.observe(route, elapsed, ok);
        }
    }
}

impl ServicesBuilder {
    /// Directory whose files are served (HTTP static files and `FILE` downloads). Default: none,
    /// every file request answers "not found".
    pub(crate) fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// Cache of static file bodies, keyed by canonical path. Default: none, nothing is cached.
    pub(crate) fn cache(mut self, cache: BytesCache<PathBuf>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Receives every answered HTTP request, in addition to the built-in counters. Default:
    /// none.
    pub(crate) fn observer(mut self, observer: Arc<dyn RequestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Supplies the runtime part of `/api/status`. Default: none, the part is left out.
    pub(crate) fn status_source(mut self, source: Arc<dyn StatusSource>) -> Self {
        self.status = Some(source);
        self
    }

    /// Time allowed for a service line or an HTTP request head, and for a keep-alive stream to
    /// stay idle between requests. Default [`DEFAULT_REQUEST_TIMEOUT`]; must be non-zero.
    pub(crate) fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Static files up to this size are cached; larger ones are streamed from disk. Default
    /// [`DEFAULT_MAX_CACHED_FILE`].
    #[cfg(test)]
    pub(crate) fn max_cached_file(mut self, bytes: u64) -> Self {
        self.max_cached_file = bytes;
        self
    }

    /// The stream window clients use (`[transport] stream_window`): a download split over n
    /// servers is cut into blocks of `stream_window / n` bytes, so that every server can send
    /// at once within the client's credit. Default [`DEFAULT_STREAM_WINDOW`]; must be non-zero.
    pub(crate) fn stream_window(mut self, bytes: u64) -> Self {
        self.stream_window = bytes;
        self
    }

    /// Validates the settings and resolves the root to its canonical path.
    pub(crate) fn build(self) -> Result<Services, BuildError> {
        if self.request_timeout.is_zero() {
            return Err(BuildError::ZeroRequestTimeout);
        }
        if self.stream_window == 0 {
            return Err(BuildError::ZeroStreamWindow);
        }
        let root = match self.root {
            None => None,
            Some(path) => {
                let canonical =
                    std::fs::canonicalize(&path).map_err(|source| BuildError::Root {
                        path: path.clone(),
                        source,
                    })?;
                if !canonical.is_dir() {
                    return Err(BuildError::RootNotDirectory(path));
                }
                Some(canonical)
            }
        };
        Ok(Services {
            root,
            cache: self.cache,
            buffers: self.buffers,
            counters: RouteCounters::default(),
            files: FileCounters::default(),
            observer: self.observer,
            status: self.status,
            request_timeout: self.request_timeout,
            max_cached_file: self.max_cached_file,
            stream_window: self.stream_window,
            started: Instant::now(),
        })
    }
}

/// The response cache described by `[cache]`: entry capacity, byte budget, TTL, compression
/// threshold and shards; `None` when `enabled = false`.
pub(crate) fn response_cache(
    config: &CacheConfig,
) -> Result<Option<BytesCache<PathBuf>>, kwik_cache::BuildError> {
    if !config.enabled {
        return Ok(None);
    }
    let mut builder = BytesCache::builder()
        .capacity(config.capacity)
        .ttl(config.ttl);
    if !config.max_bytes.is_zero() {
        builder = builder.max_weight(config.max_bytes.as_u64());
    }
    if config.compression {
        builder = builder.compression_threshold(config.compression_threshold.as_usize());
    } else {
        // Nothing is at least this large, so nothing is compressed.
        builder = builder.compression_threshold(usize::MAX);
    }
    if config.shards != 0 {
        builder = builder.shards(config.shards);
    }
    builder.build().map(Some)
}
