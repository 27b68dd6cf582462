//! tollgate: one binary that proxies HTTP APIs by TOML routes, guards them with OAuth 2.0
//! bearer tokens, and hosts the authorization server that issues those tokens.
//!
//! The module map follows the data path and depends downward only. A public request goes:
//! [`server`] (accept, TLS, limits; generic over its [`server::Handler`]) → [`app`]'s public
//! service, which sends `/oauth/*` and the `/.well-known/` documents to the authorization
//! server ([`oauth`]) and the rest to the gateway → one of the gateway's two engines,
//! [`gateway::fast`] (the HTTP/1.1 fast lane, which the server runs first on an HTTP/1.1
//! connection, plain or TLS, for body-less GET/HEAD) or [`gateway::hyper_path`] (everything else) →
//! [`gateway::pipeline`], the phases both engines call: route, authenticate, prepare,
//! forward (retry, timeout), filter the response, finish (metrics, access log). An
//! authorization-server request is read (its form body bounded) and dispatched by
//! [`oauth`] to the module of its endpoint. The internal listener ([`app`]'s internal
//! service) serves `/verify` (to [`oauth`]), `/metrics`, `/healthz`, `/readyz` and the
//! [`demo`] API.
//!
//! - [`app`] wires state and listeners, and keeps what requests read of the config in one
//!   swappable snapshot ([`app::live`]) that [`app::reload`] replaces on SIGHUP;
//!   [`server`] accepts (TLS in [`server::tls`]) under `max_connections` and serves
//!   HTTP/1.1 + HTTP/2 with head and keep-alive deadlines ([`server::deadlines`], limits a
//!   reload may change in [`server::limits`]), knowing no handler's types
//!   ([`server::conn`], [`server::client_io`], [`server::prefixed`]); [`body`] carries
//!   bodies, a streamed one under its size and pause limits ([`body::limited`]), a
//!   response one that writes its access-log entry when done ([`body::logged`]).
//! - [`gateway`] is the proxy: [`gateway::pipeline`] (its phases, once),
//!   [`gateway::authority`] (the one host a request is for), [`gateway::route`] (pure
//!   matching), [`gateway::guard`] (RFC 6750), [`gateway::headers`] (pure rewriting, the one
//!   `Connection` parser and response hop-by-hop rule; request headers read through
//!   [`gateway::headers::HeaderView`], hyper's map or the fast lane's raw lines, and the
//!   rewrite applied to a map or written straight into the fast lane's upstream head), [`gateway::framing`] (pure rules for
//!   upstream response heads), [`gateway::upstream`] (targets, and
//!   [`gateway::upstream::idle`], the one pool of upstream connections per origin that
//!   both engines draw on), [`gateway::error`] (every
//!   gateway error and its response), and its two engines, [`gateway::hyper_path`] and
//!   [`gateway::fast`].
//! - [`oauth`] is the authorization server (RFC 6749, 7009, 7636, 7662, 8414, 8707, 9449,
//!   9728), one module per endpoint: [`oauth::authorize`], login, consent, logout, token,
//!   revoke, introspect (`/verify`, on the internal listener), metadata (RFC 8414, the
//!   JWKS, RFC 9728); [`oauth::error`] (every refusal and its response, in one place);
//!   [`oauth::protocol`] (pure parameter, scope, PKCE and redirect rules) and
//!   [`oauth::resource`] (RFC 8707 resources, RFC 9728 documents); shared helpers that
//!   serve no endpoint (client authentication, token issuing, DPoP proofs,
//!   [`oauth::session`] and [`oauth::csrf`], throttling, form bodies, [`oauth::pages`]). It
//!   meets the guard only at the token store (local verifier) or at `/verify` (remote
//!   verifier).
//! - [`store`] is the token database behind the `TokenStore` trait (memory, SQLite, Redis
//!   standalone / Sentinel / Cluster; `store::conformance` is the contract every one of
//!   them passes) and its revocation feed ([`store::feed`]), which is how revocations reach
//!   every guard, this process's at once and other instances' over the Redis stream or the
//!   SQLite revocations table; [`store::fail_fast`] answers at once while a networked store
//!   is known to be down. [`readiness`] probes it for `/readyz`.
//! - [`directory`] checks users' passwords behind the `UserDirectory` trait (users file,
//!   LDAP), with brute-force throttling in [`oauth`] counted in the store.
//! - [`verify`] is the `TokenVerifier` seam between the guard and whoever issued the token
//!   (local store, [`verify::own_jwt`], remote RFC 7662, [`verify::jwks`]);
//!   [`verify::cache`] puts a cache of its own in front of it (sharded, CLOCK-evicted,
//!   identities shared among tokens, concurrent misses for one token coalesced).
//! - [`jwt`] holds RFC 9068 access tokens without IO: keys, the compact JWS, claim checks
//!   (used by the token endpoint to sign and by [`verify::own_jwt`] and [`verify::jwks`]);
//!   [`dpop`] checks RFC 9449 proofs (token endpoint and guard) and remembers spent ones.
//! - [`config`] parses `gateway.toml` once (every problem with its line and column);
//!   [`preflight`] checks the files and addresses it names, for `run` and `check` alike;
//!   [`cli`] is what each subcommand does (`main.rs` only parses arguments); [`secrets`]
//!   makes random tokens and hashes and checks secrets and passwords; [`error`] holds what
//!   every error response shares; [`metrics`] owns the Prometheus names; [`clock`] makes
//!   expiry testable.
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
