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
/// after the `[server]` section; certificate paths are relative to the config file.
pub async fn spawn_gateway(body: &str) -> (TestGateway, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_pem = write_self_signed(dir.path());
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ninternal_listen = \"127.0.0.1:0\"\n\n\
         [server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"cert.pem\"\nkey = \"key.pem\"\n\n{body}"
    );
    (TestGateway::spawn_in(dir, &config).await, cert_pem)
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
