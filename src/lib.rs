//! tollgate: one binary that proxies HTTP APIs by TOML routes, guards them with OAuth 2.0
//! bearer tokens, and hosts the authorization server that issues those tokens.
//!
//! The module map follows the data path and depends downward only. A public request goes:
//! [`server`] (accept, TLS, limits; generic over its [`server::Handler`]) → [`app`]'s public
//! service (`/oauth/*` to [`oauth`], the rest to the gateway) → one of the gateway's two
//! engines, [`gateway::fast`] (the HTTP/1.1 fast lane, which the server runs first on a
//! plain-TCP connection, for body-less GET/HEAD) or [`gateway::hyper_path`] (everything
//! else) → [`gateway::pipeline`], the phases both engines call: route, authenticate,
//! prepare, forward (retry, timeout), filter the response, finish (metrics, access log).
//!
//! - [`app`] wires state and listeners, and keeps what requests read of the config in one
//!   swappable snapshot that [`app::reload`] replaces on SIGHUP; [`server`] accepts (TLS
//!   in [`server::tls`]) under
//!   `max_connections` and serves HTTP/1.1 + HTTP/2 with head and keep-alive deadlines
//!   ([`server::deadlines`]), knowing no handler's types ([`server::conn`]); [`body`]
//!   carries bodies, a streamed one under its size and pause limits ([`body::limited`]).
//! - [`gateway`] is the proxy: [`gateway::pipeline`] (its phases, once),
//!   [`gateway::authority`] (the one host a request is for), [`gateway::route`] (pure
//!   matching), [`gateway::guard`] (RFC 6750), [`gateway::headers`] (pure rewriting, the one
//!   `Connection` parser and response hop-by-hop rule), [`gateway::framing`] (pure rules for
//!   upstream response heads), [`gateway::upstream`] (targets, and
//!   [`gateway::upstream::idle`], the one pool of upstream connections per origin that
//!   both engines draw on), [`gateway::error`] (every
//!   gateway error and its response), and its two engines, [`gateway::hyper_path`] and
//!   [`gateway::fast`].
//! - [`oauth`] is the authorization server (RFC 6749, 7636, 7009, 7662, 8414, 8707, 9728):
//!   [`oauth::protocol`] (pure parameter, scope and PKCE rules), authorize and the browser
//!   pages, token, revoke, introspect (`/verify`, on the internal listener), metadata;
//!   [`oauth::resource`] (RFC 8707 resources, RFC 9728 documents). It meets the guard only
//!   at the token store (local verifier) or at `/verify` (remote verifier).
//! - [`store`] is the token database behind the `TokenStore` trait (memory, SQLite, Redis
//!   standalone / Sentinel / Cluster) and its revocation feed ([`store::feed`]), which is
//!   how revocations reach every guard, this process's at once and other instances' over
//!   the Redis stream or the SQLite revocations table; [`store::fail_fast`] answers at once
//!   while a networked store is known to be down. [`readiness`] probes it for `/readyz`.
//! - [`directory`] checks users' passwords behind the `UserDirectory` trait (users file,
//!   LDAP), with brute-force throttling in [`oauth`] counted in the store.
//! - [`verify`] is the `TokenVerifier` seam between the guard and whoever issued the token;
//!   [`verify::cache`] puts a moka cache with call coalescing in front of it.
//! - [`jwt`] holds RFC 9068 access tokens without IO: keys, the compact JWS, claim checks
//!   (used by the token endpoint to sign and by [`verify::own_jwt`] and [`verify::jwks`]);
//!   [`dpop`] checks RFC 9449 proofs (token endpoint and guard) and remembers spent ones.
//! - [`config`] parses `gateway.toml` once (every problem with its line and column);
//!   [`preflight`] checks the files and addresses it names, for `run` and `check` alike;
//!   [`error`] holds what every error response shares;
//!   [`metrics`] owns the Prometheus names; [`clock`] makes expiry testable.
//! - [`access_log`] writes one line per public request off the request path;
//!   [`client_addr`] says who the client is behind `[server] trusted_proxies`; [`audit`]
//!   names the security events the authorization server logs.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod app;
pub mod audit;
pub mod body;
pub mod cli;
pub mod client_addr;
pub mod clock;
pub mod config;
pub mod demo;
pub mod directory;
pub mod dpop;
pub mod error;
pub mod gateway;
pub mod jwt;
pub mod metrics;
pub mod oauth;
pub mod preflight;
pub mod readiness;
pub mod secrets;
pub mod server;
pub mod store;
pub mod verify;

pub use app::{App, Running};
pub use config::Config;
