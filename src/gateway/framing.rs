//! Which upstream response heads the gateway relays: the framing rules of RFC 9112 §6 that
//! both HTTP/1.1 engines apply to an upstream's answer before anything reaches the client.
//! Pure: each engine reads the few facts from its own view of the head ([`HeadFacts`]) and
//! asks [`check`].
//!
//! A head whose framing cannot be trusted is refused (502, `GatewayError::UpstreamFraming`)
//! and its connection is never reused: the gateway and the upstream might place the end of
//! the message differently, which is how responses are split and smuggled (RFC 9112 §6.3,
//! §11.2). hyper's client refuses some of these on its own (Transfer-Encoding from
//! HTTP/1.0) and the fast lane's parser others; this list is what both check, so the two
//! paths give the same answer.

use http::header::{self, HeaderMap};
use http::{StatusCode, Version};

/// Largest upstream response head accepted (nginx's default `proxy_buffer_size` is 4-8 KiB;
/// hyper's client would take 400 KiB, and only roughly): a longer one is answered 502.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// What the framing rules look at in an upstream's response head.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeadFacts {
    /// The status line says HTTP/1.0.
    pub http10: bool,
    pub transfer_encoding: bool,
    pub content_length: bool,
    /// `Upgrade: websocket`, the one protocol a connection may switch to.
    pub upgrade_websocket: bool,
    /// Bytes of the head: exact where the raw head is at hand, else the length of its
    /// status line and fields written out plainly.
    pub head_len: usize,
}

/// Why an upstream's response head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// RFC 9112 §6.3 rule 3: a sender MUST NOT send both; a proxy must not relay what two
    /// parsers would frame differently.
    #[error("Content-Length beside Transfer-Encoding")]
    LengthAndTransferCoding,
    /// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferCodingInHttp10,
    /// RFC 9110 §15.2.2: a server switches only when the client asked it to.
    #[error("101 Switching Protocols to a request that asked for no WebSocket upgrade")]
    UnrequestedSwitch,
    #[error("101 Switching Protocols to something other than WebSocket")]
    SwitchNotWebsocket,
    #[error("response head larger than {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
}

// === impl HeadFacts ===

impl HeadFacts {
    /// The facts of a head hyper's client parsed.
    pub fn of(version: Version, headers: &HeaderMap) -> Self {
        // "HTTP/1.1 200 " + reason + CRLF, each "name: value" + CRLF, the final CRLF.
        const STATUS_LINE: usize = 32;
        let fields: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        HeadFacts {
            head_len: STATUS_LINE + fields + 2,
            http10: version == Version::HTTP_10 || version == Version::HTTP_09,
            transfer_encoding: headers.contains_key(header::TRANSFER_ENCODING),
            content_length: headers.contains_key(header::CONTENT_LENGTH),
            upgrade_websocket: headers
                .get_all(header::UPGRADE)
                .iter()
                .any(|v| is_websocket(v.as_bytes())),
        }
    }
}

/// An `Upgrade` value that names WebSocket alone.
pub fn is_websocket(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"websocket")
}

/// Whether a response head may be relayed. `websocket_requested`: the gateway forwarded a
/// WebSocket upgrade request, so a `101` naming WebSocket is the expected answer. Other 1xx
/// heads pass (they are interim and dropped); their framing headers mean nothing.
pub fn check(
    status: StatusCode,
    facts: HeadFacts,
    websocket_requested: bool,
) -> Result<(), FramingError> {
    if facts.head_len > MAX_RESPONSE_HEAD {
        return Err(FramingError::HeadTooLarge);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return match (websocket_requested, facts.upgrade_websocket) {
            (false, _) => Err(FramingError::UnrequestedSwitch),
            (true, false) => Err(FramingError::SwitchNotWebsocket),
            (true, true) => Ok(()),
        };
    }
    if status.is_informational() {
        return Ok(());
    }
    if facts.transfer_encoding && facts.content_length {
        return Err(FramingError::LengthAndTransferCoding);
    }
    if facts.transfer_encoding && facts.http10 {
        return Err(FramingError::TransferCodingInHttp10);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TE: HeadFacts = HeadFacts {
        http10: false,
        transfer_encoding: true,
        content_length: false,
        upgrade_websocket: false,
        head_len: 100,
    };

    #[test]
    fn framing_rules_table() {
        let ok = HeadFacts::default();
        let both = HeadFacts {
            content_length: true,
            ..TE
        };
        let te10 = HeadFacts { http10: true, ..TE };
        let cl10 = HeadFacts {
            http10: true,
            content_length: true,
            ..ok
        };
        let ws = HeadFacts {
            upgrade_websocket: true,
            ..ok
        };
        let huge = HeadFacts {
            head_len: MAX_RESPONSE_HEAD + 1,
            ..ok
        };
        let cases = [
            (200, ok, false, Ok(())),
            (200, TE, false, Ok(())),
            (200, cl10, false, Ok(())),
            (200, both, false, Err(FramingError::LengthAndTransferCoding)),
            (304, both, false, Err(FramingError::LengthAndTransferCoding)),
            (200, te10, false, Err(FramingError::TransferCodingInHttp10)),
            (204, te10, false, Err(FramingError::TransferCodingInHttp10)),
            (101, ws, false, Err(FramingError::UnrequestedSwitch)),
            (101, ok, true, Err(FramingError::SwitchNotWebsocket)),
            (101, ws, true, Ok(())),
            (103, both, false, Ok(())),
            (200, huge, false, Err(FramingError::HeadTooLarge)),
            (101, huge, true, Err(FramingError::HeadTooLarge)),
        ];
        for (status, facts, websocket, expected) in cases {
            let status = StatusCode::from_u16(status).expect("valid status");
            assert_eq!(
                check(status, facts, websocket),
                expected,
                "{status} {facts:?} websocket requested: {websocket}"
            );
        }
    }

    #[test]
    fn facts_of_a_parsed_head() {
        let mut headers = HeaderMap::new();
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().expect("value"));
        headers.insert(header::CONTENT_LENGTH, "5".parse().expect("value"));
        headers.insert(header::UPGRADE, " WebSocket ".parse().expect("value"));
        let facts = HeadFacts::of(Version::HTTP_10, &headers);
        assert_eq!(
            facts,
            HeadFacts {
                http10: true,
                transfer_encoding: true,
                content_length: true,
                upgrade_websocket: true,
                head_len: facts.head_len,
            }
        );
        let written = "transfer-encoding: chunked\r\ncontent-length: 5\r\nupgrade:  WebSocket \r\n";
        assert!(facts.head_len >= written.len() + 2, "{}", facts.head_len);
        headers.insert(header::UPGRADE, "h2c, websocket".parse().expect("value"));
        assert!(!HeadFacts::of(Version::HTTP_11, &headers).upgrade_websocket);
    }
}
