//! Brute-force protection for password checks (login form and password grant).
//!
//! Failures are counted per username (case-folded, so `Alice` and `alice` share a count)
//! and per client IP in a sliding window kept in the token store, so instances sharing a
//! store share the counts. Reaching a limit bans that key for the back-off period; a banned
//! attempt is refused without checking the password, with the same neutral message as a
//! wrong password, so even the right password is refused during the ban.

use super::OAuthServer;
use crate::store::StoreError;

fn user_key(username: &str) -> String {
    format!("user:{}", username.to_lowercase())
}

fn ip_key(peer: &str) -> Option<String> {
    (!peer.is_empty()).then(|| format!("ip:{peer}"))
}

impl OAuthServer {
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
                    tracing::warn!(
                        kind,
                        failures,
                        "login attempts banned after repeated failures"
                    );
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
