//! Who a client trusts and what a server presents: the TLS half of dialing and listening, which
//! `performance.toml` does not describe.

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The certificates a dialing client accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trust {
    /// Trust these root certificate authorities (or self-signed certificates) and nothing else.
    /// The server name verified is the dialed IP address unless `server_name` is set.
    Roots {
        /// The trusted roots.
        roots: Vec<CertificateDer<'static>>,
        /// Name verified against the server certificate; default: the dialed IP address.
        server_name: Option<String>,
    },
    /// **Development only: accepts any server certificate**, which removes all protection
    /// against an active attacker.
    InsecureDevSkipVerification,
}

impl Trust {
    /// Trust exactly `roots`, verifying the dialed IP address.
    pub fn roots(roots: impl IntoIterator<Item = CertificateDer<'static>>) -> Self {
        Self::Roots {
            roots: roots.into_iter().collect(),
            server_name: None,
        }
    }
}

/// The certificate a listening server presents.
#[non_exhaustive]
pub enum Identity {
    /// A certificate chain (leaf first) and its private key.
    Certificate {
        /// The chain, leaf first.
        chain: Vec<CertificateDer<'static>>,
        /// The leaf's private key.
        key: PrivateKeyDer<'static>,
    },
    /// **Development only:** a self-signed certificate for `localhost`, `127.0.0.1` and `::1`,
    /// generated when listening; clients must skip verification to reach it.
    InsecureDevSelfSigned,
}

impl Identity {
    /// A server presenting `chain` (leaf first) with `key`.
    pub fn certificate(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        Self::Certificate { chain, key }
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        match self {
            Self::Certificate { chain, key } => Self::Certificate {
                chain: chain.clone(),
                key: key.clone_key(),
            },
            Self::InsecureDevSelfSigned => Self::InsecureDevSelfSigned,
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs.
        match self {
            Self::Certificate { chain, .. } => f
                .debug_struct("Certificate")
                .field("chain_len", &chain.len())
                .finish_non_exhaustive(),
            Self::InsecureDevSelfSigned => f.write_str("InsecureDevSelfSigned"),
        }
    }
}
