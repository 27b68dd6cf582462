//! The [`Checker`] every section's parser writes its problems into, and the small value
//! rules (durations, sizes, URLs, identifiers, scope tokens) they share.
//!
//! It knows no section: [`super::validate`] (the whole file), [`super::entries`] (clients
//! and routes) and [`super::users`] all call into it, and it calls none of them, so the
//! dependency runs one way.

use super::{Problem, Secret};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Accumulates problems while the typed config is built.
pub(super) struct Checker<'a> {
    base: &'a Path,
    problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    /// A checker for a file in the directory `base` (relative paths are resolved there).
    pub(super) fn new(base: &'a Path) -> Self {
        Self {
            base,
            problems: Vec::new(),
        }
    }

    /// Every problem recorded, in order.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    pub(super) fn problem(&mut self, key: impl Into<String>, why: impl Into<String>) {
        self.problems.push(Problem::new(key, why));
    }

    /// Deserializes one table, recording the serde message under `key` on failure. Unknown
    /// keys do not stop it: each is one problem of its own (`[server].lisen: unknown key`)
    /// and the rest of the table is still read and checked, so a typo brings no follow-on
    /// problems from a section left at its defaults.
    pub(super) fn section<T: DeserializeOwned>(
        &mut self,
        key: &str,
        value: Option<toml::Value>,
    ) -> Option<T> {
        let value = value.unwrap_or_else(|| toml::Value::Table(toml::Table::new()));
        let mut unknown = Vec::new();
        let result = serde_ignored::deserialize(value, |path| unknown.push(key_path(key, &path)));
        for path in unknown {
            self.problem(path, "unknown key");
        }
        match result {
            Ok(t) => Some(t),
            Err(e) => {
                self.problem(key, e.message().trim().to_string());
                None
            }
        }
    }

    /// Deserializes each entry of an array of tables on its own.
    pub(super) fn entries<T: DeserializeOwned>(
        &mut self,
        section: &str,
        value: Option<toml::Value>,
    ) -> Vec<T> {
        let items = match value {
            None => return Vec::new(),
            Some(toml::Value::Array(items)) => items,
            Some(_) => {
                self.problem(format!("[[{section}]]"), "must be an array of tables");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let named = item.get("name").or_else(|| item.get("id"));
            let label = entry_label(section, i, named.and_then(|v| v.as_str()));
            if let Some(t) = self.section::<T>(&label, Some(item)) {
                out.push(t);
            }
        }
        out
    }

    pub(super) fn duration(&mut self, key: &str, value: Option<&str>, default: &str) -> Duration {
        let text = value.unwrap_or(default);
        match parse_duration(text) {
            Some(d) => d,
            None => {
                self.problem(
                    key,
                    format!("{text:?} is not a duration like \"30s\", \"5m\", \"1h\", \"30d\""),
                );
                Duration::ZERO
            }
        }
    }

    /// A duration that must be longer than zero.
    pub(super) fn timeout(&mut self, key: &str, value: Option<&str>, default: &str) -> Duration {
        let d = self.duration(key, value, default);
        if d.is_zero() && value.is_some_and(|v| parse_duration(v).is_some()) {
            self.problem(key, "must be longer than zero");
        }
        d
    }

    /// A size in bytes, larger than zero.
    pub(super) fn size(&mut self, key: &str, value: Option<&str>, default: u64) -> u64 {
        let Some(text) = value else {
            return default;
        };
        match parse_size(text) {
            Some(0) => {
                self.problem(key, "must be larger than zero");
                default
            }
            Some(n) => n,
            None => {
                self.problem(
                    key,
                    format!(
                        "{text:?} is not a size like \"512KiB\", \"10MiB\" or \"1GiB\" \
                         (units B, KiB, MiB, GiB, or KB, MB, GB for powers of 1000)"
                    ),
                );
                default
            }
        }
    }

    pub(super) fn socket_addr(&mut self, key: &str, value: &str) -> SocketAddr {
        value.parse().unwrap_or_else(|_| {
            self.problem(
                key,
                format!("{value:?} is not an address like \"127.0.0.1:8080\""),
            );
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    /// A secret given inline or in a file (one trailing newline dropped), exactly one of
    /// the two; `missing` says why it is required.
    pub(super) fn secret(
        &mut self,
        (inline_key, inline): (&str, Option<&str>),
        (file_key, file): (&str, Option<&str>),
        missing: &str,
    ) -> Secret {
        let value = match (inline, file) {
            (Some(s), None) => s.to_string(),
            (None, Some(f)) => match std::fs::read_to_string(self.path(f)) {
                Ok(s) => s.trim_end_matches(['\r', '\n']).to_string(),
                Err(e) => {
                    self.problem(file_key, format!("cannot read {f:?}: {e}"));
                    String::new()
                }
            },
            (Some(_), Some(_)) => {
                self.problem(
                    inline_key,
                    format!("set {inline_key} or {file_key}, not both"),
                );
                String::new()
            }
            (None, None) => {
                self.problem(inline_key, missing);
                String::new()
            }
        };
        Secret::new(value)
    }

    pub(super) fn path(&self, p: &str) -> PathBuf {
        self.base.join(p)
    }
}

/// Names an array entry by its `name` or `id` when it has one, else by position.
pub(super) fn entry_label(section: &str, index: usize, named: Option<&str>) -> String {
    match named {
        Some(name) => format!("[[{section}]] {name:?}"),
        None => format!("[[{section}]] #{}", index + 1),
    }
}

/// The key path of a key inside the table labelled `table`: `[server]` + `tls.colour` is
/// `[server.tls].colour`, `[[routes]] "mail"` + `colour` is `[[routes]] "mail".colour`.
fn key_path(table: &str, path: &serde_ignored::Path) -> String {
    fn segments(path: &serde_ignored::Path, out: &mut Vec<String>) {
        match path {
            serde_ignored::Path::Root => {}
            serde_ignored::Path::Seq { parent, index } => {
                segments(parent, out);
                out.push(index.to_string());
            }
            serde_ignored::Path::Map { parent, key } => {
                segments(parent, out);
                out.push(key.clone());
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => segments(parent, out),
        }
    }
    let mut parts = Vec::new();
    segments(path, &mut parts);
    let Some(last) = parts.pop() else {
        return table.to_string();
    };
    match table.strip_suffix(']').filter(|_| !table.starts_with("[[")) {
        Some(open) if !parts.is_empty() => format!("{open}.{}].{last}", parts.join(".")),
        _ if parts.is_empty() => format!("{table}.{last}"),
        _ => format!("{table}.{}.{last}", parts.join(".")),
    }
}

/// Parses durations such as `"30s"`, `"5m"`, `"1h"`, `"30d"`, `"250ms"`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim()).ok()
}

/// Parses sizes such as `"512KiB"`, `"10MiB"`, `"1GiB"`, `"100KB"` (powers of 1000) or
/// `"800B"`: a whole number and a unit (case-insensitive, a space between allowed).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let factor: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1_000_000,
        "mib" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

pub(super) fn is_http_url(u: &str) -> bool {
    u.parse::<http::Uri>()
        .map(|uri| matches!(uri.scheme_str(), Some("http") | Some("https")) && uri.host().is_some())
        .unwrap_or(false)
}

/// An issuer or audience as compared against token claims: non-empty visible ASCII or
/// non-ASCII text, without spaces or control characters (RFC 7519 StringOrURI in practice).
pub(super) fn is_identifier(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}
