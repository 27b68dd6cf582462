//! Integration tests: the real tollgate, real upstreams and a real introspection server,
//! all on loopback ports chosen by the OS.

mod common;

mod browser;
mod cli;
mod fast_lane;
mod guard;
mod ldap;
mod listeners;
mod oauth_flow;
mod oauth_input;
mod oauth_token;
mod properties;
mod proxy;
mod routing;
mod shipped;
mod throttle;
