//! Janus's Admin API inside a test's namespace (the test Janus listens on 7188 with the
//! secret below): to find our subscriber handles and to fault them from Janus's side.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};

use super::{Netns, block_on_in_netns};

const ADMIN: &str = "ws://127.0.0.1:7188";
const ADMIN_SECRET: &str = "janus-test-admin";

/// Janus's Admin API inside the namespace: one request, its answer.
pub fn admin(ns: &Netns, mut request: Value) -> Value {
    block_on_in_netns(ns, move || async move {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = ADMIN.into_client_request().unwrap();
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "janus-admin-protocol".parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("the Admin API");
        request["transaction"] = json!("t");
        request["admin_secret"] = json!(ADMIN_SECRET);
        ws.send(request.to_string().into()).await.unwrap();
        loop {
            let msg = ws.next().await.unwrap().unwrap();
            if let Ok(text) = msg.to_text()
                && let Ok(v) = serde_json::from_str::<Value>(text)
                && v["transaction"] == "t"
            {
                return v;
            }
        }
    })
}

/// Our subscriber handles: (session, handle) of every VideoRoom subscriber on Janus.
pub fn subscriber_handles(ns: &Netns) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    let sessions = admin(ns, json!({"janus": "list_sessions"}));
    for s in sessions["sessions"].as_array().unwrap() {
        let s = s.as_u64().unwrap();
        let handles = admin(ns, json!({"janus": "list_handles", "session_id": s}));
        for h in handles["handles"].as_array().cloned().unwrap_or_default() {
            let h = h.as_u64().unwrap();
            let info = admin(
                ns,
                json!({"janus": "handle_info", "session_id": s, "handle_id": h}),
            );
            if info["info"]["plugin_specific"]["type"] == "subscriber" {
                found.push((s, h));
            }
        }
    }
    found
}
