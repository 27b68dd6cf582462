//! The reload under load (issue 10): clients on keep-alive and new connections, plain and
//! TLS, GET and POST, open and guarded routes, while the config is reloaded every half
//! second, alternating two valid files with different upstreams, routes and certificates.
//! Not one request may fail, and every new handshake after a reload gets that reload's
//! certificate.

use super::{reload_ok, SERVER};
use crate::common::{self, remote_verify, route, Introspector, TestGateway, Upstream};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reloads done under load.
const RELOADS: usize = 8;
/// The most requests one worker sends (it stops earlier once the reloads are done).
const MAX_PER_WORKER: usize = 4000;
const WORKERS: usize = 4;
const TOKEN: &str = "load-token";

/// A new self-signed certificate for `localhost`, written as `{name}.crt` and `{name}.key`
/// into `dir`; returns the certificate PEM.
pub fn write_cert(dir: &Path, name: &str) -> String {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write cert");
    std::fs::write(dir.join(format!("{name}.key")), key_pair.serialize_pem()).expect("write key");
    cert.pem()
}

/// The DER of the first certificate in `pem`.
pub fn der(pem: &str) -> Vec<u8> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .to_vec()
}

/// The certificate a new TLS handshake with `addr` is given (trusting `roots`).
pub async fn served_cert(addr: SocketAddr, roots: &[String]) -> Vec<u8> {
    let mut store = rustls::RootCertStore::empty();
    for pem in roots {
        store.add(der(pem).into()).expect("a CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (_, session) = tls.get_ref();
    session.peer_certificates().expect("a certificate")[0].to_vec()
}

/// The two files the test alternates between: `b` has other upstreams, one more route and
/// the other certificate.
fn config(one: &Upstream, two: &Upstream, introspector: &Introspector, b: bool) -> String {
    let (up, cert) = if b { (two, "b") } else { (one, "a") };
    let extra = if b {
        route("extra", "/extra", &up.url(), "auth = \"none\"")
    } else {
        String::new()
    };
    format!(
        "{SERVER}\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{cert}.crt\"\nkey = \"{cert}.key\"\n\n{}{}{}{extra}",
        remote_verify(introspector, ""),
        route("open", "/open", &up.url(), "auth = \"none\""),
        route("api", "/api", &up.url(), "scopes = [\"email\"]"),
    )
}

/// One worker's clients: plain and TLS, each pooled (keep-alive) and one-shot.
fn clients(gw: &TestGateway, roots: &[String]) -> Vec<(reqwest::Client, String)> {
    let tls_addr = gw.tls.expect("TLS listener");
    let tls = |keep_alive: bool| {
        let mut b = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .resolve("localhost", tls_addr);
        for pem in roots {
            b = b
                .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("PEM"));
        }
        if !keep_alive {
            b = b.pool_max_idle_per_host(0);
        }
        b.build().expect("TLS client")
    };
    let plain = |keep_alive: bool| {
        let mut b = reqwest::Client::builder();
        if !keep_alive {
            b = b.pool_max_idle_per_host(0);
        }
        b.build().expect("client")
    };
    let tls_base = format!("https://localhost:{}", tls_addr.port());
    vec![
        (plain(true), gw.url("")),
        (plain(false), gw.url("")),
        (tls(true), tls_base.clone()),
        (tls(false), tls_base),
    ]
}

/// Sends requests until `done` (or [`MAX_PER_WORKER`]); returns how many, and records
/// every failure.
async fn worker(
    id: usize,
    clients: Vec<(reqwest::Client, String)>,
    done: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
) -> usize {
    let mut sent = 0;
    while sent < MAX_PER_WORKER && !done.load(Ordering::Relaxed) {
        let (client, base) = &clients[(id + sent) % clients.len()];
        let request = match sent % 3 {
            0 => client.get(format!("{base}/open/get")),
            1 => client.post(format!("{base}/open/post")).body("posted body"),
            _ => client.get(format!("{base}/api/guarded")).bearer_auth(TOKEN),
        };
        let what = format!("request {sent} of worker {id} to {base}");
        match request.send().await {
            Ok(r) if r.status() == 200 => match r.text().await {
                Ok(body) if body.contains("\"upstream\"") => {}
                Ok(body) => failures
                    .lock()
                    .expect("lock")
                    .push(format!("{what}: body {body}")),
                Err(e) => failures
                    .lock()
                    .expect("lock")
                    .push(format!("{what}: body: {e:?}")),
            },
            Ok(r) => failures
                .lock()
                .expect("lock")
                .push(format!("{what}: status {}", r.status())),
            Err(e) => failures
                .lock()
                .expect("lock")
                .push(format!("{what}: {e:?}")),
        }
        sent += 1;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_fails_no_request_and_swaps_the_certificate() {
    let (one, two) = (Upstream::named("one").await, Upstream::named("two").await);
    let introspector = Introspector::spawn(Duration::ZERO).await;
    introspector.active(TOKEN, "alice", "email");
    let dir = tempfile::tempdir().expect("temp dir");
    let certs = [write_cert(dir.path(), "a"), write_cert(dir.path(), "b")];
    let roots = certs.to_vec();
    let gw = TestGateway::spawn_in(dir, &config(&one, &two, &introspector, false)).await;
    let tls = gw.tls.expect("TLS listener");
    assert_eq!(served_cert(tls, &roots).await, der(&certs[0]));

    let done = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            tokio::spawn(worker(
                id,
                clients(&gw, &roots),
                done.clone(),
                failures.clone(),
            ))
        })
        .collect();
    let reloads = AtomicUsize::new(0);
    let reloading = async {
        for i in 0..RELOADS {
            // The pace the issue asks for; the workers run meanwhile.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let b = i % 2 == 0;
            reload_ok(&gw, &config(&one, &two, &introspector, b)).await;
            reloads.fetch_add(1, Ordering::Relaxed);
            let expected = &certs[usize::from(b)];
            assert_eq!(
                served_cert(tls, &roots).await,
                der(expected),
                "after reload {i}"
            );
        }
        done.store(true, Ordering::Relaxed);
    };
    tokio::time::timeout(Duration::from_secs(30), reloading)
        .await
        .expect("the reloads finish within 30 s");
    let mut total = 0;
    for w in workers {
        total += tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("the workers stop")
            .expect("worker task");
    }
    let failures = std::mem::take(&mut *failures.lock().expect("lock"));
    assert!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(reloads.load(Ordering::Relaxed), RELOADS);
    assert!(total >= 100, "only {total} requests ran during the reloads");
    assert!(
        one.hits() > 0 && two.hits() > 0,
        "both configurations served"
    );
    let metrics = gw.metrics().await;
    let success = common::count(
        &metrics,
        "tollgate_config_reloads_total",
        &[("result", "success")],
    );
    assert_eq!(success, RELOADS as u64);
    eprintln!("reload under load: {total} requests, {RELOADS} reloads, 0 failures");
}
