//! Certificates made at run time with rcgen, so no key is ever committed, and a tollgate
//! with its HTTPS listener switched on.

use super::TestGateway;
use std::path::Path;

/// A self-signed certificate for `localhost` and `127.0.0.1`, written as `cert.pem` and
/// `key.pem` into `dir`; returns the certificate PEM for the client to trust.
pub fn write_self_signed(dir: &Path) -> String {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("rcgen makes a certificate");
    let cert_pem = cert.pem();
    std::fs::write(dir.join("cert.pem"), &cert_pem).expect("write cert.pem");
    std::fs::write(dir.join("key.pem"), key_pair.serialize_pem()).expect("write key.pem");
    cert_pem
}

/// tollgate with plain, internal and TLS listeners on port 0 and `body` (routes, verify)
/// after the `[server]` section; certificate paths are relative to the config file. As in
/// the application, HTTP/1.1 over TLS starts on the fast lane.
pub async fn spawn_gateway(body: &str) -> (TestGateway, String) {
    spawn_gateway_with(body, true).await
}

/// [`spawn_gateway`] with HTTP/1.1 over TLS on the fast lane (`http1_fast_lane`, as in the
/// application) or on hyper alone (a setting only tests have: hyper's HTTP/1.1 engine
/// behind a listener of its own).
pub async fn spawn_gateway_with(body: &str, http1_fast_lane: bool) -> (TestGateway, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_pem = write_self_signed(dir.path());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n\n\
         [server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n{body}"
    );
    let gateway = TestGateway::spawn_in_with(dir, &config, |config| {
        if let Some(tls) = config.server.tls.as_mut() {
            tls.http1_fast_lane = http1_fast_lane;
        }
    })
    .await;
    (gateway, cert_pem)
}

/// A client builder that trusts only `cert_pem` and resolves `localhost` to the TLS listener.
pub fn builder(cert_pem: &str, gateway: &TestGateway) -> reqwest::ClientBuilder {
    let addr = gateway.tls.expect("the TLS listener is configured");
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("PEM"))
        .resolve("localhost", addr)
        .https_only(true)
}

/// A client that trusts only `cert_pem` and resolves `localhost` to the TLS listener.
pub fn client(cert_pem: &str, gateway: &TestGateway, http1_only: bool) -> reqwest::Client {
    let mut builder = builder(cert_pem, gateway);
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().expect("TLS client builds")
}

/// `https://localhost:PORT{path}` on the gateway's TLS listener.
pub fn url(gateway: &TestGateway, path: &str) -> String {
    let addr = gateway.tls.expect("the TLS listener is configured");
    format!("https://localhost:{}{path}", addr.port())
}

/// A raw TLS connection to the gateway's TLS listener (HTTP/1.1 by ALPN), trusting only
/// `cert_pem`: for requests a client library would not send as written.
pub async fn connect_raw(
    cert_pem: &str,
    gateway: &TestGateway,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    connect_raw_alpn(cert_pem, gateway, &[b"http/1.1"]).await
}

/// [`connect_raw`] offering `alpn` (none at all when empty).
pub async fn connect_raw_alpn(
    cert_pem: &str,
    gateway: &TestGateway,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut cert_pem.as_bytes()) {
        roots.add(cert.expect("PEM")).expect("a CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(gateway.tls.expect("the TLS listener is configured"))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// A certificate authority made at run time, its certificate in `ca.pem` in a directory of
/// its own (for `[server] upstream_ca`), and the server certificates it issues.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a CA certificate");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).expect("write ca.pem");
        TestCa { cert, key, dir }
    }

    /// The CA certificate's PEM file.
    pub fn pem_path(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A rustls server configuration presenting a certificate this CA issued for `names`
    /// (DNS names or IP addresses), offering ALPN `http/1.1` only.
    pub fn server_config(&self, names: &[&str]) -> std::sync::Arc<rustls::ServerConfig> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = rcgen::CertificateParams::new(names).expect("leaf params");
        let key = rcgen::KeyPair::generate().expect("a leaf key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("a leaf certificate");
        let der_key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("default versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der_key)
            .expect("a server configuration");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        std::sync::Arc::new(config)
    }
}
