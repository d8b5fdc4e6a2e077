//! Helpers shared by the pool's integration tests.

/// Yields until `cond` holds; the bound keeps a broken pool from hanging the suite.
pub(crate) async fn until(mut cond: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if cond() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never became true");
}
