//! The Janus WebSocket API client: one connection and one session per Janus server.
//!
//! A reader task parses every frame once ([`parse_incoming`]) and routes it: replies go to the
//! request that is waiting on its transaction, asynchronous messages go to the [`Handle`] they
//! name (`sender`). A writer task owns the sink; a keepalive task pings the session. When the
//! connection is lost, every waiting request fails and every handle's event stream ends, so
//! the tasks above see one clear signal and finalize their files.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::messages::{Incoming, Jsep, parse_incoming};
use super::tls::TlsTrust;
use crate::ids::{HandleId, SessionId};
use crate::secret::Secret;
use crate::text::Escaped;

/// Janus drops sessions idle for 60 s by default; 10 s leaves room for lost pings and for
/// servers configured with a shorter `session_timeout`.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a keepalive may wait for its answer. Janus acks keepalives from its transport
/// thread at once, so a few seconds of silence already means trouble.
const KEEPALIVE_REPLY: Duration = Duration::from_secs(5);
/// Keepalives in a row left unanswered that mean Janus is hung (alive on TCP, not answering).
/// After the first miss the second is sent at once, so a frozen Janus is noticed within about
/// 20 s: before its media sessions fail ICE consent (about 30 s), so the files say
/// `connection-lost`.
const KEEPALIVES_MISSED: u32 = 2;
/// Nothing at all received from Janus for this long is a lost connection too: keepalives
/// are answered, so a live Janus is never this quiet.
pub const MAX_SILENCE: Duration = Duration::from_secs(30);
/// The largest WebSocket message (and frame) accepted from Janus. Its largest real messages
/// are SDP offers and room lists of a few tens of KiB; tungstenite's default (64 MiB) would let
/// a hostile or broken server make us buffer that much per message. A longer message ends the
/// connection (logged), like any other read error.
pub const MAX_MESSAGE: usize = 1 << 20;
/// Messages queued for one handle before its owner takes them. A handle's owner takes each
/// event at once; a full queue means Janus floods it, and the connection is dropped (logged)
/// rather than let the queue grow.
const HANDLE_QUEUE: usize = 1024;
/// Requests queued for the writer; full means Janus stopped reading, so the connection is
/// dropped.
const OUT_QUEUE: usize = 1024;

/// What went wrong talking to Janus. Its text comes partly from Janus, so it is shown with
/// control characters escaped (it reaches logs and the STATUS line).
#[derive(Debug, Clone, thiserror::Error)]
pub enum JanusError {
    #[error("cannot connect to {url}: {}", Escaped(reason))]
    Connect { url: String, reason: String },
    #[error("connection to Janus lost")]
    Closed,
    #[error("Janus did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Janus error {code}: {}", Escaped(reason))]
    Janus { code: i64, reason: String },
    #[error("VideoRoom error {code}: {}", Escaped(message))]
    Plugin { code: i64, message: String },
    #[error("unexpected answer from Janus: {}", Escaped(.0))]
    Protocol(String),
}

/// Optional credentials added to every request. Its `Debug` shows neither.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub api_secret: Option<Secret>,
    pub token: Option<Secret>,
}

struct Pending {
    /// Plugin `message`s are acked first and answered later by an `event`.
    skip_ack: bool,
    reply: oneshot::Sender<Incoming>,
}

struct Inner {
    out: mpsc::Sender<Message>,
    pending: Mutex<HashMap<String, Pending>>,
    handles: Mutex<HashMap<HandleId, mpsc::Sender<Incoming>>>,
    next_transaction: AtomicU64,
    auth: Auth,
    /// Cancelled when the connection ends, for whatever reason.
    closed: CancellationToken,
    /// When the last frame of any kind came from Janus.
    last_heard: Mutex<tokio::time::Instant>,
}

impl Inner {
    fn new(out: mpsc::Sender<Message>, auth: Auth) -> Inner {
        Inner {
            out,
            pending: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            next_transaction: AtomicU64::new(1),
            auth,
            closed: CancellationToken::new(),
            last_heard: Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Notes that Janus sent something.
    fn heard(&self) {
        *self.last_heard.lock().unwrap() = tokio::time::Instant::now();
    }

    /// How long Janus has sent nothing.
    fn silence(&self) -> Duration {
        self.last_heard.lock().unwrap().elapsed()
    }

    /// Queues a message for the writer; a full queue drops the connection.
    fn queue(&self, m: Message) -> Result<(), JanusError> {
        match self.out.try_send(m) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::error!(
                    queued = OUT_QUEUE,
                    "Janus is not reading our requests; dropping the connection"
                );
                self.closed.cancel();
                Err(JanusError::Closed)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(JanusError::Closed),
        }
    }

    /// Adds a fresh transaction and the credentials to a request; returns the transaction.
    fn stamp(&self, body: &mut Value) -> String {
        let transaction = format!(
            "jr{}",
            self.next_transaction.fetch_add(1, Ordering::Relaxed)
        );
        body["transaction"] = json!(transaction);
        if let Some(s) = &self.auth.api_secret {
            body["apisecret"] = json!(s.expose());
        }
        if let Some(t) = &self.auth.token {
            body["token"] = json!(t.expose());
        }
        transaction
    }

    /// Sends `body` with a fresh transaction and waits for its answer.
    async fn request(&self, body: Value, skip_ack: bool) -> Result<Incoming, JanusError> {
        self.request_within(body, skip_ack, REQUEST_TIMEOUT).await
    }

    /// [`Inner::request`], waiting at most `limit` for the answer.
    async fn request_within(
        &self,
        mut body: Value,
        skip_ack: bool,
        limit: Duration,
    ) -> Result<Incoming, JanusError> {
        let transaction = self.stamp(&mut body);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(
            transaction.clone(),
            Pending {
                skip_ack,
                reply: tx,
            },
        );
        if self.closed.is_cancelled() || self.queue(Message::text(body.to_string())).is_err() {
            self.pending.lock().unwrap().remove(&transaction);
            return Err(JanusError::Closed);
        }
        let answer = tokio::select! {
            r = rx => r.map_err(|_| JanusError::Closed),
            _ = tokio::time::sleep(limit) => Err(JanusError::Timeout(limit)),
        };
        self.pending.lock().unwrap().remove(&transaction);
        match answer? {
            Incoming::Error { code, reason, .. } => Err(JanusError::Janus { code, reason }),
            other => Ok(other),
        }
    }

    /// Sends without waiting for an answer (used from `Drop`, which cannot await).
    fn send_nowait(&self, mut body: Value) {
        self.stamp(&mut body);
        let _ = self.queue(Message::text(body.to_string()));
    }

    /// Routes one parsed message from Janus.
    fn dispatch(&self, msg: Incoming) {
        if let Some(t) = msg.transaction() {
            let mut pending = self.pending.lock().unwrap();
            let is_ack = matches!(msg, Incoming::Ack { .. });
            if let Some(p) = pending.get(t)
                && !(is_ack && p.skip_ack)
            {
                let p = pending.remove(t).expect("present");
                let _ = p.reply.send(msg);
                return;
            }
            if is_ack {
                return;
            }
        }
        match msg.sender() {
            Some(h) => {
                let handles = self.handles.lock().unwrap();
                match handles.get(&h) {
                    Some(tx) => {
                        if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(msg) {
                            tracing::error!(
                                handle = %h,
                                queued = HANDLE_QUEUE,
                                "Janus floods a handle faster than it is served; dropping the connection"
                            );
                            self.closed.cancel();
                        }
                    }
                    None => {
                        tracing::debug!(handle = %h, ?msg, "message for a handle we no longer have")
                    }
                }
            }
            None => match msg {
                Incoming::Timeout { .. } => {
                    tracing::warn!("Janus timed our session out");
                    self.closed.cancel();
                }
                Incoming::Unknown(v) => {
                    tracing::warn!(message = %truncate(&v.to_string(), 500), "unknown message from Janus")
                }
                other => tracing::debug!(?other, "unsolicited message from Janus"),
            },
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A Janus session over one WebSocket connection. Cloning shares it.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
    id: SessionId,
    /// The URL it was opened with: which server it talks to.
    url: Arc<str>,
}

impl Session {
    /// Connects to `url` (`ws://` or `wss://`, subprotocol `janus-protocol`) and creates a
    /// session. A `wss://` server's certificate must chain to a CA that `trust` names; a
    /// certificate problem is an error like any other failure to connect (the caller retries).
    pub async fn connect(url: &str, auth: Auth, trust: &TlsTrust) -> Result<Session, JanusError> {
        let connect_err = |reason: String| JanusError::Connect {
            url: super::redacted(url),
            reason,
        };
        let mut request = url
            .into_client_request()
            .map_err(|e| connect_err(e.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let connector = if url.starts_with("wss://") {
            Some(Connector::Rustls(
                trust
                    .client_config()
                    .map_err(|e| connect_err(e.to_string()))?,
            ))
        } else {
            None
        };
        let limits = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (ws, _) = tokio::time::timeout(
            REQUEST_TIMEOUT,
            tokio_tungstenite::connect_async_tls_with_config(
                request,
                Some(limits),
                false,
                connector,
            ),
        )
        .await
        .map_err(|_| connect_err("timed out".into()))?
        .map_err(|e| connect_err(e.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::channel::<Message>(OUT_QUEUE);
        let inner = Arc::new(Inner::new(out, auth));

        let closed = inner.closed.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    msg = out_rx.recv() => match msg {
                        Some(m) => if let Err(e) = sink.send(m).await {
                            tracing::warn!(error = %e, "writing to Janus failed");
                            break;
                        },
                        None => break,
                    },
                    _ = closed.cancelled() => break,
                }
            }
            // Best effort: drain what is queued (detach/destroy on shutdown), then close.
            while let Ok(m) = out_rx.try_recv() {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
            closed.cancel();
        });

        let reader = Arc::downgrade(&inner);
        let closed = inner.closed.clone();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    f = stream.next() => f,
                    _ = closed.cancelled() => break,
                };
                let Some(inner) = reader.upgrade() else { break };
                if let Some(Ok(_)) = frame {
                    inner.heard();
                }
                match frame {
                    Some(Ok(Message::Text(text))) => match parse_incoming(&text) {
                        Ok(msg) => inner.dispatch(msg),
                        Err(e) => {
                            tracing::warn!(error = %e, frame = %Escaped(truncate(&text, 500)), "ignoring a frame from Janus")
                        }
                    },
                    Some(Ok(Message::Close(_))) | None => {
                        tracing::warn!("Janus closed the WebSocket");
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reading from Janus failed");
                        break;
                    }
                }
            }
            closed.cancel();
            if let Some(inner) = reader.upgrade() {
                // Failing every waiter and ending every handle's stream is the "connection lost" signal.
                inner.pending.lock().unwrap().clear();
                inner.handles.lock().unwrap().clear();
            }
        });

        let answer = inner.request(json!({"janus": "create"}), false).await?;
        let Incoming::Success { id: Some(id), .. } = answer else {
            return Err(JanusError::Protocol(format!("create answered {answer:?}")));
        };
        let session = Session {
            inner,
            id: SessionId(id),
            url: url.into(),
        };
        session.spawn_keepalive();
        Ok(session)
    }

    /// Pings the session every [`KEEPALIVE_INTERVAL`] and drops the connection when Janus
    /// is gone but the socket is not: [`KEEPALIVES_MISSED`] unanswered keepalives, or
    /// [`MAX_SILENCE`] without a frame.
    fn spawn_keepalive(&self) {
        let weak = Arc::downgrade(&self.inner);
        let id = self.id;
        let closed = self.inner.closed.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(KEEPALIVE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let mut missed = 0;
            loop {
                // After a miss, the next keepalive goes at once.
                if missed == 0 {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = closed.cancelled() => return,
                    }
                }
                let Some(inner) = weak.upgrade() else { return };
                let silence = inner.silence();
                if silence >= MAX_SILENCE {
                    tracing::error!(
                        ?silence,
                        "nothing received from Janus; the connection is lost"
                    );
                    inner.closed.cancel();
                    return;
                }
                let keepalive = json!({"janus": "keepalive", "session_id": id.0});
                match inner
                    .request_within(keepalive, false, KEEPALIVE_REPLY)
                    .await
                {
                    Ok(_) => missed = 0,
                    Err(JanusError::Janus { code, reason }) => {
                        // 458: the session is gone on the server; only a new session helps.
                        tracing::warn!(code, reason = %Escaped(&reason), "keepalive refused; dropping the connection");
                        inner.closed.cancel();
                        return;
                    }
                    Err(JanusError::Closed) => return,
                    Err(e) => {
                        missed += 1;
                        tracing::warn!(error = %e, missed, "keepalive unanswered");
                        if missed >= KEEPALIVES_MISSED {
                            tracing::error!(
                                missed,
                                "Janus answers no keepalive: it is hung; the connection is lost"
                            );
                            inner.closed.cancel();
                            return;
                        }
                    }
                }
                tick.reset();
            }
        });
    }

    /// The URL of the server, as configured: what tells servers apart.
    pub fn url(&self) -> &Arc<str> {
        &self.url
    }

    /// The session id Janus gave us.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Resolves when the connection is lost (or the session timed out).
    pub async fn closed(&self) {
        self.inner.closed.cancelled().await
    }

    /// Whether the connection is already lost.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.is_cancelled()
    }

    /// Attaches a handle to the VideoRoom plugin.
    pub async fn attach_videoroom(&self) -> Result<Handle, JanusError> {
        let answer = self
            .inner
            .request(
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom", "session_id": self.id.0}),
                false,
            )
            .await?;
        let Incoming::Success { id: Some(id), .. } = answer else {
            return Err(JanusError::Protocol(format!("attach answered {answer:?}")));
        };
        let id = HandleId(id);
        let (tx, rx) = mpsc::channel(HANDLE_QUEUE);
        self.inner.handles.lock().unwrap().insert(id, tx);
        Ok(Handle {
            session: self.clone(),
            id,
            events: rx,
            detached: false,
        })
    }

    /// Destroys the session and closes the connection.
    pub async fn destroy(&self) {
        if !self.is_closed() {
            let _ = self
                .inner
                .request(json!({"janus": "destroy", "session_id": self.id.0}), false)
                .await;
        }
        self.inner.closed.cancel();
    }
}

/// A plugin handle. Dropping it detaches it (fire and forget).
pub struct Handle {
    session: Session,
    id: HandleId,
    events: mpsc::Receiver<Incoming>,
    detached: bool,
}

impl Handle {
    /// Sends a plugin `message` (with an optional `jsep`) and waits past the `ack` for its
    /// answer: the plugin's data and any SDP. A VideoRoom `error_code` becomes an error.
    pub async fn message(
        &self,
        body: Value,
        jsep: Option<&Jsep>,
    ) -> Result<(Value, Option<Jsep>), JanusError> {
        let mut req = json!({
            "janus": "message",
            "session_id": self.session.id.0,
            "handle_id": self.id.0,
            "body": body,
        });
        if let Some(j) = jsep {
            req["jsep"] = json!(j);
        }
        let answer = self.session.inner.request(req, true).await?;
        let (data, jsep) = match answer {
            Incoming::Event { data, jsep, .. } => (data, jsep),
            Incoming::Success {
                plugindata: Some(data),
                ..
            } => (data, None),
            other => return Err(JanusError::Protocol(format!("message answered {other:?}"))),
        };
        if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
            let message = data
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            return Err(JanusError::Plugin { code, message });
        }
        Ok((data, jsep))
    }

    /// Sends our ICE candidates (SDP `candidate:` strings, all on mid "0"/m-line 0 because
    /// the session is BUNDLEd), then `completed`.
    pub async fn trickle(&self, candidates: &[String]) -> Result<(), JanusError> {
        let list: Vec<Value> = candidates
            .iter()
            .map(|c| json!({"candidate": c, "sdpMid": "0", "sdpMLineIndex": 0}))
            .collect();
        for candidate in [json!(list), json!({"completed": true})] {
            let key = if candidate.is_array() {
                "candidates"
            } else {
                "candidate"
            };
            let mut req = json!({
                "janus": "trickle",
                "session_id": self.session.id.0,
                "handle_id": self.id.0,
            });
            req[key] = candidate;
            self.session.inner.request(req, false).await?;
        }
        Ok(())
    }

    /// The next asynchronous message about this handle; `None` once the connection is lost.
    pub async fn next_event(&mut self) -> Option<Incoming> {
        self.events.recv().await
    }

    /// The handle's asynchronous messages, taken apart from it, so that a task can wait for
    /// them while requests on the handle (shared) are under way. `next_event` on the handle
    /// says `None` from then on.
    pub fn take_events(&mut self) -> mpsc::Receiver<Incoming> {
        std::mem::replace(&mut self.events, mpsc::channel(1).1)
    }

    /// Detaches the handle and waits for Janus to confirm.
    pub async fn detach(mut self) {
        self.detached = true;
        self.session.inner.handles.lock().unwrap().remove(&self.id);
        let _ = self
            .session
            .inner
            .request(
                json!({"janus": "detach", "session_id": self.session.id.0, "handle_id": self.id.0}),
                false,
            )
            .await;
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        self.session.inner.handles.lock().unwrap().remove(&self.id);
        self.session.inner.send_nowait(
            json!({"janus": "detach", "session_id": self.session.id.0, "handle_id": self.id.0}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handle whose queue is full ends the connection instead of growing the queue.
    #[test]
    fn a_flooded_handle_drops_the_connection() {
        let (out, _out_rx) = mpsc::channel(1);
        let inner = Inner::new(out, Auth::default());
        let (tx, rx) = mpsc::channel(HANDLE_QUEUE);
        inner.handles.lock().unwrap().insert(HandleId(7), tx);
        let event = r#"{"janus":"webrtcup","session_id":1,"sender":7}"#;
        for _ in 0..HANDLE_QUEUE {
            inner.dispatch(parse_incoming(event).unwrap());
        }
        assert!(!inner.closed.is_cancelled());
        inner.dispatch(parse_incoming(event).unwrap());
        assert!(inner.closed.is_cancelled());
        assert_eq!(rx.len(), HANDLE_QUEUE);
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let auth = Auth {
            api_secret: Some(Secret::new("hunter2")),
            token: Some(Secret::new("t0ken")),
        };
        let text = format!("{auth:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("t0ken"),
            "{text}"
        );
    }

    /// A full request queue fails the request and ends the connection.
    #[test]
    fn a_full_request_queue_drops_the_connection() {
        let (out, _out_rx) = mpsc::channel(1);
        let inner = Inner::new(out, Auth::default());
        inner.send_nowait(json!({"janus": "keepalive"}));
        assert!(!inner.closed.is_cancelled());
        inner.send_nowait(json!({"janus": "keepalive"}));
        assert!(inner.closed.is_cancelled());
    }
}
