//! What each subcommand does; `main.rs` only parses arguments.

use crate::config::{AuthMode, Config, ConfigError};
use crate::App;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::process::ExitCode;

/// `tollgate run`: start, serve (reloading on SIGHUP) until SIGTERM/SIGINT, drain, exit 0.
pub fn run(config_path: &Path) -> ExitCode {
    init_tracing();
    let config = match load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        // Listening for the stop signals before the ports open: a SIGTERM that arrives the
        // moment they do is a clean stop, not the default action that kills the process.
        // SIGHUP likewise: its default action would kill the process too.
        let stop = stop_signal();
        let mut hangups = hangup_signal();
        let running = match App::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e:#}");
                return ExitCode::from(1);
            }
        };
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(()) = hangups.recv() => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // Logged and counted by the reloader, success or not.
                    let _ = running.reload().await;
                }
            }
        }
        tracing::info!("shutting down: draining in-flight requests");
        running.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}

/// The async runtime. With one worker (`TOKIO_WORKER_THREADS=1`, as the benchmark harness
/// and small deployments use) tokio's current-thread scheduler does the same job without
/// work-stealing bookkeeping or cross-thread wake-ups; blocking work (argon2, SQLite) still
/// runs on the separate blocking pool either way.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let one_worker = std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|v| v.trim() == "1");
    if one_worker {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
}

/// The config as `run` and `check` both take it: parsed, and everything it names that
/// start-up would refuse checked (see [`crate::preflight`]).
fn load(config_path: &Path) -> Result<Config, ConfigError> {
    crate::preflight::load(config_path)
}

/// `tollgate check`: validate and print the route table.
pub fn check(config_path: &Path) -> ExitCode {
    match load(config_path) {
        Ok(config) => {
            print!("{}", route_table(&config));
            println!("{}: ok", config_path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// The routes as an aligned text table.
pub fn route_table(config: &Config) -> String {
    let mut rows = vec![[
        "ROUTE".to_string(),
        "HOST".to_string(),
        "PATH_PREFIX".to_string(),
        "AUTH".to_string(),
        "SCOPES".to_string(),
        "TIMEOUT".to_string(),
        "UPSTREAM".to_string(),
    ]];
    for r in &config.routes {
        rows.push([
            r.name.clone(),
            r.host.clone().unwrap_or_else(|| "*".to_string()),
            format!(
                "{}{}",
                r.path_prefix,
                if r.strip_prefix { " (stripped)" } else { "" }
            ),
            match r.auth {
                AuthMode::Bearer => "bearer".to_string(),
                AuthMode::None => "none".to_string(),
            },
            if r.scopes.is_empty() {
                "-".to_string()
            } else {
                r.scopes.join(" ")
            },
            humantime::format_duration(r.timeout).to_string(),
            r.upstreams
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `tollgate hash-password`: argon2id PHC string of a password. On a terminal it is
/// asked for twice without echo (prompts on the terminal, so stdout stays the hash alone);
/// from a pipe it is stdin with one trailing newline dropped, as scripts rely on.
pub fn hash_password() -> ExitCode {
    let password = if std::io::stdin().is_terminal() {
        ask_twice()
    } else {
        read_stdin()
    };
    let password = match password {
        Ok(p) => p,
        Err(why) => {
            eprintln!("{why}");
            return ExitCode::from(1);
        }
    };
    if password.is_empty() {
        eprintln!("the password is empty");
        return ExitCode::from(1);
    }
    match crate::secrets::hash_password(&password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot hash the password: {e}");
            ExitCode::from(1)
        }
    }
}

fn read_stdin() -> Result<String, String> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let password = input
        .strip_suffix('\n')
        .map(|p| p.strip_suffix('\r').unwrap_or(p))
        .unwrap_or(&input);
    Ok(password.to_string())
}

/// Both prompts on the terminal with echo off; a typo in either is caught by the mismatch.
fn ask_twice() -> Result<String, String> {
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map_err(|e| format!("cannot read the password from the terminal: {e}"))
    };
    let first = ask("Password: ")?;
    if first.is_empty() {
        return Err("the password is empty".to_string());
    }
    let second = ask("Repeat the password: ")?;
    if first != second {
        return Err("the passwords do not match".to_string());
    }
    Ok(first)
}

/// `tollgate gen-secret`: a new client secret and its hash, as two TOML lines.
pub fn gen_secret() -> ExitCode {
    let secret = crate::secrets::random_token();
    println!("client_secret = \"{secret}\"");
    println!(
        "secret_hash = \"{}\"",
        crate::secrets::fast_secret_hash(&secret)
    );
    ExitCode::SUCCESS
}

/// `tollgate gen-key`: a new PKCS#8 PEM signing key, printed or written to a new file that
/// only its owner can read. Its `kid` (RFC 7638 thumbprint) goes to stderr.
pub fn gen_key(alg: &str, out: Option<&Path>) -> ExitCode {
    let alg = match alg {
        "es256" => crate::jwt::Alg::Es256,
        "eddsa" => crate::jwt::Alg::EdDsa,
        other => {
            eprintln!("--alg {other:?}: use es256 or eddsa");
            return ExitCode::from(1);
        }
    };
    let made = crate::jwt::SigningKey::generate_pem(alg).and_then(|pem| {
        let key = crate::jwt::SigningKey::from_pem(&pem)?;
        Ok((pem, key.kid().to_string()))
    });
    let (pem, kid) = match made {
        Ok(m) => m,
        Err(e) => {
            eprintln!("cannot make a key: {e}");
            return ExitCode::from(1);
        }
    };
    match out {
        None => print!("{pem}"),
        Some(path) => {
            if let Err(e) = write_private(path, pem.as_bytes()) {
                eprintln!("{}: {e}", path.display());
                return ExitCode::from(1);
            }
        }
    }
    eprintln!("kid: {kid}");
    ExitCode::SUCCESS
}

/// Creates `path` (never overwriting) readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// The log on stderr: `RUST_LOG` filters it (default `info`); audit lines
/// ([`crate::audit`]) stay on at `info` unless `RUST_LOG` names the `audit` target itself.
/// Colour only on a terminal, and never with `NO_COLOR` set (https://no-color.org).
fn init_tracing() {
    let directives = log_directives(std::env::var("RUST_LOG").ok().as_deref());
    let filter = tracing_subscriber::EnvFilter::try_new(&directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,audit=info"));
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(use_colour(std::io::stderr().is_terminal(), no_color))
        .with_writer(std::io::stderr)
        .try_init();
}

/// SIGHUP, each one a reload request; registered when this is called. On other platforms
/// (or if it cannot be registered) nothing ever arrives and reload is not available.
fn hangup_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        // Several SIGHUPs during one reload make one more: the file is read
                        // afresh each time, so one later read covers them all.
                        let _ = tx.try_send(());
                    }
                });
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for SIGHUP: reload is off"),
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

/// `RUST_LOG` (default `info`), with `audit=info` added unless it says what to do with
/// audit lines itself.
fn log_directives(rust_log: Option<&str>) -> String {
    let base = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    if base
        .split(',')
        .any(|d| d.trim().starts_with(crate::audit::TARGET))
    {
        base.to_string()
    } else {
        format!("{base},{}=info", crate::audit::TARGET)
    }
}

fn use_colour(stderr_is_terminal: bool, no_color: bool) -> bool {
    stderr_is_terminal && !no_color
}

/// SIGTERM or SIGINT (Ctrl-C). The handlers are registered when this is called, not when
/// the future is first polled.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = int.recv() => {},
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_lines_stay_on_unless_rust_log_names_them() {
        let cases = [
            (None, "info,audit=info"),
            (Some(""), "info,audit=info"),
            (Some("warn"), "warn,audit=info"),
            (Some("warn,audit=off"), "warn,audit=off"),
            (Some("debug,hyper=info"), "debug,hyper=info,audit=info"),
        ];
        for (rust_log, want) in cases {
            assert_eq!(log_directives(rust_log), want, "{rust_log:?}");
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, false));
        assert!(!use_colour(true, true));
        assert!(!use_colour(false, false));
        assert!(!use_colour(false, true));
    }
}
