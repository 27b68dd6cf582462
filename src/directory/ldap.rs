//! Users in an LDAP directory (OpenLDAP, Active Directory) through `ldap3`.
//!
//! Two ways to find the user's entry:
//! - **DN template**: bind directly as `user_dn` with `{username}` filled in, escaped per
//!   RFC 4514 so `,`, `+`, `=`, `\` or NUL cannot move the bind to another entry;
//! - **search, then bind**: a service account (from a small pool of bound connections)
//!   searches `base_dn` with `filter`, `{username}` escaped per RFC 4515 so `*`, `(`, `)`,
//!   `\` or NUL cannot widen the search; exactly one entry must match, then a fresh
//!   connection binds as that entry with the user's password.
//!
//! A refresh asks again whether the user is still there ([`UserDirectory::exists`]), with
//! no password to bind with:
//! - **search, then bind**: the service account runs the same search (`filter` under
//!   `base_dn`, `{username}` being the grant's username); the user is there only if exactly
//!   one entry matches, so a filter that excludes disabled accounts (Active Directory's
//!   `userAccountControl` bit test) stops their refreshes too;
//! - **DN template**: an anonymous connection reads the entry at `user_dn` (filled with the
//!   grant's username) at base scope with filter `(objectClass=*)` and no attributes; the
//!   user is there only if the entry comes back. A directory that hides entries from
//!   anonymous clients answers "no such object" (or nothing), which reads as "gone": there,
//!   use search-then-bind.
//!
//! An empty password is refused before any bind: RFC 4513 §5.1.2 makes a simple bind with
//! a DN and no password an *unauthenticated* bind, which many servers answer with success.
//! Connection and operation errors are `DirectoryError::Unavailable` (the login page says
//! the sign-in service is unavailable), never a failed or a successful login.

use super::{DirectoryError, User, UserDirectory};
use crate::config::{LdapBind, LdapConfig};
use futures_util::future::BoxFuture;
use ldap3::{dn_escape, ldap_escape, Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use std::sync::{Arc, Mutex};

/// RFC 4511 result code for a wrong password (or unknown DN on some servers).
const INVALID_CREDENTIALS: u32 = 49;
/// RFC 4511 result code for a base that does not exist (or that the client may not see).
const NO_SUCH_OBJECT: u32 = 32;
/// Longest username accepted; anything longer cannot be a login name.
const MAX_USERNAME: usize = 256;

/// An LDAP-backed [`UserDirectory`].
pub struct LdapDirectory {
    cfg: LdapConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Idle connections bound as the service account (search mode only).
    pool: Mutex<Vec<Ldap>>,
}

impl LdapDirectory {
    pub fn new(cfg: LdapConfig) -> Result<Self, DirectoryError> {
        let tls = match &cfg.ca_file {
            Some(path) => Some(tls_config(path)?),
            None => None,
        };
        Ok(Self {
            cfg,
            tls,
            pool: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.connect_timeout)
            .set_starttls(self.cfg.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url)
            .await
            .map_err(DirectoryError::Ldap)?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// Binds a fresh connection as `dn`; `Ok(false)` for wrong credentials.
    async fn bind_as(&self, dn: &str, password: &str) -> Result<Option<Ldap>, DirectoryError> {
        let mut ldap = self.connect().await?;
        let result = ldap
            .with_timeout(self.cfg.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(DirectoryError::Ldap)?;
        match result.rc {
            0 => Ok(Some(ldap)),
            INVALID_CREDENTIALS => {
                let _ = ldap.unbind().await;
                Ok(None)
            }
            _ => {
                let _ = ldap.unbind().await;
                Err(DirectoryError::Ldap(ldap3::LdapError::from(result)))
            }
        }
    }

    /// A connection bound as the service account: from the pool, or a new one.
    async fn service_connection(
        &self,
        bind_dn: &str,
        password: &str,
    ) -> Result<Ldap, DirectoryError> {
        if let Some(ldap) = self.pool.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(ldap);
        }
        match self.bind_as(bind_dn, password).await? {
            Some(ldap) => Ok(ldap),
            None => Err(DirectoryError::ServiceBind),
        }
    }

    fn give_back(&self, ldap: Ldap) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < self.cfg.pool_size {
            pool.push(ldap);
        }
    }

    /// Reads the user's attributes from `dn` over a connection bound as them.
    async fn read_user(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        typed: &str,
    ) -> Result<User, DirectoryError> {
        let attrs = self.attributes();
        let (entries, _) = ldap
            .with_timeout(self.cfg.timeout)
            .search(dn, Scope::Base, "(objectClass=*)", attrs)
            .await
            .and_then(|r| r.success())
            .map_err(DirectoryError::Ldap)?;
        let entry = entries.into_iter().next().map(SearchEntry::construct);
        Ok(self.user_from(entry.as_ref(), typed))
    }

    fn attributes(&self) -> Vec<&str> {
        vec![
            self.cfg.username_attribute.as_str(),
            self.cfg.name_attribute.as_str(),
            self.cfg.email_attribute.as_str(),
        ]
    }

    fn user_from(&self, entry: Option<&SearchEntry>, typed: &str) -> User {
        let first = |attr: &str| {
            entry
                .and_then(|e| e.attrs.get(attr))
                .and_then(|v| v.first())
                .cloned()
        };
        User {
            username: first(&self.cfg.username_attribute).unwrap_or_else(|| typed.to_string()),
            name: first(&self.cfg.name_attribute),
            email: first(&self.cfg.email_attribute),
        }
    }

    async fn by_template(
        &self,
        user_dn: &str,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, DirectoryError> {
        let dn = user_dn.replace("{username}", &dn_escape(username));
        let Some(mut ldap) = self.bind_as(&dn, password).await? else {
            return Ok(None);
        };
        let user = self.read_user(&mut ldap, &dn, username).await;
        let _ = ldap.unbind().await;
        user.map(Some)
    }

    /// The service account's search for `username`: the one entry it finds, if exactly
    /// one matches (zero: unknown user; several: ambiguous, never guess which one).
    async fn search_user(
        &self,
        (bind_dn, bind_password, base_dn, filter): (&str, &str, &str, &str),
        username: &str,
    ) -> Result<Option<SearchEntry>, DirectoryError> {
        let filter = filter.replace("{username}", &ldap_escape(username));
        let mut service = self.service_connection(bind_dn, bind_password).await?;
        let found = service
            .with_timeout(self.cfg.timeout)
            .search(base_dn, Scope::Subtree, &filter, self.attributes())
            .await
            .and_then(|r| r.success());
        // A connection that failed an operation is not trusted back into the pool.
        let entries = match found {
            Ok((entries, _)) => {
                self.give_back(service);
                entries
            }
            Err(e) => return Err(DirectoryError::Ldap(e)),
        };
        if entries.len() != 1 {
            return Ok(None);
        }
        Ok(entries.into_iter().next().map(SearchEntry::construct))
    }

    /// Reads the entry at `dn` over an anonymous connection (DN-template `exists`).
    async fn entry_visible(&self, dn: &str) -> Result<bool, DirectoryError> {
        let mut ldap = self.connect().await?;
        let result = ldap
            .with_timeout(self.cfg.timeout)
            .search(dn, Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .map_err(DirectoryError::Ldap);
        let _ = ldap.unbind().await;
        let result = result?;
        match result.1.rc {
            0 => Ok(!result.0.is_empty()),
            NO_SUCH_OBJECT => Ok(false),
            _ => Err(DirectoryError::Ldap(ldap3::LdapError::from(result.1))),
        }
    }

    async fn by_search(
        &self,
        service: (&str, &str, &str, &str),
        username: &str,
        password: &str,
    ) -> Result<Option<User>, DirectoryError> {
        let Some(entry) = self.search_user(service, username).await? else {
            return Ok(None);
        };
        match self.bind_as(&entry.dn, password).await? {
            Some(mut ldap) => {
                let _ = ldap.unbind().await;
                Ok(Some(self.user_from(Some(&entry), username)))
            }
            None => Ok(None),
        }
    }
}

/// A name worth asking the directory about: not empty, not too long, no control bytes.
fn plausible_username(username: &str) -> bool {
    !username.is_empty()
        && username.len() <= MAX_USERNAME
        && !username.chars().any(char::is_control)
}

impl LdapBind {
    /// Search-then-bind's service account, base and filter; `None` for a DN template.
    fn service_account(&self) -> Option<(&str, &str, &str, &str)> {
        match self {
            LdapBind::Search {
                bind_dn,
                bind_password,
                base_dn,
                filter,
            } => Some((bind_dn, bind_password.expose(), base_dn, filter)),
            LdapBind::Template { .. } => None,
        }
    }
}

impl UserDirectory for LdapDirectory {
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>, DirectoryError>> {
        Box::pin(async move {
            if password.is_empty() || !plausible_username(username) {
                return Ok(None);
            }
            match &self.cfg.bind {
                LdapBind::Template { user_dn } => {
                    self.by_template(user_dn, username, password).await
                }
                search @ LdapBind::Search { .. } => {
                    let Some(service) = search.service_account() else {
                        return Ok(None);
                    };
                    self.by_search(service, username, password).await
                }
            }
        })
    }

    fn exists<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        Box::pin(async move {
            if !plausible_username(username) {
                return Ok(false);
            }
            match &self.cfg.bind {
                LdapBind::Template { user_dn } => {
                    let dn = user_dn.replace("{username}", &dn_escape(username));
                    self.entry_visible(&dn).await
                }
                search @ LdapBind::Search { .. } => {
                    let Some(service) = search.service_account() else {
                        return Ok(false);
                    };
                    Ok(self.search_user(service, username).await?.is_some())
                }
            }
        })
    }
}

/// A rustls client config trusting the CA certificates in a PEM file.
fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    let fail = |reason: String| DirectoryError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| fail(e.to_string()))?;
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no PEM certificate found".to_string()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
