//! Reading the form bodies the authorization server handles itself (`/oauth/token`,
//! `/oauth/revoke`, the login and consent forms, `/verify`): the whole body must be
//! `application/x-www-form-urlencoded`, no larger than [`FormLimits::max`], and arrive in
//! full within [`FormLimits::timeout`], so a client trickling a body cannot hold a
//! request open. A refusal is answered (by [`super::error`]) as RFC 6749 §5.2 JSON, or as
//! an HTML error page for the browser's forms.

use crate::config::Limits;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use std::time::Duration;

/// The authorization server's own cap on a form body, whatever `[server]` allows.
const MAX_FORM_BYTES: u64 = 64 * 1024;

/// How large a form body may be and how long it may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct FormLimits {
    pub max: u64,
    pub timeout: Duration,
}

/// Why a form body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormRefusal {
    NotForm,
    TooLarge,
    TooSlow,
    /// The client stopped sending or sent a malformed body.
    Broken,
}

// === impl FormLimits ===

impl FormLimits {
    /// The smaller of the server's body limit and our own cap; the server's deadline.
    pub fn new(limits: &Limits) -> Self {
        Self {
            max: limits.max_request_body.min(MAX_FORM_BYTES),
            timeout: limits.request_body_timeout,
        }
    }

    /// Reads the whole form body of a request with these `headers`.
    pub async fn read(&self, headers: &HeaderMap, body: Incoming) -> Result<Bytes, FormRefusal> {
        let is_form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(FormRefusal::NotForm);
        }
        // A declared length over the limit is refused before anything is read.
        if http_body::Body::size_hint(&body).lower() > self.max {
            return Err(FormRefusal::TooLarge);
        }
        // `max` is at most MAX_FORM_BYTES, so it fits any usize.
        let limited = Limited::new(body, self.max as usize);
        match tokio::time::timeout(self.timeout, limited.collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
                Err(FormRefusal::TooLarge)
            }
            Ok(Err(_)) => Err(FormRefusal::Broken),
            Err(_elapsed) => Err(FormRefusal::TooSlow),
        }
    }
}
