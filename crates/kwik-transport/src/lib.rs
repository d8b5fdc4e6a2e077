//! The KWIK protocol on quinn + rustls: sessions, paths, flow-controlled streams and framing.
//!
//! A KWIK [`Session`] runs over one or more *paths*, each a QUIC connection carrying one
//! bidirectional "path stream" of length-prefixed packets of frames ([`wire`]). Logical
//! [`Stream`]s are multiplexed over the paths with per-stream flow control and reassembly by
//! offset. Received packets go through an [`Executor`] seam so that the `kwik` facade can
//! process them on its sharded worker pool; this crate ships [`InlineExecutor`] and
//! [`SpawnExecutor`]. It depends on no other kwik crate except kwik-buffer and never on
//! Prometheus: [`SessionStats`] snapshots and the [`Observer`] hook feed the facade's metrics.
//! The wire format is specified in `docs/protocol.md`.
//!
//! # Example
//!
//! ```
//! use kwik_transport::{ClientConfig, ErrorCode, ServerConfig, dial, listen};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server_config = ServerConfig::builder().insecure_dev_self_signed(true).build()?;
//! let listener = listen("127.0.0.1:0".parse()?, &server_config)?;
//! let client_config = ClientConfig::builder()
//!     .add_root_certificate(server_config.self_signed_certificate().unwrap().clone())
//!     .build()?;
//!
//! let client = dial(listener.local_addr(), &client_config).await?;
//! let server = listener.accept().await.unwrap();
//! let echo = tokio::spawn(async move {
//!     let mut stream = server.accept_stream().await?;
//!     let mut buf = Vec::new();
//!     stream.read_to_end(&mut buf).await?;
//!     stream.write_all(&buf).await?;
//!     stream.shutdown().await?;
//!     Ok::<_, std::io::Error>(server)
//! });
//!
//! let mut stream = client.open_stream().await?;
//! stream.write_all(b"hello kwik").await?;
//! stream.shutdown().await?; // FIN
//! let mut reply = Vec::new();
//! stream.read_to_end(&mut reply).await?;
//! assert_eq!(reply, b"hello kwik");
//!
//! let server = echo.await??;
//! client.close(ErrorCode::APPLICATION_BASE, "done");
//! client.closed().await;
//! server.closed().await;
//! listener.close(ErrorCode::NO_ERROR, "bye");
//! listener.closed().await;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod config;
mod endpoint;
mod error;
mod executor;
mod multipath;
mod path;
pub mod quic;
mod session;
mod stats;
mod stream;
pub mod wire;

pub use config::{
    ClientConfig, ClientConfigBuilder, DEFAULT_ALPN, ServerConfig, ServerConfigBuilder,
};
pub use endpoint::{Listener, dial, listen};
pub use error::{
    CloseReason, ConfigError, ConnectError, ErrorCode, ExecutorClosed, ListenError, ProtocolError,
    ReadError, SessionError, WriteError,
};
pub use executor::{Executor, InlineExecutor, PacketJob, SpawnExecutor, Submit};
pub use multipath::{AddPathError, PathId, RelayError, RemovePathError};
pub use session::Session;
pub use stats::{Observer, PathCounters, PathInfo, PathState, SessionStats};
pub use stream::{RecvHalf, SendHalf, Stream};
