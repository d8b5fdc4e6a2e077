//! Test certificates: a throw-away CA and a leaf certificate it signs, as rustls and quinn
//! configurations.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{NoInitialCipherSuite, QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The DNS name the leaf certificate is issued for; clients dial with this server name.
pub const SERVER_NAME: &str = "localhost";

/// Subject alternative names of the leaf certificate: the loopback name and address tests use.
const LEAF_NAMES: [&str; 2] = [SERVER_NAME, "127.0.0.1"];

/// Common name of the CA made by [`TestPki::generate`].
const TRUSTED_CA_NAME: &str = "kwik test CA";

/// Common name of the CA made by [`TestPki::untrusted`].
const UNTRUSTED_CA_NAME: &str = "kwik untrusted test CA";

/// Errors from generating certificates or building TLS configurations from them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// rcgen could not generate a key pair or sign a certificate.
    #[error("failed to generate a test certificate")]
    Generate(#[from] rcgen::Error),
    /// rustls rejected the certificates, the key or the protocol selection.
    #[error("rustls rejected the test configuration")]
    Tls(#[from] rustls::Error),
    /// The crypto provider lacks the cipher suite QUIC's Initial packets need.
    #[error("the crypto provider cannot protect quic initial packets")]
    Quic(#[from] NoInitialCipherSuite),
    /// A PEM file could not be written.
    #[error("failed to write {}", path.display())]
    Write {
        /// The file that could not be written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}

/// A throw-away public-key infrastructure: a CA and one leaf certificate for `localhost` and
/// `127.0.0.1`, signed by that CA.
///
/// Every value is generated fresh (ECDSA P-256, a millisecond or so), so two `TestPki` never
/// trust each other: a client built from [`TestPki::untrusted`] (or any other `TestPki`) must
/// fail the handshake against a server built from this one. All TLS configurations use the ring
/// provider, selected explicitly, and TLS 1.3 only, as QUIC requires.
///
/// # Examples
///
/// ```
/// use kwik_test_support::TestPki;
///
/// let pki = TestPki::generate()?;
/// let server = pki.server_config(&[b"kwik"])?;
/// let client = pki.client_config(&[b"kwik"])?;
/// assert_eq!(server.alpn_protocols, client.alpn_protocols);
/// assert_eq!(pki.root_store().len(), 1);
/// # Ok::<(), kwik_test_support::CertError>(())
/// ```
pub struct TestPki {
    ca_cert: CertificateDer<'static>,
    ca_pem: String,
    leaf_cert: CertificateDer<'static>,
    leaf_pem: String,
    leaf_key: PrivatePkcs8KeyDer<'static>,
    leaf_key_pem: String,
}

impl TestPki {
    /// Generates a fresh CA named "kwik test CA" and a leaf certificate it signs.
    pub fn generate() -> Result<Self, CertError> {
        Self::with_ca_name(TRUSTED_CA_NAME)
    }

    /// Generates an unrelated CA named "kwik untrusted test CA" and its own leaf certificate.
    ///
    /// Identical in shape to [`TestPki::generate`]; the distinct name only makes the intent and
    /// the error messages of negative tests obvious.
    pub fn untrusted() -> Result<Self, CertError> {
        Self::with_ca_name(UNTRUSTED_CA_NAME)
    }

    fn with_ca_name(ca_name: &str) -> Result<Self, CertError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate()?;
        let mut leaf_params = CertificateParams::new(LEAF_NAMES.map(String::from).to_vec())?;
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.use_authority_key_identifier_extension = true;
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer)?;

        Ok(Self {
            ca_pem: ca_cert.pem(),
            ca_cert: ca_cert.der().clone(),
            leaf_pem: leaf_cert.pem(),
            leaf_cert: leaf_cert.der().clone(),
            leaf_key_pem: leaf_key.serialize_pem(),
            leaf_key: PrivatePkcs8KeyDer::from(leaf_key),
        })
    }

    /// The CA certificate, the trust anchor clients use.
    pub fn ca_cert(&self) -> CertificateDer<'static> {
        self.ca_cert.clone()
    }

    /// The leaf certificate for `localhost` and `127.0.0.1`.
    pub fn leaf_cert(&self) -> CertificateDer<'static> {
        self.leaf_cert.clone()
    }

    /// The chain a server presents: the leaf certificate alone (the CA is the trust anchor).
    pub fn cert_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.leaf_cert()]
    }

    /// The leaf certificate's private key (PKCS #8).
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.leaf_key.clone_key())
    }

    /// A root store trusting exactly this CA.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        // rcgen's CA certificate always parses; were it ever rejected, the empty store would
        // fail every handshake loudly rather than trust something else.
        roots.add_parsable_certificates([self.ca_cert()]);
        roots
    }

    /// A TLS 1.3 server configuration presenting the leaf certificate, without client
    /// authentication, offering `alpn` (in preference order; empty for none).
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, CertError> {
        let mut config = rustls::ServerConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(self.cert_chain(), self.key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// A TLS 1.3 client configuration trusting only this CA, offering `alpn`.
    ///
    /// Dial with [`SERVER_NAME`] (or the IP address `127.0.0.1`) as the server name.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, CertError> {
        let mut config = rustls::ClientConfig::builder_with_provider(ring_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.root_store())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// A quinn server configuration wrapping [`TestPki::server_config`], with quinn's default
    /// transport settings.
    pub fn quinn_server_config(&self, alpn: &[&[u8]]) -> Result<quinn::ServerConfig, CertError> {
        let crypto = QuicServerConfig::try_from(self.server_config(alpn)?)?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }

    /// A quinn client configuration wrapping [`TestPki::client_config`], with quinn's default
    /// transport settings.
    pub fn quinn_client_config(&self, alpn: &[&[u8]]) -> Result<quinn::ClientConfig, CertError> {
        let crypto = QuicClientConfig::try_from(self.client_config(alpn)?)?;
        Ok(quinn::ClientConfig::new(Arc::new(crypto)))
    }

    /// Writes `ca.pem`, `cert.pem` and `key.pem` into `dir` (which must exist) and returns their
    /// paths, for tests driving a CLI with `--cert` / `--key` / `--ca` options.
    ///
    /// # Examples
    ///
    /// ```
    /// use kwik_test_support::TestPki;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let files = TestPki::generate()?.write_pem(dir.path())?;
    /// let cert = std::fs::read_to_string(&files.cert)?;
    /// assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write_pem(&self, dir: &Path) -> Result<PemFiles, CertError> {
        let files = PemFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        for (path, pem) in [
            (&files.ca, &self.ca_pem),
            (&files.cert, &self.leaf_pem),
            (&files.key, &self.leaf_key_pem),
        ] {
            fs::write(path, pem).map_err(|source| CertError::Write {
                path: path.clone(),
                source,
            })?;
        }
        Ok(files)
    }
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of logs even in tests.
        f.debug_struct("TestPki")
            .field("ca_cert_len", &self.ca_cert.len())
            .field("leaf_cert_len", &self.leaf_cert.len())
            .finish_non_exhaustive()
    }
}

/// Paths of the PEM files written by [`TestPki::write_pem`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PemFiles {
    /// `ca.pem`: the CA certificate (the trust anchor).
    pub ca: PathBuf,
    /// `cert.pem`: the leaf certificate.
    pub cert: PathBuf,
    /// `key.pem`: the leaf private key (PKCS #8).
    pub key: PathBuf,
}

/// The one crypto provider kwik uses: ring, chosen explicitly so that no process-wide default
/// needs to be installed.
pub fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
