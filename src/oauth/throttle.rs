//! Password checks for the login form and the password grant, with brute-force
//! protection and a timing floor.
//!
//! Failures are counted per username (case-folded, so `Alice` and `alice` share a count)
//! and per client IP in a sliding window kept in the token store, so instances sharing a
//! store share the counts. Reaching a limit bans that key for the back-off period; a banned
//! attempt is refused without checking the password, with the same neutral message as a
//! wrong password, so even the right password is refused during the ban.
//!
//! Every attempt that does not sign in (wrong password, unknown user, banned user or
//! address, directory or store down) takes at least [`FAILURE_FLOOR`], so timing tells
//! none of them apart.

use super::OAuthServer;
use crate::directory::User;
use crate::store::StoreError;

/// The outcome of a password check.
pub(super) enum LoginResult {
    Success(User),
    Failure,
    /// Refused without checking: too many recent failures for this user or address.
    Throttled,
    Unavailable,
}

/// The least time a failed password check takes (see `check_password`).
const FAILURE_FLOOR: std::time::Duration = std::time::Duration::from_millis(200);

fn user_key(username: &str) -> String {
    format!("user:{}", username.to_lowercase())
}

fn ip_key(peer: &str) -> Option<String> {
    (!peer.is_empty()).then(|| format!("ip:{peer}"))
}

impl OAuthServer {
    /// Checks a password against the directory, counting the outcome, unless brute-force
    /// protection refuses the attempt first. Every outcome but success takes at least
    /// [`FAILURE_FLOOR`], so a wrong user, a wrong password, a ban and an outage cannot be
    /// told apart by timing.
    pub(super) async fn check_password(
        &self,
        username: &str,
        password: &str,
        peer: &str,
    ) -> LoginResult {
        let started = tokio::time::Instant::now();
        let result = self.check_password_now(username, password, peer).await;
        // Every refusal (wrong password, unknown user, banned user or address, directory or
        // store down) pays the floor, so timing tells none of them apart.
        if !matches!(result, LoginResult::Success(_)) {
            tokio::time::sleep_until(started + FAILURE_FLOOR).await;
        }
        let label = match &result {
            LoginResult::Success(_) => {
                crate::audit::login_succeeded(username, peer);
                "success"
            }
            LoginResult::Failure => {
                crate::audit::login_failed(username, peer);
                "failure"
            }
            LoginResult::Throttled => {
                crate::audit::login_throttled(username, peer);
                "throttled"
            }
            LoginResult::Unavailable => "unavailable",
        };
        self.metrics.logins.with_label_values(&[label]).inc();
        result
    }

    async fn check_password_now(&self, username: &str, password: &str, peer: &str) -> LoginResult {
        match self.is_throttled(username, peer).await {
            Ok(false) => {}
            Ok(true) => return LoginResult::Throttled,
            Err(e) => {
                super::error::log_store_error(&e);
                return LoginResult::Unavailable;
            }
        }
        // An empty password never reaches the directory (an LDAP unauthenticated bind
        // would otherwise "succeed").
        let outcome = if username.is_empty() || password.is_empty() {
            Ok(None)
        } else {
            self.directory.authenticate(username, password).await
        };
        match outcome {
            Ok(Some(user)) => {
                self.note_login_success(username).await;
                LoginResult::Success(user)
            }
            Ok(None) => {
                self.note_login_failure(username, peer).await;
                LoginResult::Failure
            }
            Err(e) => {
                tracing::error!(error = %crate::error::error_chain(&e), "user directory unavailable");
                LoginResult::Unavailable
            }
        }
    }

    /// True while the username or the client address is banned.
    pub(super) async fn is_throttled(
        &self,
        username: &str,
        peer: &str,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        for key in std::iter::once(user_key(username)).chain(ip_key(peer)) {
            if self
                .store
                .banned_until(&key)
                .await?
                .is_some_and(|until| until > now)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Counts a failure against the username and the address, banning either at its limit.
    pub(super) async fn note_login_failure(&self, username: &str, peer: &str) {
        let now = self.now();
        let since = now.saturating_sub(self.throttle.window.as_secs());
        let limits = [
            (
                Some(user_key(username)),
                self.throttle.max_failures_per_user,
                "user",
            ),
            (ip_key(peer), self.throttle.max_failures_per_ip, "ip"),
        ];
        for (key, limit, kind) in limits {
            let Some(key) = key else { continue };
            let result = async {
                let failures = self.store.add_failure(&key, now, since).await?;
                if failures >= limit {
                    self.store
                        .ban(&key, now + self.throttle.ban.as_secs())
                        .await?;
                    self.metrics.login_bans.with_label_values(&[kind]).inc();
                    crate::audit::login_banned(kind, username, peer, u64::from(failures));
                }
                Ok::<_, StoreError>(())
            }
            .await;
            if let Err(e) = result {
                tracing::error!(error = %crate::error::error_chain(&e), "cannot count a login failure");
            }
        }
    }

    /// A right password clears the username's failures (not the address's).
    pub(super) async fn note_login_success(&self, username: &str) {
        if let Err(e) = self.store.clear_failures(&user_key(username)).await {
            tracing::error!(error = %crate::error::error_chain(&e), "cannot clear login failures");
        }
    }
}
