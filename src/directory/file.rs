//! Users from a TOML file of `[[users]]` with argon2id hashes (`tollgate hash-password`).
//!
//! The file is read at start-up and read again whenever its modification time or size has
//! changed: every password check and every refresh first `stat`s it (one syscall, on the
//! blocking pool), so removing a user takes effect at their next login or refresh without
//! a restart. A file that cannot be read or parsed any more makes the directory unavailable
//! (nobody signs in or refreshes, 503) until it is fixed; it never falls back to old users.
//!
//! Argon2 runs on tokio's blocking pool so password checks never stall the async workers.
//! An unknown user still costs one argon2 run against a dummy hash, so timing does not tell
//! which usernames exist.

use super::{DirectoryError, User, UserDirectory};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<FileUser>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    username: String,
    password_hash: String,
    name: Option<String>,
    email: Option<String>,
}

type Users = Arc<HashMap<String, FileUser>>;

/// What identifies one version of the file without reading it.
type Stamp = (Option<SystemTime>, u64);

/// The users of one users file.
pub struct FileDirectory {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` for a directory that is not backed by a file (no users file configured).
    path: Option<PathBuf>,
    /// The users as last read, and the stamp of the file they were read from.
    current: Mutex<(Users, Stamp)>,
}

impl FileDirectory {
    /// Reads and checks the file: every hash must be an argon2 PHC string.
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let (users, stamp) = read_file(path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path: Some(path.to_path_buf()),
                current: Mutex::new((users, stamp)),
            }),
        })
    }

    /// A directory with no users: every login fails.
    pub fn empty() -> Self {
        Self::fixed(HashMap::new())
    }

    /// A directory of the users in `text`, never re-read.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(Self::fixed(parse_users(text)?))
    }

    fn fixed(users: HashMap<String, FileUser>) -> Self {
        Self {
            inner: Arc::new(Inner {
                path: None,
                current: Mutex::new((Arc::new(users), (None, 0))),
            }),
        }
    }
}

impl Inner {
    /// The users now in the file, re-reading it if it changed. Blocking: call it on the
    /// blocking pool.
    fn users(&self) -> Result<Users, DirectoryError> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let Some(path) = &self.path else {
            return Ok(current.0.clone());
        };
        let stamp = stamp(path).map_err(|e| file_error(path, e.to_string()))?;
        if stamp != current.1 {
            *current = read_file(path)?;
            tracing::info!(path = %path.display(), users = current.0.len(), "users file re-read");
        }
        Ok(current.0.clone())
    }
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified().ok(), meta.len()))
}

fn file_error(path: &Path, reason: String) -> DirectoryError {
    DirectoryError::File {
        path: path.display().to_string(),
        reason,
    }
}

/// Reads the file with the stamp taken *before* reading, so a write racing the read is
/// seen as a change at the next call and read again.
fn read_file(path: &Path) -> Result<(Users, Stamp), DirectoryError> {
    let stamp = stamp(path).map_err(|e| file_error(path, e.to_string()))?;
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
    let users = parse_users(&text).map_err(|reason| file_error(path, reason))?;
    Ok((Arc::new(users), stamp))
}

fn parse_users(text: &str) -> Result<HashMap<String, FileUser>, String> {
    let file: UsersFile = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let mut users = HashMap::new();
    for u in file.users {
        if crate::secrets::secret_hash_kind(&u.password_hash)
            != Some(crate::secrets::SecretHashKind::Argon2)
        {
            return Err(format!(
                "[[users]] {:?}.password_hash: not an argon2 PHC string",
                u.username
            ));
        }
        if users.contains_key(&u.username) {
            return Err(format!("[[users]] {:?}: listed twice", u.username));
        }
        users.insert(u.username.clone(), u);
    }
    Ok(users)
}

/// A hash to verify against when the user does not exist (same cost as a real check).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        crate::secrets::hash_password("tollgate-dummy-password").unwrap_or_default()
    })
}

impl UserDirectory for FileDirectory {
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<Option<User>, DirectoryError>> {
        let inner = self.inner.clone();
        let username = username.to_string();
        let password = password.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let users = inner.users()?;
                let user = users.get(&username);
                let hash: &str = match user {
                    Some(u) => &u.password_hash,
                    None => dummy_hash(),
                };
                let ok = crate::secrets::verify_password(&password, hash) && !password.is_empty();
                Ok(user.filter(|_| ok).map(|u| User {
                    username: u.username.clone(),
                    name: u.name.clone(),
                    email: u.email.clone(),
                }))
            })
            .await?
        })
    }

    fn exists<'a>(&'a self, username: &'a str) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        let inner = self.inner.clone();
        let username = username.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || Ok(inner.users()?.contains_key(&username))).await?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> FileDirectory {
        let hash = crate::secrets::hash_password("wonderland").expect("hash");
        FileDirectory::parse(&format!(
            "[[users]]\nusername = \"alice\"\npassword_hash = \"{hash}\"\nname = \"Alice Liddell\"\n"
        ))
        .expect("valid users file")
    }

    #[tokio::test]
    async fn right_password_returns_the_user() {
        let user = directory()
            .authenticate("alice", "wonderland")
            .await
            .expect("runs");
        assert_eq!(
            user.expect("authenticated").name.as_deref(),
            Some("Alice Liddell")
        );
    }

    #[tokio::test]
    async fn wrong_password_unknown_user_and_empty_password_fail_alike() {
        let d = directory();
        assert_eq!(d.authenticate("alice", "wrong").await.expect("runs"), None);
        assert_eq!(
            d.authenticate("bob", "wonderland").await.expect("runs"),
            None
        );
        assert_eq!(d.authenticate("alice", "").await.expect("runs"), None);
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_broken_one_is_an_outage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("users.toml");
        let hash = crate::secrets::hash_password("wonderland").expect("hash");
        let line =
            |name: &str| format!("[[users]]\nusername = \"{name}\"\npassword_hash = \"{hash}\"\n");
        std::fs::write(&path, line("alice") + &line("bob")).expect("write");
        let d = FileDirectory::load(&path).expect("loads");
        assert!(d.exists("bob").await.expect("answers"));
        assert!(!d.exists("carol").await.expect("answers"));

        std::fs::write(&path, line("alice")).expect("rewrite");
        assert!(!d.exists("bob").await.expect("answers"), "bob was removed");
        assert!(d.exists("alice").await.expect("answers"));
        assert_eq!(
            d.authenticate("bob", "wonderland").await.expect("runs"),
            None
        );

        std::fs::write(&path, "[[users]]\nusername = ").expect("break");
        assert!(d.exists("alice").await.is_err(), "never the old users");
        std::fs::remove_file(&path).expect("remove");
        assert!(d.authenticate("alice", "wonderland").await.is_err());
    }

    #[test]
    fn plaintext_passwords_are_refused_at_load() {
        let e =
            FileDirectory::parse("[[users]]\nusername = \"a\"\npassword_hash = \"secret\"\n").err();
        assert!(e.expect("refused").contains("not an argon2 PHC string"));
    }
}
