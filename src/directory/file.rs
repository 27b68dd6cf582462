//! Users from a TOML file of `[[users]]` with argon2id hashes (`tollgate hash-password`).
//!
//! The file is read once at start-up. Argon2 runs on tokio's blocking pool so password
//! checks never stall the async workers. An unknown user still costs one argon2 run
//! against a dummy hash, so timing does not tell which usernames exist.

use super::{DirectoryError, User, UserDirectory};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

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

/// The users of one users file.
pub struct FileDirectory {
    users: Arc<HashMap<String, FileUser>>,
}

impl FileDirectory {
    /// Reads and checks the file: every hash must be an argon2 PHC string.
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let err = |reason: String| DirectoryError::File {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Self::parse(&text).map_err(err)
    }

    /// A directory with no users: every login fails.
    pub fn empty() -> Self {
        Self {
            users: Arc::new(HashMap::new()),
        }
    }

    pub fn parse(text: &str) -> Result<Self, String> {
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
        Ok(Self {
            users: Arc::new(users),
        })
    }
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
        let users = self.users.clone();
        let username = username.to_string();
        let password = password.to_string();
        Box::pin(async move {
            let found = tokio::task::spawn_blocking(move || {
                let user = users.get(&username);
                let hash: &str = match user {
                    Some(u) => &u.password_hash,
                    None => dummy_hash(),
                };
                let ok = crate::secrets::verify_password(&password, hash) && !password.is_empty();
                user.filter(|_| ok).map(|u| User {
                    username: u.username.clone(),
                    name: u.name.clone(),
                    email: u.email.clone(),
                })
            })
            .await?;
            Ok(found)
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

    #[test]
    fn plaintext_passwords_are_refused_at_load() {
        let e =
            FileDirectory::parse("[[users]]\nusername = \"a\"\npassword_hash = \"secret\"\n").err();
        assert!(e.expect("refused").contains("not an argon2 PHC string"));
    }
}
