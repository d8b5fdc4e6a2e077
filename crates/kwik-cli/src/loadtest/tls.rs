//! The certificate of a loadtest run: self-signed for `localhost`, made fresh, trusted by the
//! run's clients and nothing else (verification stays on). Every variant uses the same one.

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The name the certificate is issued for and the clients verify.
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
