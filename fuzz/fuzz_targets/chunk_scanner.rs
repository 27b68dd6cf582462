//! `ChunkScanner`: wherever a chunked body is split into reads, it reports the same end
//! (or the same refusal) as when the body comes in one read, or one byte at a time; it
//! never panics, never claims more bytes than it was given, and the end it reports is the
//! end of the body alone. The chunk data it reports (`advance_with`, the hyper path's
//! de-chunking) is the same however the body is split, and lies inside the body. Input: one
//! byte `n`, then `n` bytes of read sizes, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::gateway::fast::wire::chunked::{ChunkError, ChunkScanner};

/// What a scanner made of a whole stream: where the body ended (`None`: not yet) or why
/// it was refused.
type Outcome = Result<Option<usize>, ChunkError>;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (sizes, body) = rest.split_at((n as usize).min(rest.len()));
    let (whole, whole_data) = scan(body, std::iter::once(body.len()));
    let (split, split_data) = scan(
        body,
        sizes
            .iter()
            .map(|&s| s as usize)
            .chain(std::iter::repeat(4096)),
    );
    let (bytewise, bytewise_data) = scan(body, std::iter::repeat(1));
    assert_eq!(split, whole, "split by {sizes:?}");
    assert_eq!(bytewise, whole, "byte by byte");
    if whole.is_ok() {
        assert_eq!(split_data, whole_data, "data split by {sizes:?}");
        assert_eq!(bytewise_data, whole_data, "data byte by byte");
    }
    assert!(whole_data.len() <= body.len());
    if let Ok(Some(end)) = whole {
        // The body alone ends at the same place, and no shorter prefix is a whole body.
        assert_eq!(scan(&body[..end], std::iter::once(end)).0, Ok(Some(end)));
        assert_eq!(scan(&body[..end - 1], std::iter::once(end - 1)).0, Ok(None));
    }
});

/// Feeds `body` in reads of the given sizes (0 is an empty read) until it ends; also gives
/// the chunk data found on the way.
fn scan(body: &[u8], mut sizes: impl Iterator<Item = usize>) -> (Outcome, Vec<u8>) {
    let mut scanner = ChunkScanner::keeping_trailers();
    let mut data = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let size = sizes.next().unwrap_or(4096).min(body.len() - at);
        let read = &body[at..at + size];
        let used = match scanner.advance_with(read, |run| {
            assert!(run.end <= read.len());
            data.extend_from_slice(&read[run]);
        }) {
            Ok(used) => used,
            Err(e) => return (Err(e), data),
        };
        assert!(used <= read.len());
        at += used;
        if scanner.is_done() {
            let _ = scanner.take_trailers();
            return (Ok(Some(at)), data);
        }
        assert_eq!(used, read.len(), "stopped early without being done");
    }
    (Ok(scanner.is_done().then_some(at)), data)
}
