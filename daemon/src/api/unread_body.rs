//! A refusal reaches the client even when nothing read the request body.
//!
//! An extractor that refuses a request (no key, a wrong one, a key without the scope) answers before
//! the body is read, so that an unknown caller costs nothing. With the body unread, HTTP/1.1 closes the
//! connection after the answer, and HTTP/2 sends the answer and then resets the stream: RFC 9113 §8.1
//! allows that, but curl 7.88 (Debian 12) reports "Stream error in the HTTP/2 framing layer" and shows
//! neither the status nor the JSON. So after an error answer, what is left of an unread body is read and
//! dropped before the answer goes out, within the same size limit and deadline as a body a handler
//! reads: a refused caller can make the daemon read no more than an accepted one.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};

use super::AppState;

/// The request body, until a handler starts reading it.
type Unread = Arc<Mutex<Option<Body>>>;

/// Middleware: runs the request, and reads what is left of an unread body before an error answer.
pub async fn read_before_refusing(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let hint = hyper::body::Body::size_hint(&body);
    let unread: Unread = Arc::new(Mutex::new(Some(body)));
    let handed = TakenOnFirstRead {
        unread: Arc::clone(&unread),
        body: None,
        hint,
    };
    let response = next
        .run(Request::from_parts(parts, Body::new(handed)))
        .await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let left = unread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(body) = left {
            let api = &state.service.config().api;
            let limited = http_body_util::Limited::new(body, api.max_body_bytes);
            // Whatever happens (too large, too slow, the client gone), the answer goes out.
            let _ = tokio::time::timeout(api.connections.body_timeout(), limited.collect()).await;
        }
    }
    response
}

/// The body a handler sees: it takes the real body out of the shared slot when first read, so that a
/// body still in the slot after the handler is one nothing read.
struct TakenOnFirstRead {
    unread: Unread,
    body: Option<Body>,
    hint: SizeHint,
}

impl hyper::body::Body for TakenOnFirstRead {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.body.is_none() {
            this.body = this
                .unread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
        match this.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.hint
    }
}
