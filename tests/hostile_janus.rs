//! A scripted fake Janus (a real WebSocket server speaking janus-protocol, on loopback) feeds
//! the daemon malformed JSON, missing fields, huge numbers, unknown events, hostile display
//! names and a garbage SDP offer. The daemon must stay up, keep acting on the valid messages
//! that follow, write nothing outside its output directory, and exit 0 on SIGTERM.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

use support::{Scratch, files_under};

/// What the fake Janus saw the daemon do.
#[derive(Default, Debug)]
struct Seen {
    subscriber_joins: Vec<Value>,
    requests: Vec<String>,
}

const WATCHER: u64 = 100;

fn event(sender: u64, data: Value) -> String {
    json!({
        "janus": "event", "session_id": 1, "sender": sender,
        "plugindata": {"plugin": "janus.plugin.videoroom", "data": data}
    })
    .to_string()
}

/// Everything a hostile or broken Janus might send, then one valid new publisher.
fn script() -> Vec<String> {
    let hostile_name = "../../../tmp/jr-escape\u{0}\u{1b}[31m/..\\\u{202e}evil";
    vec![
        "not json at all".into(),
        "{}".into(),
        "[]".into(),
        "null".into(),
        json!({"janus": "event"}).to_string(),
        json!({"janus": 42, "session_id": "x"}).to_string(),
        json!({"janus": "something-new", "session_id": 1}).to_string(),
        "[".repeat(10_000) + &"]".repeat(10_000),
        json!({"janus": "event", "blob": "x".repeat(1 << 20)}).to_string(),
        r#"{"janus":"event","session_id":1,"sender":100,"plugindata":{"plugin":"janus.plugin.videoroom","data":{"videoroom":"event","room":18446744073709551616999,"unpublished":1e400}}}"#.into(),
        event(WATCHER, json!({"videoroom": "event", "leaving": -1, "reason": {"nested": true}})),
        // (A bare "kicked": "ok" would mean our watcher was kicked: it rejoins in 30 s.)
        event(WATCHER, json!({"videoroom": "event", "kicked": 987_654})),
        event(WATCHER, json!({"videoroom": "talking", "id": null})),
        event(WATCHER, json!({"videoroom": "a-new-event", "whatever": [1, 2, 3]})),
        event(999_999, json!({"videoroom": "event", "publishers": []})),
        event(WATCHER, json!({"videoroom": "event", "publishers": "not a list"})),
        event(WATCHER, json!({"videoroom": "event", "publishers": [
            {"id": 77, "display": hostile_name, "streams": [
                {"type": "video", "mid": "0", "codec": "h264"},
                {"type": "data"},
                {"type": "audio", "mid": null, "codec": 7},
                {"type": "audio", "mid": "1", "codec": "opus"}
            ]},
            {"display": "no id"},
            {"id": {"x": 1}, "display": 5}
        ]})),
        json!({"janus": "trickle", "session_id": 1, "sender": WATCHER, "candidate": {"candidate": "garbage"}}).to_string(),
        json!({"janus": "hangup", "session_id": 1, "sender": WATCHER, "reason": 123}).to_string(),
        json!({"janus": "media", "session_id": 1, "sender": WATCHER, "type": 5, "receiving": "yes"}).to_string(),
        json!({"janus": "slowlink", "session_id": 1, "sender": WATCHER, "lost": -5}).to_string(),
        json!({"janus": "webrtcup"}).to_string(),
        // After all that, a plain new publisher: the daemon must still act on it.
        event(WATCHER, json!({"videoroom": "event", "room": 1234, "publishers": [
            {"id": 42, "display": "Survivor", "streams": [
                {"type": "audio", "mid": "0", "codec": "opus"}
            ]}
        ]})),
    ]
}

/// Serves one daemon connection: answers its requests, and after the watcher joined, plays
/// the script.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback returns its own type
async fn serve(listener: TcpListener, seen: Arc<Mutex<Seen>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        tokio::spawn(async move {
            let callback = |_: &Request, mut response: Response| {
                response.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static("janus-protocol"),
                );
                Ok(response)
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
                return;
            };
            let (mut tx, mut rx) = ws.split();
            let mut next_handle = WATCHER;
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(text) = msg else { continue };
                let req: Value = serde_json::from_str(&text).unwrap_or_default();
                let t = req["transaction"].clone();
                let kind = req["janus"].as_str().unwrap_or("").to_string();
                seen.lock().unwrap().requests.push(kind.clone());
                let mut out: Vec<String> = Vec::new();
                match kind.as_str() {
                    "create" => out.push(
                        json!({"janus": "success", "transaction": t, "data": {"id": 1}})
                            .to_string(),
                    ),
                    "attach" => {
                        let id = next_handle;
                        next_handle += 1;
                        out.push(json!({"janus": "success", "transaction": t, "session_id": 1, "data": {"id": id}}).to_string());
                    }
                    "message" => {
                        let sender = req["handle_id"].as_u64().unwrap_or(0);
                        out.push(
                            json!({"janus": "ack", "transaction": t, "session_id": 1}).to_string(),
                        );
                        let body = &req["body"];
                        match (body["request"].as_str(), body["ptype"].as_str()) {
                            (Some("join"), Some("publisher")) => {
                                out.push(json!({
                                    "janus": "event", "session_id": 1, "sender": sender, "transaction": t,
                                    "plugindata": {"plugin": "janus.plugin.videoroom", "data": {
                                        "videoroom": "joined", "room": 1234, "id": 1, "private_id": 5,
                                        "publishers": []
                                    }}
                                }).to_string());
                                out.extend(script());
                            }
                            (Some("join"), Some("subscriber")) => {
                                seen.lock().unwrap().subscriber_joins.push(body.clone());
                                // What was asked for, as audio streams, with an offer that is
                                // not SDP at all.
                                let streams: Vec<Value> = body["streams"]
                                    .as_array()
                                    .cloned()
                                    .unwrap_or_default()
                                    .iter()
                                    .enumerate()
                                    .map(|(i, s)| json!({"type": "audio", "mid": i.to_string(),
                                        "feed_id": s["feed"], "feed_mid": s["mid"]}))
                                    .collect();
                                out.push(json!({
                                    "janus": "event", "session_id": 1, "sender": sender, "transaction": t,
                                    "plugindata": {"plugin": "janus.plugin.videoroom", "data": {
                                        "videoroom": "attached", "room": 1234, "streams": streams
                                    }},
                                    "jsep": {"type": "offer", "sdp": "v=0\r\nthis is not SDP\r\n"}
                                }).to_string());
                            }
                            _ => out.push(json!({
                                "janus": "event", "session_id": 1, "sender": sender, "transaction": t,
                                "plugindata": {"plugin": "janus.plugin.videoroom", "data": {"videoroom": "event", "left": "ok"}}
                            }).to_string()),
                        }
                    }
                    _ => out.push(
                        json!({"janus": "ack", "transaction": t, "session_id": 1}).to_string(),
                    ),
                }
                for m in out {
                    if tx.send(Message::Text(m.into())).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

#[test]
fn hostile_janus_messages_never_crash_the_daemon() {
    let scratch = Scratch::new("hostile");
    let out_dir = scratch.path.join("recordings");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    rt.spawn(serve(listener, seen.clone()));

    let config = scratch.path.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[janus]\nurl = \"ws://127.0.0.1:{port}\"\n[output]\ndir = \"{}\"\n[network]\nadvertise = [\"127.0.0.1\"]\n[[rooms]]\nroom = 1234\n",
            out_dir.display()
        ),
    )
    .unwrap();
    let log = scratch.path.join("daemon.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info,janus_recorder=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(child);
    let child = &mut guard.0;

    // The daemon acts on the valid publisher that follows all the garbage.
    let deadline = Instant::now() + Duration::from_secs(20);
    let survivor_subscribed = || {
        seen.lock()
            .unwrap()
            .subscriber_joins
            .iter()
            .any(|j| j["streams"][0]["feed"] == 42)
    };
    while !survivor_subscribed() && Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon died: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        survivor_subscribed(),
        "the daemon stopped acting on Janus's messages; saw {:?}",
        seen.lock().unwrap()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "the daemon died");

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("panicked"), "{text}");
    // Nothing written: no media came, and certainly nothing outside the output directory.
    assert!(
        files_under(&out_dir).is_empty(),
        "{:?}",
        files_under(&out_dir)
    );
    assert!(!std::path::Path::new("/tmp/jr-escape").exists());
    assert!(
        text.contains("unknown message from Janus") && text.contains("ignoring a frame from Janus"),
        "unknown and malformed messages are logged"
    );
    assert!(
        text.contains("bad SDP offer"),
        "the garbage offer is refused: {text}"
    );
}

/// Kills the daemon if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
