//! Audit lines: security-relevant events of the authorization server, one `tracing` event
//! each under the target `audit`, with a fixed `event` name and fixed fields, so they can be
//! filtered (`RUST_LOG=audit=info`) and shipped apart from the rest of the log.
//!
//! Events, not requests (requests are the access log's): sign-ins, bans, failed client
//! authentication, tokens issued, revocations, grants revoked for a replay, configuration
//! reloads. Fields name who and what (user name, client id, grant type, client address);
//! no token, code, secret or password is ever a field, and these functions take none.

use std::fmt::Display;

/// The `tracing` target of every audit line.
pub const TARGET: &str = "audit";

/// The most of a caller-chosen value (a user name, a claimed client id) an audit line
/// keeps: a 64 KiB "user name" must not become a 64 KiB log line.
const MAX_FIELD: usize = 128;

/// `s`, cut to at most [`MAX_FIELD`] bytes on a character boundary. (`tracing` escapes
/// quotes and control characters, so a value cannot forge a field or a line.)
fn clip(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A password sign-in (login form or password grant) succeeded.
pub fn login_succeeded(username: &str, client_addr: &str) {
    let username = clip(username);
    tracing::info!(target: TARGET, event = "login", result = "success", username, client_addr);
}

/// A password sign-in failed: a wrong password or an unknown user (not told apart here
/// either, so the log does not say which user names exist).
pub fn login_failed(username: &str, client_addr: &str) {
    let username = clip(username);
    tracing::warn!(target: TARGET, event = "login", result = "failure", username, client_addr);
}

/// A sign-in was refused without checking the password: the user or address is banned.
pub fn login_throttled(username: &str, client_addr: &str) {
    let username = clip(username);
    tracing::warn!(target: TARGET, event = "login", result = "throttled", username, client_addr);
}

/// Brute-force protection banned a user name or an address (`kind` = `user` | `ip`).
pub fn login_banned(kind: &str, username: &str, client_addr: &str, failures: u64) {
    let username = clip(username);
    tracing::warn!(
        target: TARGET,
        event = "login_ban",
        kind,
        username,
        client_addr,
        failures
    );
}

/// A client failed to authenticate at the token, revoke or introspection endpoint.
/// `client_id` is what it claimed (maybe unknown here); `client_addr` is the TCP peer on
/// the internal listener (no `trusted_proxies` there).
pub fn invalid_client(client_id: &str, client_addr: &str) {
    let client_id = clip(client_id);
    tracing::warn!(target: TARGET, event = "invalid_client", client_id, client_addr);
}

/// Tokens were issued (`refresh` says whether a refresh token came with the access token).
pub fn token_issued(grant_type: &str, client_id: &str, sub: &str, scope: &str, refresh: bool) {
    tracing::info!(
        target: TARGET,
        event = "token_issued",
        grant_type,
        client_id,
        sub,
        scope,
        refresh
    );
}

/// A client revoked a token at `/oauth/revoke` (`kind` = `access` | `refresh`; revoking a
/// refresh token revokes its whole grant).
pub fn token_revoked(kind: &str, client_id: &str, sub: &str) {
    tracing::info!(target: TARGET, event = "token_revoked", kind, client_id, sub);
}

/// A whole grant was revoked by the server: `reason` = `code_replay` (an authorization code
/// used twice), `refresh_reuse` (an old refresh token used again) or `user_gone`.
pub fn grant_revoked(reason: &str, client_id: &str, sub: &str) {
    tracing::warn!(target: TARGET, event = "grant_revoked", reason, client_id, sub);
}

/// A configuration reload (SIGHUP) finished: `error` is `None` on success, else why the
/// running configuration stayed. Called by the reload.
pub fn config_reloaded(file: &std::path::Path, error: Option<&dyn Display>) {
    let file = file.display();
    match error {
        None => {
            tracing::info!(target: TARGET, event = "config_reload", result = "success", %file)
        }
        Some(error) => tracing::error!(
            target: TARGET,
            event = "config_reload",
            result = "failure",
            %file,
            %error
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("alice"), "alice");
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_FIELD && clipped.len() >= MAX_FIELD - 1);
        assert!(long.starts_with(clipped));
    }
}
