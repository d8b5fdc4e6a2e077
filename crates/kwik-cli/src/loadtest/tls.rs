//! TLS of a loadtest run.
//!
//! Embedded server: a self-signed certificate for `localhost`, made fresh, trusted by the run's
//! clients and nothing else (verification stays on); every variant uses the same one. Remote
//! server (`--target`): the clients trust the certificates of `--ca`, or, for development only,
//! nothing is verified (`--insecure`).

use std::path::Path;

use anyhow::Context as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The name the certificate is issued for and the clients verify; also the default
/// `--server-name`, the name `kwik serve --insecure-dev-self-signed` issues its certificate for.
pub(crate) const SERVER_NAME: &str = "localhost";

/// A self-signed certificate and its key.
pub(crate) struct DevTls {
    pub(crate) cert: CertificateDer<'static>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl DevTls {
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])?;
        Ok(Self {
            cert: certified.cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                certified.signing_key.serialize_der(),
            )),
        })
    }
}

/// The certificates of a `--ca` PEM file: a CA, or the server's own self-signed certificate.
pub(crate) fn load_ca(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the --ca file {}", path.display()))?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("no valid certificate in the --ca file {}", path.display()))?;
    anyhow::ensure!(
        !roots.is_empty(),
        "no certificate in the --ca file {}",
        path.display()
    );
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_ca_reads_a_pem_and_names_the_file_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()]).unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, certified.cert.pem()).unwrap();
        assert_eq!(load_ca(&good).unwrap(), vec![certified.cert.der().clone()]);

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = format!("{:#}", load_ca(&empty).unwrap_err());
        assert!(err.contains("empty.pem"), "{err}");

        let missing = dir.path().join("missing.pem");
        let err = format!("{:#}", load_ca(&missing).unwrap_err());
        assert!(err.contains("missing.pem"), "{err}");
    }
}
