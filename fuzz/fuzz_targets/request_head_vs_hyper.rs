//! Differential: the same bytes to the fast lane's `wire::parse_request` and to hyper's
//! HTTP/1.1 server. Fails when the fast lane takes a head (Complete) that hyper refuses or
//! reads as another method, target, version or header list: the fast lane must never
//! understand a request differently from the engine it stands in for.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use tollgate::gateway::fast::wire::{parse_request, ParsedRequest};

#[path = "../../tests/it/common/hyper_head.rs"]
mod hyper_head;

use hyper_head::{parse_with_hyper, Head};

/// One current-thread runtime for the whole process.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let buf = Bytes::copy_from_slice(data);
    let ParsedRequest::Complete(head) = parse_request(&buf) else {
        return;
    };
    let fast = Head::of_fast_lane(&head);
    match parse_with_hyper(runtime(), &data[..head.len]) {
        Some(hyper) => assert_eq!(fast, hyper, "{:?}", String::from_utf8_lossy(data)),
        None => panic!(
            "the fast lane took a head hyper refuses: {:?}",
            String::from_utf8_lossy(&data[..head.len])
        ),
    }
});
