//! Where resource owners' passwords are checked: the [`UserDirectory`] trait, and the
//! users-file implementation. No file or LDAP type leaks past this boundary.

pub mod file;
pub mod ldap;

use futures_util::future::BoxFuture;

/// A user who proved their password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name: `sub` and `username` of the user's tokens.
    pub username: String,
    /// Display name for the consent page.
    pub name: Option<String>,
    pub email: Option<String>,
}

/// Why the directory could not answer (the sign-in service is unavailable: 503).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("cannot read the users file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("cannot load the CA certificates in {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("password check failed to run")]
    Worker(#[from] tokio::task::JoinError),
    #[error("LDAP directory unavailable")]
    Ldap(#[source] ldap3::LdapError),
    #[error("the LDAP service account (bind_dn) was refused by the directory")]
    ServiceBind,
}

/// Checks usernames and passwords.
pub trait UserDirectory: Send + Sync + 'static {
    /// `Ok(Some(user))` only for a right password; `Ok(None)` for a wrong password or an
    /// unknown user (indistinguishable to the caller, and taking about the same time).
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>, DirectoryError>>;

    /// Whether `username` (the login name of an earlier [`authenticate`](Self::authenticate))
    /// is still in the directory and may still sign in, checked without their password on
    /// every refresh: `Ok(false)` when gone or disabled, `Err` when the directory cannot
    /// say (the caller then issues nothing).
    fn exists<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, DirectoryError>>;
}
