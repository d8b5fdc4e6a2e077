//! Buffers of a few size classes, each its own [`BufferPool`].

use std::sync::Arc;

use crate::{BufferPool, GetError, PooledBuf, SizedBuildError, Stats};

/// 2 KiB (a datagram or a small frame), 16 KiB (a TLS record), 64 KiB (a full stream read).
const DEFAULT_CLASSES: [usize; 3] = [2 * 1024, 16 * 1024, 64 * 1024];
/// Bounds the default retention at 256 × 82 KiB ≈ 20.5 MiB over the three classes.
const DEFAULT_MAX_POOLED: usize = 256;
const DEFAULT_THREAD_CACHE: usize = 16;

/// Buffer pools of several sizes: [`get`](Self::get) picks the smallest class that holds the
/// requested capacity, so small messages do not pin 64 KiB each.
///
/// Each class is an independent [`BufferPool`] with the same `max_pooled` and `thread_cache`;
/// everything said there (zero allocation after warm-up, bounded retention, no zeroing) holds
/// per class. Cheap to clone; clones share the pools.
///
/// # Examples
///
/// ```
/// use kwik_buffer::SizedBufferPool;
///
/// let pool = SizedBufferPool::builder().classes([2048, 16384, 65536]).build()?;
/// assert_eq!(pool.get(1200)?.capacity(), 2048);
/// assert_eq!(pool.get(2049)?.capacity(), 16384);
/// assert!(pool.get(1 << 20).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SizedBufferPool {
    /// Ascending by buffer size.
    classes: Arc<[BufferPool]>,
}

impl SizedBufferPool {
    /// Starts building with the defaults: classes of 2 KiB, 16 KiB and 64 KiB, at most 256
    /// buffers kept per class, 16 per thread per class.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::SizedBufferPool::builder().build()?;
    /// let sizes: Vec<usize> = pool.classes().iter().map(|c| c.buffer_size()).collect();
    /// assert_eq!(sizes, [2048, 16384, 65536]);
    /// # Ok::<(), kwik_buffer::SizedBuildError>(())
    /// ```
    pub fn builder() -> SizedBuilder {
        SizedBuilder {
            classes: DEFAULT_CLASSES.to_vec(),
            max_pooled: DEFAULT_MAX_POOLED,
            thread_cache: DEFAULT_THREAD_CACHE,
        }
    }

    /// Takes a buffer from the smallest class whose size is at least `capacity`.
    ///
    /// # Errors
    ///
    /// [`GetError::TooLarge`] when `capacity` exceeds the largest class.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::SizedBufferPool::builder().classes([512, 4096]).build()?;
    /// let buf = pool.get(100)?;
    /// assert_eq!((buf.len(), buf.capacity()), (0, 512));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, capacity: usize) -> Result<PooledBuf, GetError> {
        self.class_for(capacity)
            .map(BufferPool::get)
            .ok_or_else(|| GetError::TooLarge {
                requested: capacity,
                largest: self.largest(),
            })
    }

    /// The class [`get`](Self::get) would take a `capacity`-byte buffer from, if any.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::SizedBufferPool::builder().classes([512, 4096]).build()?;
    /// assert_eq!(pool.class_for(512).map(|c| c.buffer_size()), Some(512));
    /// assert_eq!(pool.class_for(513).map(|c| c.buffer_size()), Some(4096));
    /// assert!(pool.class_for(4097).is_none());
    /// # Ok::<(), kwik_buffer::SizedBuildError>(())
    /// ```
    pub fn class_for(&self, capacity: usize) -> Option<&BufferPool> {
        // A handful of classes: a linear scan beats a binary search.
        self.classes.iter().find(|c| c.buffer_size() >= capacity)
    }

    /// The classes' pools, smallest first; each has its own [`stats`](BufferPool::stats).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::SizedBufferPool::builder().build()?;
    /// drop(pool.get(10_000)?);
    /// let misses: Vec<u64> = pool.classes().iter().map(|c| c.stats().misses).collect();
    /// assert_eq!(misses, [0, 1, 0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn classes(&self) -> &[BufferPool] {
        &self.classes
    }

    /// All classes' counters added together (`pooled_bytes` sums each class's own size).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::SizedBufferPool::builder().classes([1024, 8192]).build()?;
    /// drop((pool.get(10)?, pool.get(5000)?));
    /// let stats = pool.stats();
    /// assert_eq!((stats.gets, stats.pooled, stats.pooled_bytes), (2, 2, 9216));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.classes
            .iter()
            .map(BufferPool::stats)
            .fold(Stats::default(), |sum, s| Stats {
                gets: sum.gets + s.gets,
                hits: sum.hits + s.hits,
                misses: sum.misses + s.misses,
                returns: sum.returns + s.returns,
                dropped: sum.dropped + s.dropped,
                oversized: sum.oversized + s.oversized,
                detached: sum.detached + s.detached,
                outstanding: sum.outstanding + s.outstanding,
                pooled: sum.pooled + s.pooled,
                pooled_bytes: sum.pooled_bytes + s.pooled_bytes,
            })
    }

    fn largest(&self) -> usize {
        self.classes.last().map_or(0, BufferPool::buffer_size)
    }
}

/// Configures and builds a [`SizedBufferPool`]; see [`SizedBufferPool::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct SizedBuilder {
    classes: Vec<usize>,
    max_pooled: usize,
    thread_cache: usize,
}

impl SizedBuilder {
    /// The buffer sizes, in any order. Default: 2048, 16384, 65536. Each must be a valid
    /// [`buffer_size`](crate::Builder::buffer_size); none may repeat.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_buffer::{SizedBufferPool, SizedBuildError};
    ///
    /// let err = SizedBufferPool::builder().classes([4096, 1024, 4096]).build().unwrap_err();
    /// assert_eq!(err, SizedBuildError::DuplicateClass { size: 4096 });
    /// ```
    pub fn classes(mut self, sizes: impl IntoIterator<Item = usize>) -> Self {
        self.classes = sizes.into_iter().collect();
        self
    }

    /// The most buffers kept per class. Default: 256.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::SizedBufferPool::builder().max_pooled(64).build()?;
    /// assert!(pool.classes().iter().all(|c| c.max_pooled() == 64));
    /// # Ok::<(), kwik_buffer::SizedBuildError>(())
    /// ```
    pub fn max_pooled(mut self, buffers: usize) -> Self {
        self.max_pooled = buffers;
        self
    }

    /// Buffers each thread keeps per class. Default: 16.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = kwik_buffer::SizedBufferPool::builder().thread_cache(4).build()?;
    /// assert!(pool.classes().iter().all(|c| c.thread_cache() == 4));
    /// # Ok::<(), kwik_buffer::SizedBuildError>(())
    /// ```
    pub fn thread_cache(mut self, buffers: usize) -> Self {
        self.thread_cache = buffers;
        self
    }

    /// Validates the settings and creates one pool per class.
    ///
    /// # Errors
    ///
    /// [`SizedBuildError::NoClasses`], [`SizedBuildError::DuplicateClass`], or
    /// [`SizedBuildError::Class`] wrapping the class pool's [`BuildError`](crate::BuildError).
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_buffer::{BuildError, SizedBufferPool, SizedBuildError};
    ///
    /// let err = SizedBufferPool::builder().classes([0, 64]).build().unwrap_err();
    /// assert_eq!(err, SizedBuildError::Class { size: 0, source: BuildError::ZeroBufferSize });
    /// ```
    pub fn build(mut self) -> Result<SizedBufferPool, SizedBuildError> {
        self.classes.sort_unstable();
        if let Some(pair) = self.classes.windows(2).find(|w| w[0] == w[1]) {
            return Err(SizedBuildError::DuplicateClass { size: pair[0] });
        }
        if self.classes.is_empty() {
            return Err(SizedBuildError::NoClasses);
        }
        let classes = self
            .classes
            .iter()
            .map(|&size| {
                BufferPool::builder()
                    .buffer_size(size)
                    .max_pooled(self.max_pooled)
                    .thread_cache(self.thread_cache)
                    .build()
                    .map_err(|source| SizedBuildError::Class { size, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SizedBufferPool {
            classes: classes.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_smallest_class_that_fits() {
        let pool = SizedBufferPool::builder()
            .classes([65536, 2048, 16384])
            .build()
            .expect("valid");
        for (request, class) in [
            (0, 2048),
            (1, 2048),
            (2048, 2048),
            (2049, 16384),
            (65536, 65536),
        ] {
            assert_eq!(
                pool.get(request).expect("fits").capacity(),
                class,
                "request {request}"
            );
        }
        assert_eq!(
            pool.get(65537).unwrap_err(),
            GetError::TooLarge {
                requested: 65537,
                largest: 65536
            }
        );
        assert_eq!(
            pool.get(usize::MAX).unwrap_err(),
            GetError::TooLarge {
                requested: usize::MAX,
                largest: 65536
            }
        );
    }

    #[test]
    fn classes_recycle_independently() {
        let pool = SizedBufferPool::builder()
            .classes([64, 128])
            .build()
            .expect("valid");
        drop(pool.get(10).expect("fits"));
        drop(pool.get(10).expect("fits"));
        drop(pool.get(100).expect("fits"));
        let per_class: Vec<(u64, u64)> = pool
            .classes()
            .iter()
            .map(|c| (c.stats().hits, c.stats().misses))
            .collect();
        assert_eq!(per_class, [(1, 1), (0, 1)]);
        let total = pool.stats();
        assert_eq!((total.gets, total.pooled, total.pooled_bytes), (3, 2, 192));
    }

    #[test]
    fn builder_rejects_bad_class_lists() {
        let b = SizedBufferPool::builder;
        assert_eq!(
            b().classes([]).build().unwrap_err(),
            SizedBuildError::NoClasses
        );
        assert_eq!(
            b().classes([8, 8]).build().unwrap_err(),
            SizedBuildError::DuplicateClass { size: 8 }
        );
        assert!(matches!(
            b().max_pooled(0).thread_cache(0).build().unwrap_err(),
            SizedBuildError::Class {
                source: crate::BuildError::ZeroMaxPooled,
                ..
            }
        ));
    }
}
