//! A response body that writes its request's access-log entry when it is done with: sent
//! to its end, or dropped because the client went away. Counts the body bytes on the way.

use super::{Body, BodyError};
use crate::access_log::{AccessLog, Entry};
use bytes::Bytes;
use http::StatusCode;
use http_body::{Frame, SizeHint};
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// See the module docs.
pub struct LoggedBody {
    inner: Body,
    /// Taken (and recorded) once, on drop.
    entry: Option<Entry>,
    log: AccessLog,
    status: StatusCode,
    started: Instant,
    sent: u64,
}

impl LoggedBody {
    pub fn new(
        inner: Body,
        entry: Entry,
        log: AccessLog,
        status: StatusCode,
        started: Instant,
    ) -> Self {
        Self {
            inner,
            entry: Some(entry),
            log,
            status,
            started,
            sent: 0,
        }
    }
}

impl http_body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.sent += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.finish(self.status, self.sent, self.started);
            self.log.record(entry);
        }
    }
}

impl fmt::Debug for LoggedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoggedBody")
            .field("inner", &self.inner)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}
