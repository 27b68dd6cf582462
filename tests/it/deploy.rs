//! The deploy files in deploy/: the alert rules and dashboard name only metrics a running
//! tollgate exports, promtool accepts the rules, systemd accepts the unit, and the
//! container's config passes `tollgate check` with listeners on every address.

use crate::common::oauth::{AuthConfig, CLI_APP, PASSWORD, REPORTS, USER};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tollgate");

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

/// Every `tollgate_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("tollgate_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The names the rules use: everything outside YAML comments.
fn names_in_rules() -> BTreeSet<String> {
    let text = read("prometheus/alerts.yml");
    let code: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    metric_names(&code.join("\n"))
}

/// The names the dashboard's queries use (`expr`, variable queries).
fn names_in_dashboard() -> BTreeSet<String> {
    let json: serde_json::Value =
        serde_json::from_str(&read("grafana/tollgate.json")).expect("the dashboard is JSON");
    let mut queries = String::new();
    collect_queries(&json, &mut queries);
    metric_names(&queries)
}

fn collect_queries(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push_str(s);
                        out.push('\n');
                    }
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_queries(v, out)),
        _ => {}
    }
}

/// Sample names on /metrics, and their family names (a histogram's `_bucket`, `_sum` and
/// `_count` belong to its family).
fn exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        names.insert(name.to_string());
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = name.strip_suffix(suffix) {
                names.insert(family.to_string());
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_alerts_and_the_dashboard_name_is_on_metrics() {
    let server = AuthConfig::default()
        .allow_password_grant(true)
        .spawn()
        .await;
    // Traffic that makes each series exist: tokens issued, a guarded call, a token
    // endpoint error, failed logins up to a ban.
    let token = server
        .token(
            CLI_APP,
            &[
                ("grant_type", "password"),
                ("username", USER),
                ("password", PASSWORD),
                ("scope", "email"),
            ],
        )
        .await;
    assert_eq!(token.status, 200, "{}", token.json);
    let (status, _) = server.call("/api/mail/inbox", token.access_token()).await;
    assert_eq!(status, 200);
    let bad = server.token(REPORTS, &[("grant_type", "bogus")]).await;
    assert_eq!(bad.status, 400, "{}", bad.json);
    for _ in 0..6 {
        let wrong = server
            .token(
                CLI_APP,
                &[
                    ("grant_type", "password"),
                    ("username", USER),
                    ("password", "not-the-password"),
                ],
            )
            .await;
        assert_eq!(wrong.status, 400, "{}", wrong.json);
    }
    let metrics = server.gw.metrics().await;
    let exported = exported(&metrics);
    for (file, names) in [
        ("prometheus/alerts.yml", names_in_rules()),
        ("grafana/tollgate.json", names_in_dashboard()),
    ] {
        assert!(names.len() >= 5, "deploy/{file} names {names:?}");
        let missing: Vec<&String> = names.iter().filter(|n| !exported.contains(*n)).collect();
        assert!(
            missing.is_empty(),
            "deploy/{file} names metrics /metrics does not have: {missing:?}\n{metrics}"
        );
    }
}

#[test]
fn the_alert_rules_pass_promtool() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("prometheus/alerts.yml"))
        .output()
        .expect(
            "promtool runs (Debian: apt-get install --no-install-recommends prometheus, \
             or ./test.sh, which does)",
        );
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    // verify insists that ExecStart's program exists: point the unit at this build's binary.
    let unit = read("tollgate.service").replace("/usr/local/bin/tollgate ", &format!("{BIN} "));
    assert!(
        unit.contains(BIN),
        "the unit starts /usr/local/bin/tollgate"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tollgate.service");
    std::fs::write(&path, unit).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (Debian: apt-get install systemd, or ./test.sh, which does)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("tollgate.service"),
        "warnings about the unit:\n{text}"
    );
}

#[test]
fn the_container_config_passes_check_and_listens_on_every_address() {
    let path = deploy("gateway.docker.toml");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("tollgate runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = tollgate::Config::load(&path).expect("valid");
    assert!(config.server.listen.ip().is_unspecified());
    assert!(config.server.internal_listen.ip().is_unspecified());
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
            .expect("Dockerfile");
    assert!(dockerfile.contains("COPY deploy/gateway.docker.toml /etc/tollgate/gateway.toml"));
    assert!(dockerfile.contains("STOPSIGNAL SIGTERM"));
    assert!(dockerfile.contains("USER tollgate"));
}
