//! Integration tests: the real tollgate, real upstreams and a real introspection server,
//! all on loopback ports chosen by the OS.

mod common;

mod cli;
mod guard;
mod listeners;
mod proxy;
mod routing;
