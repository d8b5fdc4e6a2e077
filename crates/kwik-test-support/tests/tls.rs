//! The test PKI against raw quinn over loopback: trusted handshakes succeed with the requested
//! ALPN, untrusted ones fail with a certificate error on both sides.

use std::time::Duration;

use kwik_test_support::{SERVER_NAME, TestPki};
use quinn::crypto::rustls::HandshakeData;
use quinn::{ConnectionError, Endpoint, TransportErrorCode};
use rustls::AlertDescription;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const ALPN: &[u8] = b"kwik-test";

/// Guards against hangs; never reached when the code under test works.
const GUARD: Duration = Duration::from_secs(30);

fn endpoints(server_pki: &TestPki, client_pki: &TestPki) -> (Endpoint, Endpoint) {
    let server = Endpoint::server(
        server_pki.quinn_server_config(&[ALPN]).unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let mut client = Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    client.set_default_client_config(client_pki.quinn_client_config(&[ALPN]).unwrap());
    (server, client)
}

async fn stop(server: Endpoint, client: Endpoint) {
    client.close(0u32.into(), b"done");
    server.close(0u32.into(), b"done");
    tokio::time::timeout(GUARD, async {
        tokio::join!(client.wait_idle(), server.wait_idle())
    })
    .await
    .unwrap();
}

/// Runs one handshake, `client` dialing `server` as `server_name`: what each side's connection
/// attempt ended with (bounded by `GUARD`).
async fn handshake(
    server: &Endpoint,
    client: &Endpoint,
    server_name: &str,
) -> (
    Result<quinn::Connection, ConnectionError>,
    Result<quinn::Connection, ConnectionError>,
) {
    let server_addr = server.local_addr().unwrap();
    let accept = async { server.accept().await.unwrap().await };
    let connect = async { client.connect(server_addr, server_name).unwrap().await };
    tokio::time::timeout(GUARD, async { tokio::join!(accept, connect) })
        .await
        .unwrap()
}

#[tokio::test]
async fn trusted_handshake_negotiates_alpn() {
    let pki = TestPki::generate().unwrap();
    let (server, client) = endpoints(&pki, &pki);
    let (at_server, at_client) = handshake(&server, &client, SERVER_NAME).await;
    let (at_server, at_client) = (at_server.unwrap(), at_client.unwrap());

    let data = at_client.handshake_data().unwrap();
    let data = data.downcast::<HandshakeData>().unwrap();
    assert_eq!(data.protocol.as_deref(), Some(ALPN));
    let data = at_server.handshake_data().unwrap();
    let data = data.downcast::<HandshakeData>().unwrap();
    assert_eq!(data.server_name.as_deref(), Some(SERVER_NAME));
    let chain = at_client.peer_identity().unwrap();
    let chain = chain.downcast::<Vec<CertificateDer<'static>>>().unwrap();
    assert_eq!(*chain, pki.cert_chain());

    stop(server, client).await;
}

#[tokio::test]
async fn ip_address_is_a_valid_server_name() {
    let pki = TestPki::generate().unwrap();
    let (server, client) = endpoints(&pki, &pki);
    let (at_server, at_client) = handshake(&server, &client, "127.0.0.1").await;
    at_server.unwrap();
    at_client.unwrap();

    stop(server, client).await;
}

#[tokio::test]
async fn client_not_trusting_the_ca_fails_with_a_certificate_error() {
    let pki = TestPki::generate().unwrap();
    let stranger = TestPki::untrusted().unwrap();
    let (server, client) = endpoints(&pki, &stranger);
    let (at_server, at_client) = handshake(&server, &client, SERVER_NAME).await;
    let (at_server, at_client) = (at_server.unwrap_err(), at_client.unwrap_err());

    let unknown_ca = TransportErrorCode::crypto(u8::from(AlertDescription::UnknownCA));
    match at_client {
        ConnectionError::TransportError(error) => {
            assert_eq!(error.code, unknown_ca);
            assert!(error.reason.contains("UnknownIssuer"), "{}", error.reason);
        }
        other => panic!("expected a local TLS error, got {other:?}"),
    }
    match at_server {
        ConnectionError::ConnectionClosed(close) => assert_eq!(close.error_code, unknown_ca),
        other => panic!("expected the client's close, got {other:?}"),
    }

    stop(server, client).await;
}

#[test]
fn every_pki_is_a_fresh_ca() {
    let a = TestPki::generate().unwrap();
    let b = TestPki::generate().unwrap();
    assert_ne!(a.ca_cert(), b.ca_cert());
    assert_ne!(a.leaf_cert(), b.leaf_cert());
    assert_ne!(a.ca_cert(), a.leaf_cert());
}

#[test]
fn pem_files_round_trip() {
    let pki = TestPki::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = pki.write_pem(dir.path()).unwrap();

    assert_eq!(
        CertificateDer::from_pem_file(&files.ca).unwrap(),
        pki.ca_cert()
    );
    assert_eq!(
        CertificateDer::from_pem_file(&files.cert).unwrap(),
        pki.leaf_cert()
    );
    assert_eq!(
        PrivateKeyDer::from_pem_file(&files.key)
            .unwrap()
            .secret_der(),
        pki.key().secret_der()
    );
}

#[test]
fn pem_into_a_missing_directory_is_a_typed_error() {
    let pki = TestPki::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    match pki.write_pem(&missing) {
        Err(kwik_test_support::CertError::Write { path, .. }) => {
            assert_eq!(path, missing.join("ca.pem"));
        }
        other => panic!("expected a write error, got {other:?}"),
    }
}
