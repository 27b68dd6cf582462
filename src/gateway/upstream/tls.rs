//! TLS to `https://` upstreams: one rustls client configuration per configuration
//! (the webpki roots, plus the CA certificates of `[server] upstream_ca` when set), shared by
//! every `https://` target, and each target's server name (SNI and the name its certificate
//! must carry). ALPN offers `http/1.1` only: the pool's connections speak HTTP/1.1.
//!
//! The configuration keeps rustls's in-memory session cache, so a new connection to an
//! origin that was reached before resumes its TLS session instead of a full handshake.
//! Certificates are checked as rustls's webpki verifier does; there is no switch to turn
//! that off.

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::RootCertStore;
use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The rustls client configuration for every `https://` upstream of a configuration.
pub struct UpstreamTls {
    connector: TlsConnector,
    /// The `[server] upstream_ca` certificates it trusts besides the webpki roots.
    extra: Vec<CertificateDer<'static>>,
}

/// What a connection to one `https://` target needs: the configuration and its name.
#[derive(Clone)]
pub struct TlsTarget {
    connector: TlsConnector,
    name: ServerName<'static>,
}

// === impl UpstreamTls ===

impl UpstreamTls {
    /// The configuration trusting the webpki roots and `extra` (checked when the config
    /// was loaded: one that is not a usable trust anchor is skipped). Without `extra`, the
    /// process's one webpki-only configuration.
    pub fn with_extra(extra: &[CertificateDer<'static>]) -> Arc<UpstreamTls> {
        static WEBPKI_ONLY: OnceLock<Arc<UpstreamTls>> = OnceLock::new();
        if extra.is_empty() {
            return WEBPKI_ONLY
                .get_or_init(|| Arc::new(Self::build(&[])))
                .clone();
        }
        Arc::new(Self::build(extra))
    }

    fn build(extra: &[CertificateDer<'static>]) -> UpstreamTls {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        roots.add_parsable_certificates(extra.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring's provider supports rustls's default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        UpstreamTls {
            connector: TlsConnector::from(Arc::new(config)),
            extra: extra.to_vec(),
        }
    }

    /// The `[server] upstream_ca` certificates this configuration trusts (a reload that
    /// names the same keeps it, and its session cache).
    pub fn extra(&self) -> &[CertificateDer<'static>] {
        &self.extra
    }

    /// What connecting to `host` (a URI's host, an IPv6 literal in brackets) needs; `None`
    /// if it is no TLS server name (the config refuses such an upstream).
    pub fn target(&self, host: &str) -> Option<TlsTarget> {
        let name = ServerName::try_from(bare(host).to_string()).ok()?;
        Some(TlsTarget {
            connector: self.connector.clone(),
            name,
        })
    }
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("extra_roots", &self.extra.len())
            .finish()
    }
}

// === impl TlsTarget ===

impl TlsTarget {
    /// The client handshake on `tcp`: SNI is the target's host name (none for an IP
    /// address), its certificate must be valid for that name.
    pub async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("name", &self.name)
            .finish()
    }
}

/// A host in an `https://` upstream URL is a name rustls can check a certificate against
/// (config validation asks before any connection is made).
pub fn is_server_name(host: &str) -> bool {
    ServerName::try_from(bare(host)).is_ok()
}

/// A URI's host as rustls reads names: an IPv6 literal without its brackets.
fn bare(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_become_server_names_ipv6_literals_without_brackets() {
        let tls = UpstreamTls::with_extra(&[]);
        for host in ["api.example.com", "127.0.0.1", "[::1]", "localhost"] {
            assert!(tls.target(host).is_some(), "{host}");
            assert!(is_server_name(host), "{host}");
        }
        assert!(!is_server_name("bad host"));
    }

    #[test]
    fn the_webpki_only_configuration_is_made_once() {
        let (a, b) = (UpstreamTls::with_extra(&[]), UpstreamTls::with_extra(&[]));
        assert!(Arc::ptr_eq(&a, &b));
    }
}
