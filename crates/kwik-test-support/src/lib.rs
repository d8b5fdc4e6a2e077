//! Test fixtures for kwik: throw-away TLS certificates and a seeded lossy UDP relay.
//!
//! This crate sits beside the layers, never inside them: it is a `dev-dependency` of
//! kwik-transport and the crates above it (`publish = false`), and depends on no kwik crate.
//! Everything it starts binds `127.0.0.1` on an ephemeral port.
//!
//! - [`TestPki`]: a fresh CA and a leaf certificate for `localhost` / `127.0.0.1`, as DER values,
//!   a [`rustls::RootCertStore`], ready rustls and quinn configurations (ring provider, TLS 1.3,
//!   your ALPN) and PEM files for command-line tests. [`TestPki::untrusted`] makes an unrelated
//!   CA for negative tests.
//! - [`LossyRelay`]: a UDP relay between clients and a server that loses, duplicates, reorders,
//!   delays and rate-limits datagrams per direction ([`LinkConditions`]), with a seeded random
//!   generator, bounded queues and counters ([`RelayStats`]) that tests can wait on.
//!
//! # Example
//!
//! A QUIC handshake and an echo through a relay that drops 5% of the packets each way:
//!
//! ```
//! use kwik_test_support::{LossyRelay, SERVER_NAME, TestPki};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pki = TestPki::generate()?;
//! let server = quinn::Endpoint::server(
//!     pki.quinn_server_config(&[b"echo"])?,
//!     "127.0.0.1:0".parse()?,
//! )?;
//! let relay = LossyRelay::builder().loss(0.05).seed(3).start(server.local_addr()?).await?;
//!
//! let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
//! client.set_default_client_config(pki.quinn_client_config(&[b"echo"])?);
//!
//! let serve = async {
//!     let connection = server.accept().await.ok_or("server closed")?.await?;
//!     let (mut send, mut recv) = connection.accept_bi().await?;
//!     let request = recv.read_to_end(1024).await?;
//!     send.write_all(&request).await?;
//!     send.finish()?;
//!     connection.closed().await;
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! };
//! let ask = async {
//!     let connection = client.connect(relay.local_addr(), SERVER_NAME)?.await?;
//!     let (mut send, mut recv) = connection.open_bi().await?;
//!     send.write_all(b"hello through the relay").await?;
//!     send.finish()?;
//!     let reply = recv.read_to_end(1024).await?;
//!     connection.close(0u32.into(), b"done");
//!     Ok::<_, Box<dyn std::error::Error>>(reply)
//! };
//! let (served, reply) = tokio::join!(serve, ask);
//! served?;
//! assert_eq!(reply?, b"hello through the relay");
//!
//! client.wait_idle().await;
//! server.close(0u32.into(), b"done");
//! let stats = relay.shutdown().await;
//! assert!(stats.client_to_server.forwarded > 0);
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

mod process;
pub mod promtool;
mod relay;
mod tls;

pub use process::ChildProcess;
pub use relay::{
    Direction, LinkConditions, LinkStats, LossyRelay, RelayBuilder, RelayError, RelayStats,
};
pub use tls::{CertError, PemFiles, SERVER_NAME, TestPki, ring_provider};
