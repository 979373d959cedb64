//! `/api/v1/events`: the events (rooms and recordings starting, finishing, failing) as a
//! Server-Sent Events stream, for scripts and dashboards. Webhooks are the durable way; this
//! stream has what happens while it is connected.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ErrorBody};

pub(super) fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Every event from now on, one SSE message each: `event:` is its type, `id:` its id,
/// `data:` the event as JSON (as webhooks get it). A client too slow to keep up gets a
/// `lagged` event saying how many it missed.
#[utoipa::path(
    get,
    path = "/events",
    responses(
        (status = 200, description = "A text/event-stream of events", content_type = "text/event-stream"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)
    )
)]
async fn events(State(api): State<Api>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = api.events.subscribe();
    // Ends when the bus closes; a client that goes away drops the stream and its receiver.
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = match rx.recv().await {
            Ok(e) => {
                let kind = serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let data = serde_json::to_string(&*e).unwrap_or_default();
                SseEvent::default().event(kind).id(e.id.clone()).data(data)
            }
            Err(RecvError::Lagged(n)) => SseEvent::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(item), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
