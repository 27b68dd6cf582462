//! Everything `tollgate run` needs from outside `gateway.toml`, checked without starting
//! anything: the files the config names (users file, TLS certificate and key, LDAP CA
//! file), the token store, and listener addresses that cannot all be bound.
//!
//! `run`, `check` and a reload (SIGHUP) all take the config through [`load`], so `check`
//! refuses whatever `run` or a reload would refuse, with the same messages. It binds no port, opens no store
//! and contacts no server: a port that another process holds, or an LDAP server that is
//! down, is found only by `run`. Secret files and JWT signing keys are read while the
//! config is parsed.

use crate::config::{AccessTarget, Config, ConfigError, Problem, StoreSpec, TlsConfig, UserSource};
use crate::directory::file::FileDirectory;
use crate::directory::ldap::LdapDirectory;
use crate::error::error_chain;
use crate::server::tls::{self, TlsError};
use std::net::SocketAddr;
use std::path::Path;

/// The config as `run`, `check` and a reload all take it: parsed, then checked here.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    check(&config)?;
    Ok(config)
}

/// The problems `run` would meet at start-up, as one error pointing at the config's keys.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    let mut problems = Vec::new();
    listeners(config, &mut problems);
    tls_files(config, &mut problems);
    store(config, &mut problems);
    users(config, &mut problems);
    access_log(config, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(config.refuse(problems))
    }
}

/// Two listeners on one fixed address: the second bind would fail.
fn listeners(config: &Config, problems: &mut Vec<Problem>) {
    let mut seen: Vec<(&str, SocketAddr)> = vec![("[server].listen", config.server.listen)];
    let mut others = vec![("[server].internal_listen", config.server.internal_listen)];
    if let Some(tls) = &config.server.tls {
        others.push(("[server.tls].listen", tls.listen));
    }
    for (key, addr) in others {
        // Port 0 asks the OS for a free port: never a clash.
        let clash = seen
            .iter()
            .find(|(_, other)| addr.port() != 0 && *other == addr);
        if let Some((other_key, _)) = clash {
            problems.push(Problem::new(
                key,
                format!("{addr} is already the address of {other_key}"),
            ));
        }
        seen.push((key, addr));
    }
}

fn tls_files(config: &Config, problems: &mut Vec<Problem>) {
    let Some(t) = &config.server.tls else {
        return;
    };
    if let Err(e) = tls::load(&t.cert, &t.key) {
        problems.push(tls_problem(t, &e));
    }
}

/// A certificate or key that does not load, under the key that names the file at fault.
pub fn tls_problem(t: &TlsConfig, e: &TlsError) -> Problem {
    let key = match e {
        TlsError::Read { path, .. } if *path == t.key => "[server.tls].key",
        TlsError::NoKey { .. } | TlsError::Rustls(_) => "[server.tls].key",
        TlsError::Read { .. } | TlsError::NoCertificate { .. } => "[server.tls].cert",
    };
    Problem::new(key, error_chain(e))
}

/// What opening the store would trip over, without creating or migrating anything.
fn store(config: &Config, problems: &mut Vec<Problem>) {
    match &config.oauth.store {
        StoreSpec::Memory => {}
        StoreSpec::Sqlite(path) => {
            if let Err(why) = sqlite_path(path) {
                problems.push(Problem::new("[oauth].store", why));
            }
        }
        // Whether Redis answers is known only by connecting, which `check` does not do;
        // the URL's form and the password file were checked with the config.
        StoreSpec::Redis(_) => {}
    }
}

/// An existing database must be a file this process can read and write; a new one needs
/// its nearest existing ancestor to be a directory (start-up creates the rest).
fn sqlite_path(path: &Path) -> Result<(), String> {
    if path.exists() {
        if !path.is_file() {
            return Err(format!("{} is not a file", path.display()));
        }
        return std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| format!("cannot open {} for writing: {e}", path.display()));
    }
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
        if d.exists() {
            return if d.is_dir() {
                Ok(())
            } else {
                Err(format!(
                    "cannot create {}: {} is not a directory",
                    path.display(),
                    d.display()
                ))
            };
        }
        dir = d.parent();
    }
    Ok(())
}

/// The users file loads (when `[users]` names one, or it exists), the LDAP CA file loads.
fn users(config: &Config, problems: &mut Vec<Problem>) {
    match &config.users.source {
        UserSource::File { path, required } => {
            if !required && !path.exists() {
                return;
            }
            if let Err(e) = FileDirectory::load(path) {
                problems.push(Problem::new("[users].file", error_chain(&e)));
            }
        }
        UserSource::Ldap(ldap) => {
            if let Err(e) = LdapDirectory::new((**ldap).clone()) {
                problems.push(Problem::new("[users.ldap].ca_file", error_chain(&e)));
            }
        }
    }
}

/// An access-log file must be a file this process can append to, or one it can create in
/// an existing directory (start-up creates the file, not directories, as nginx does).
fn access_log(config: &Config, problems: &mut Vec<Problem>) {
    let AccessTarget::File(path) = &config.log.access else {
        return;
    };
    let why = if path.exists() {
        if path.is_file() {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .err()
                .map(|e| format!("cannot open {} for writing: {e}", path.display()))
        } else {
            Some(format!("{} is not a file", path.display()))
        }
    } else {
        match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => Some(format!(
                "cannot create {}: {} is not a directory",
                path.display(),
                dir.display()
            )),
            _ => None,
        }
    };
    if let Some(why) = why {
        problems.push(Problem::new("[log].access", why));
    }
}
