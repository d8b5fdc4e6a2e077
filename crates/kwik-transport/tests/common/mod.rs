//! Loopback session pairs for the integration tests, run with each executor.
#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kwik_transport::{
    ClientConfig, ClientConfigBuilder, ErrorCode, Executor, InlineExecutor, Listener, PacketJob,
    ServerConfig, ServerConfigBuilder, Session, SpawnExecutor, Submit, dial, listen,
};

/// Which executor a test runs with.
#[derive(Debug, Clone, Copy)]
pub enum Exec {
    Inline,
    Spawn,
}

impl Exec {
    pub fn executor(self) -> Arc<dyn Executor> {
        match self {
            Self::Inline => Arc::new(InlineExecutor),
            Self::Spawn => Arc::new(SpawnExecutor),
        }
    }
}

/// An executor that hands jobs to `inner`, except while held: then it keeps them, in order,
/// until [`release`](Self::release). Lets a test make sure a peer has *not* processed a frame
/// yet, instead of hoping the network is slower than the next line of the test.
pub struct Holdable {
    inner: Arc<dyn Executor>,
    held: Mutex<Option<Vec<(u64, PacketJob)>>>,
}

impl Holdable {
    pub fn new(exec: Exec) -> Arc<Self> {
        Arc::new(Self {
            inner: exec.executor(),
            held: Mutex::new(None),
        })
    }

    /// Jobs submitted from now on wait for [`release`](Self::release).
    pub fn hold(&self) {
        self.held.lock().unwrap().get_or_insert_with(Vec::new);
    }

    /// Hands the held jobs to the inner executor, in submission order, and stops holding.
    pub async fn release(&self) {
        let held = self.held.lock().unwrap().take().unwrap_or_default();
        for (key, job) in held {
            self.inner.submit(key, job).await.unwrap();
        }
    }
}

impl Executor for Holdable {
    fn submit(&self, key: u64, job: PacketJob) -> Submit<'_> {
        let mut held = self.held.lock().unwrap();
        if let Some(queue) = held.as_mut() {
            queue.push((key, job));
            return Submit::ready(Ok(()));
        }
        drop(held);
        self.inner.submit(key, job)
    }
}

/// A listener, a client session and the server's side of it.
pub struct Pair {
    pub listener: Listener,
    pub client: Session,
    pub server: Session,
    pub server_config: ServerConfig,
    pub client_config: ClientConfig,
}

impl Pair {
    pub async fn new(exec: Exec) -> Self {
        Self::with(exec, |s| s, |c| c).await
    }

    /// A pair whose builders are adjusted by `server` and `client`.
    pub async fn with(
        exec: Exec,
        server: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder,
        client: impl FnOnce(ClientConfigBuilder) -> ClientConfigBuilder,
    ) -> Self {
        let server_config = server(
            ServerConfig::builder()
                .insecure_dev_self_signed(true)
                .executor(exec.executor()),
        )
        .build()
        .expect("server config");
        let listener = listen("127.0.0.1:0".parse().unwrap(), &server_config).expect("listen");
        let client_config = client(
            ClientConfig::builder()
                .add_root_certificate(server_config.self_signed_certificate().unwrap().clone())
                .server_name("localhost")
                .executor(exec.executor()),
        )
        .build()
        .expect("client config");
        let (client, server) = tokio::join!(
            dial(listener.local_addr(), &client_config),
            listener.accept()
        );
        Self {
            client: client.expect("dial"),
            server: server.expect("accept"),
            listener,
            server_config,
            client_config,
        }
    }

    /// Closes both sides and the listener and waits for every task to end.
    pub async fn shutdown(self) {
        self.client.close(ErrorCode::NO_ERROR, "test done");
        let bound = Duration::from_secs(10);
        tokio::time::timeout(bound, self.client.closed())
            .await
            .expect("client closes");
        tokio::time::timeout(bound, self.server.closed())
            .await
            .expect("server closes");
        self.listener.close(ErrorCode::NO_ERROR, "test done");
        tokio::time::timeout(bound, self.listener.closed())
            .await
            .expect("listener closes");
    }
}

/// Runs an async test body once per executor.
#[macro_export]
macro_rules! both_executors {
    ($(#[$meta:meta])* $name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn inline() {
                ($body)($crate::common::Exec::Inline).await;
            }

            $(#[$meta])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn spawn() {
                ($body)($crate::common::Exec::Spawn).await;
            }
        }
    };
}
