//! Integration tests: the real tollgate, real upstreams and a real introspection server,
//! all on loopback ports chosen by the OS.

mod common;

mod access_log;
mod audiences;
mod audit;
mod browser;
mod cli;
mod deploy;
mod dpop;
mod fast_lane;
mod faults;
mod faults_backends;
mod grant_life;
mod guard;
mod instances;
mod jwt;
mod ldap;
mod limits;
mod listeners;
mod login_csrf;
mod oauth_flow;
mod oauth_input;
mod oauth_token;
mod parity;
mod properties;
mod proxy;
mod readiness;
mod redis_modes;
mod reload;
mod request_rules;
mod routing;
mod shared_sqlite;
mod shipped;
mod store_outage;
mod throttle;
mod tls_lane;
mod trusted_proxies;
mod upstream_framing;
mod upstream_pool;
mod upstream_tls;
mod verify_claims;
