//! `[users]`, `[users.ldap]` and `[users.throttle]`: raw → typed, problems collected.

use super::checker::Checker;
use super::raw::{RawLdap, RawThrottle, RawUsers};
use super::{LdapBind, LdapConfig, ThrottleConfig, UserSource, UsersConfig};
use std::path::PathBuf;
use std::time::Duration;

pub(super) fn users(ck: &mut Checker, raw: RawUsers, required: bool) -> UsersConfig {
    let source = match raw.source.as_deref().unwrap_or("file") {
        "file" => UserSource::File {
            path: ck.path(raw.file.as_deref().unwrap_or("users.toml")),
            required,
        },
        "ldap" => match raw.ldap {
            Some(ldap) => UserSource::Ldap(Box::new(ldap_config(ck, ldap))),
            None => {
                ck.problem("[users.ldap]", "required when [users].source = \"ldap\"");
                UserSource::File {
                    path: PathBuf::new(),
                    required,
                }
            }
        },
        other => {
            ck.problem(
                "[users].source",
                format!("{other:?} is not \"file\" or \"ldap\""),
            );
            UserSource::File {
                path: PathBuf::new(),
                required,
            }
        }
    };
    UsersConfig {
        source,
        throttle: throttle(ck, raw.throttle.unwrap_or_default()),
    }
}

fn throttle(ck: &mut Checker, raw: RawThrottle) -> ThrottleConfig {
    let t = ThrottleConfig {
        max_failures_per_user: raw.max_failures_per_user.unwrap_or(5),
        max_failures_per_ip: raw.max_failures_per_ip.unwrap_or(20),
        window: ck.duration("[users.throttle].window", raw.window.as_deref(), "15m"),
        ban: ck.duration("[users.throttle].ban", raw.ban.as_deref(), "15m"),
    };
    if t.max_failures_per_user == 0 || t.max_failures_per_ip == 0 {
        ck.problem(
            "[users.throttle]",
            "max_failures_per_user and max_failures_per_ip must be at least 1",
        );
    }
    if t.window < Duration::from_secs(1) || t.ban < Duration::from_secs(1) {
        ck.problem("[users.throttle]", "window and ban must be at least 1s");
    }
    t
}

fn ldap_config(ck: &mut Checker, raw: RawLdap) -> LdapConfig {
    let url_ok = raw.url.starts_with("ldap://") || raw.url.starts_with("ldaps://");
    if !url_ok {
        ck.problem(
            "[users.ldap].url",
            format!("{:?} is not an ldap:// or ldaps:// URL", raw.url),
        );
    }
    let starttls = raw.starttls.unwrap_or(false);
    if starttls && raw.url.starts_with("ldaps://") {
        ck.problem(
            "[users.ldap].starttls",
            "StartTLS is for ldap:// URLs; ldaps:// is already TLS",
        );
    }
    let bind = match (&raw.user_dn, &raw.bind_dn) {
        (Some(dn), None) => {
            if !dn.contains("{username}") {
                ck.problem("[users.ldap].user_dn", "must contain {username}");
            }
            LdapBind::Template {
                user_dn: dn.clone(),
            }
        }
        (None, Some(bind_dn)) => search_bind(ck, &raw, bind_dn),
        (Some(_), Some(_)) => {
            ck.problem(
                "[users.ldap]",
                "set user_dn (bind as the user) or bind_dn (search, then bind), not both",
            );
            LdapBind::Template {
                user_dn: String::new(),
            }
        }
        (None, None) => {
            ck.problem(
                "[users.ldap]",
                "set user_dn (bind as the user) or bind_dn + base_dn (search, then bind)",
            );
            LdapBind::Template {
                user_dn: String::new(),
            }
        }
    };
    let pool_size = raw.pool_size.unwrap_or(4);
    if pool_size == 0 {
        ck.problem("[users.ldap].pool_size", "must be at least 1");
    }
    LdapConfig {
        url: raw.url,
        bind,
        starttls,
        ca_file: raw.ca_file.as_deref().map(|p| ck.path(p)),
        username_attribute: raw.username_attribute.unwrap_or_else(|| "uid".to_string()),
        name_attribute: raw.name_attribute.unwrap_or_else(|| "cn".to_string()),
        email_attribute: raw.email_attribute.unwrap_or_else(|| "mail".to_string()),
        connect_timeout: ck.duration(
            "[users.ldap].connect_timeout",
            raw.connect_timeout.as_deref(),
            "5s",
        ),
        timeout: ck.duration("[users.ldap].timeout", raw.timeout.as_deref(), "5s"),
        pool_size,
    }
}

fn search_bind(ck: &mut Checker, raw: &RawLdap, bind_dn: &str) -> LdapBind {
    let bind_password = ck.secret(
        ("[users.ldap].bind_password", raw.bind_password.as_deref()),
        (
            "[users.ldap].bind_password_file",
            raw.bind_password_file.as_deref(),
        ),
        "required with bind_dn (or bind_password_file)",
    );
    let base_dn = raw.base_dn.clone().unwrap_or_default();
    if base_dn.is_empty() {
        ck.problem("[users.ldap].base_dn", "required with bind_dn");
    }
    let filter = raw
        .filter
        .clone()
        .unwrap_or_else(|| "(uid={username})".to_string());
    if !filter.contains("{username}") || !filter.starts_with('(') {
        ck.problem(
            "[users.ldap].filter",
            "must be an LDAP filter containing {username}",
        );
    }
    LdapBind::Search {
        bind_dn: bind_dn.to_string(),
        bind_password,
        base_dn,
        filter,
    }
}
