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
    /// When each WebSocket connection was accepted.
    connections: Vec<Instant>,
    /// The `apisecret` and `token` of each `create`.
    credentials: Vec<(Value, Value)>,
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
        json!({"janus": "event", "blob": "x".repeat(512 << 10)}).to_string(),
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
        survivor(),
    ]
}

/// How the fake Janus treats the daemon.
#[derive(Clone, Debug)]
enum Behaviour {
    /// Answers requests; after the watcher joined, plays [`script`].
    Hostile,
    /// Refuses the watcher's join with a VideoRoom error carrying this reason.
    RefuseJoin(String),
    /// On the first connection, after the watcher joined, sends one text message of this many
    /// bytes, then a valid new publisher; on later ones, the publisher alone.
    Huge(usize),
    /// Answers `create` (the session opens), then closes the connection.
    AcceptAndClose,
    /// After the watcher joined, announces this many audio publishers (feeds 1000, 1001, ...).
    Crowd(u64),
}

/// Serves daemon connections: answers their requests as `behaviour` says.
#[allow(clippy::result_large_err)] // tungstenite's handshake callback returns its own type
async fn serve(listener: TcpListener, seen: Arc<Mutex<Seen>>, behaviour: Behaviour) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let seen = seen.clone();
        let behaviour = behaviour.clone();
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
            let connection = {
                let mut seen = seen.lock().unwrap();
                seen.connections.push(Instant::now());
                seen.connections.len()
            };
            let (mut tx, mut rx) = ws.split();
            let mut next_handle = WATCHER;
            while let Some(Ok(msg)) = rx.next().await {
                let Message::Text(text) = msg else { continue };
                let req: Value = serde_json::from_str(&text).unwrap_or_default();
                let t = req["transaction"].clone();
                let kind = req["janus"].as_str().unwrap_or("").to_string();
                seen.lock().unwrap().requests.push(kind.clone());
                if kind == "create" {
                    seen.lock()
                        .unwrap()
                        .credentials
                        .push((req["apisecret"].clone(), req["token"].clone()));
                }
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
                        match (body["request"].as_str(), body["ptype"].as_str(), &behaviour) {
                            (Some("join"), Some("publisher"), Behaviour::RefuseJoin(reason)) => {
                                out.push(json!({
                                    "janus": "event", "session_id": 1, "sender": sender, "transaction": t,
                                    "plugindata": {"plugin": "janus.plugin.videoroom", "data": {
                                        "videoroom": "event", "error_code": 426, "error": reason
                                    }}
                                }).to_string());
                            }
                            (Some("join"), Some("publisher"), _) => {
                                out.push(json!({
                                    "janus": "event", "session_id": 1, "sender": sender, "transaction": t,
                                    "plugindata": {"plugin": "janus.plugin.videoroom", "data": {
                                        "videoroom": "joined", "room": 1234, "id": 1, "private_id": 5,
                                        "publishers": []
                                    }}
                                }).to_string());
                                match &behaviour {
                                    Behaviour::Huge(size) => {
                                        if connection == 1 {
                                            out.push(huge_event(*size));
                                        }
                                        out.push(survivor());
                                    }
                                    Behaviour::Crowd(n) => {
                                        let publishers: Vec<Value> = (1000..1000 + n)
                                            .map(|id| json!({"id": id, "display": format!("p{id}"), "streams": [
                                                {"type": "audio", "mid": "0", "codec": "opus"}
                                            ]}))
                                            .collect();
                                        out.push(event(WATCHER, json!({"videoroom": "event", "room": 1234, "publishers": publishers})));
                                    }
                                    _ => out.extend(script()),
                                }
                            }
                            (Some("join"), Some("subscriber"), _) => {
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
                if let Behaviour::AcceptAndClose = behaviour {
                    let _ = tx.close().await;
                    return;
                }
            }
        });
    }
}

/// Starts a fake Janus on a loopback port; returns the port and what it will see.
fn fake_janus(rt: &tokio::runtime::Runtime, behaviour: Behaviour) -> (u16, Arc<Mutex<Seen>>) {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("a loopback port");
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    rt.spawn(serve(listener, seen.clone(), behaviour));
    (port, seen)
}

/// A fake Janus on a loopback port and the daemon connected to it, logging to a file.
struct Rig {
    _scratch: Scratch,
    out_dir: std::path::PathBuf,
    seen: Arc<Mutex<Seen>>,
    log: std::path::PathBuf,
    daemon: KillOnDrop,
    _rt: tokio::runtime::Runtime,
}

impl Rig {
    /// Starts the fake Janus and a daemon recording room 1234 from it; `env` is added to the
    /// daemon's environment.
    fn start(tag: &str, behaviour: Behaviour, env: &[(&str, &std::ffi::OsStr)]) -> Rig {
        Rig::start_with(tag, behaviour, env, "")
    }

    /// [`Rig::start`] with `extra` appended to the daemon's config.
    fn start_with(
        tag: &str,
        behaviour: Behaviour,
        env: &[(&str, &std::ffi::OsStr)],
        extra: &str,
    ) -> Rig {
        Rig::start_at(tag, behaviour, env, extra, "", "")
    }

    /// [`Rig::start_with`] reaching the fake Janus as `ws://{userinfo}127.0.0.1:PORT/{query}`.
    fn start_at(
        tag: &str,
        behaviour: Behaviour,
        env: &[(&str, &std::ffi::OsStr)],
        extra: &str,
        userinfo: &str,
        query: &str,
    ) -> Rig {
        let scratch = Scratch::new(tag);
        let out_dir = scratch.path.join("recordings");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (port, seen) = fake_janus(&rt, behaviour);

        let config = scratch.path.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[janus]\nurl = \"ws://{userinfo}127.0.0.1:{port}/{query}\"\n[output]\ndir = \"{}\"\n[network]\nadvertise = [\"127.0.0.1\"]\n{extra}\n[[rooms]]\nroom = 1234\n",
                out_dir.display()
            ),
        )
        .unwrap();
        let log = scratch.path.join("daemon.log");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_janus-recorder"));
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info,janus_recorder=debug")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let daemon = KillOnDrop(cmd.spawn().unwrap());
        Rig {
            _scratch: scratch,
            out_dir,
            seen,
            log,
            daemon,
            _rt: rt,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `done` holds for what the fake Janus saw; fails if the daemon dies.
    fn wait_until(&mut self, what: &str, within: Duration, done: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.seen.lock().unwrap()) {
            assert!(
                self.daemon.0.try_wait().unwrap().is_none(),
                "the daemon died: {}",
                self.log_text()
            );
            assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; saw {:?}\n{}",
                self.seen.lock().unwrap(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM; the daemon must exit 0 without a panic. Returns its log.
    fn stop(mut self) -> String {
        unsafe { libc::kill(self.daemon.0.id() as i32, libc::SIGTERM) };
        let status = self.daemon.0.wait().unwrap();
        let text = self.log_text();
        assert!(status.success(), "{status}\n{text}");
        assert!(!text.contains("panicked"), "{text}");
        text
    }
}

/// A plain new publisher (feed 42, audio only).
fn survivor() -> String {
    event(
        WATCHER,
        json!({"videoroom": "event", "room": 1234, "publishers": [
            {"id": 42, "display": "Survivor", "streams": [
                {"type": "audio", "mid": "0", "codec": "opus"}
            ]}
        ]}),
    )
}

/// A VideoRoom event of `size` bytes (a long unknown field).
fn huge_event(size: usize) -> String {
    let empty = event(WATCHER, json!({"videoroom": "event", "blob": ""}));
    let blob = "x".repeat(size.saturating_sub(empty.len()));
    event(WATCHER, json!({"videoroom": "event", "blob": blob}))
}

fn survivor_subscribed(seen: &Seen) -> bool {
    subscribed_feeds(seen).contains(&42)
}

/// The feeds the daemon asked to subscribe to, over every subscriber `join` (a shared
/// subscription asks for several feeds in one).
fn subscribed_feeds(seen: &Seen) -> std::collections::BTreeSet<u64> {
    seen.subscriber_joins
        .iter()
        .flat_map(|j| j["streams"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["feed"].as_u64())
        .collect()
}

#[test]
fn hostile_janus_messages_never_crash_the_daemon() {
    let mut rig = Rig::start("hostile", Behaviour::Hostile, &[]);
    // The daemon acts on the valid publisher that follows all the garbage.
    rig.wait_until(
        "the daemon acts on Janus's messages",
        Duration::from_secs(20),
        survivor_subscribed,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        rig.daemon.0.try_wait().unwrap().is_none(),
        "the daemon died"
    );
    let out_dir = rig.out_dir.clone();
    let text = rig.stop();
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

/// A Janus URL with credentials in it (`ws://user:pw@host/?token=...`) is used as given but
/// never shown: not in the logs, not in the room manifest nor any other file written
/// (before: copied into every manifest's `janus` and into log lines).
#[test]
fn credentials_in_the_janus_url_are_never_written() {
    let mut rig = Rig::start_at(
        "url-secret",
        Behaviour::Crowd(1),
        &[],
        "",
        "admin:hunter2@",
        "?token=s3cret",
    );
    rig.wait_until(
        "the daemon joins and subscribes",
        Duration::from_secs(20),
        |seen| !seen.subscriber_joins.is_empty(),
    );
    let is_manifest = |f: &std::path::PathBuf| f.to_string_lossy().ends_with(".room.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !files_under(&rig.out_dir).iter().any(is_manifest) {
        assert!(
            Instant::now() < deadline,
            "no room manifest: {}",
            rig.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let files = files_under(&rig.out_dir);
    let manifest = std::fs::read_to_string(files.iter().find(|f| is_manifest(f)).unwrap()).unwrap();
    assert!(manifest.contains("(redacted)@127.0.0.1"), "{manifest}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let content = String::from_utf8_lossy(&bytes);
        assert!(
            !content.contains("hunter2") && !content.contains("s3cret"),
            "{} holds the URL's credentials",
            f.display()
        );
    }
    let text = rig.stop();
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "the log shows the URL's credentials: {text}"
    );
}

/// A Janus reason with a newline, a forged `WATCHDOG=1` and a NUL reaches the STATUS line
/// escaped, as one line, and the daemon keeps running.
#[test]
fn janus_text_cannot_forge_sd_notify_lines() {
    let scratch = Scratch::new("notify-sock");
    let socket_path = scratch.path.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut rig = Rig::start(
        "notify-inject",
        Behaviour::RefuseJoin("No such room\nWATCHDOG=1\nSTATUS=forged\0\u{1b}[2J".into()),
        &[("NOTIFY_SOCKET", socket_path.as_os_str())],
    );
    rig.wait_until("the watcher tries to join", Duration::from_secs(10), |s| {
        s.requests.iter().any(|r| r == "message")
    });
    // STATUS is refreshed every 5 s; wait for one that carries the refusal.
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut messages = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !messages.iter().any(|m: &String| m.contains("No such room"))
    {
        if let Ok(n) = socket.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert!(
            rig.daemon.0.try_wait().unwrap().is_none(),
            "the daemon died: {}",
            rig.log_text()
        );
    }
    let status = messages
        .iter()
        .find(|m| m.contains("No such room"))
        .unwrap_or_else(|| panic!("no STATUS with Janus's reason in {messages:?}"));
    assert!(
        status.contains(r"No such room\nWATCHDOG=1\nSTATUS=forged\u{0}\u{1b}[2J"),
        "{status:?}"
    );
    for m in &messages {
        assert!(
            m.lines()
                .all(|l| !l.starts_with("WATCHDOG=") && l != "STATUS=forged"),
            "a forged line: {m:?}"
        );
    }
    let text = rig.stop();
    assert!(
        !text.lines().any(|l| l.starts_with("WATCHDOG=1")),
        "the log has a forged line: {text}"
    );
}

/// A 2 MiB message (tungstenite would take up to 64 MiB) ends the connection, logged; the
/// daemon reconnects and acts on what the next connection brings.
#[test]
fn an_oversized_message_drops_the_connection() {
    let mut rig = Rig::start("huge", Behaviour::Huge(2 << 20), &[]);
    rig.wait_until(
        "the daemon reconnects and subscribes to the next publisher",
        Duration::from_secs(20),
        |s| s.connections.len() >= 2 && survivor_subscribed(s),
    );
    let text = rig.stop();
    assert!(
        text.contains("Message too long"),
        "the oversized message is logged: {text}"
    );
}

/// A Janus that opens a session and drops it at once is not hammered: the waits between
/// connections keep growing (1, 2, 4 s...) because no session lasts 30 s.
#[test]
fn a_janus_that_drops_every_session_is_reconnected_with_backoff() {
    let mut rig = Rig::start("storm", Behaviour::AcceptAndClose, &[]);
    rig.wait_until("the daemon connects again", Duration::from_secs(5), |s| {
        !s.connections.is_empty()
    });
    std::thread::sleep(Duration::from_secs(8));
    let connections = rig.seen.lock().unwrap().connections.clone();
    let text = rig.stop();
    // Connections at about 0, 1, 3 and 7 s.
    assert!(
        (3..=5).contains(&connections.len()),
        "{} connections in 8 s: {text}",
        connections.len()
    );
    let gaps: Vec<Duration> = connections.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.windows(2)
            .all(|g| g[1] > g[0] + Duration::from_millis(500)),
        "the waits grow: {gaps:?}"
    );
    assert!(
        text.contains("short-lived; reconnecting in 2s"),
        "the backoff is logged: {text}"
    );
}

/// `janus-recorder publish` takes the API secret and token from the environment, so they
/// need not be on its command line (visible to every user in `ps`).
#[test]
fn publish_takes_credentials_from_the_environment() {
    let scratch = Scratch::new("publish-env");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (port, seen) = fake_janus(&rt, Behaviour::RefuseJoin("not today".into()));
    let log = scratch.path.join("publish.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .args([
            "publish",
            "--url",
            &format!("ws://127.0.0.1:{port}"),
            "--room",
            "1234",
        ])
        .args([
            "--display",
            "env",
            "--seconds",
            "1",
            "--advertise",
            "127.0.0.1",
        ])
        .env("JANUS_API_SECRET", "s3cret-from-env")
        .env("JANUS_TOKEN", "token-from-env")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _guard = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().credentials.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let credentials = seen.lock().unwrap().credentials.clone();
    assert_eq!(
        credentials.first(),
        Some(&(json!("s3cret-from-env"), json!("token-from-env"))),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// With `[limits] max_feeds = 2`, a room announcing five publishers gets two subscriptions;
/// the other three are refused, each logged and counted once in `feeds_refused_total`, and
/// wait: as the first two fail (this Janus's offers are garbage), they are taken in turn.
#[test]
fn publishers_past_max_feeds_are_refused_logged_and_counted() {
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut rig = Rig::start_with(
        "max-feeds",
        Behaviour::Crowd(5),
        &[],
        &format!("[limits]\nmax_feeds = 2\n[metrics]\nlisten = \"{metrics}\"\n"),
    );
    rig.wait_until("two feeds subscribed", Duration::from_secs(10), |s| {
        subscribed_feeds(s).len() >= 2
    });
    rig.wait_until(
        "the waiting three subscribed once slots freed",
        Duration::from_secs(10),
        |s| subscribed_feeds(s).len() >= 5,
    );
    std::thread::sleep(Duration::from_millis(500));
    let refused = metric_of(metrics, "janus_recorder_feeds_refused_total");
    let text = rig.stop();
    assert_eq!(refused, Some(3.0), "{text}");
    assert_eq!(
        text.matches("publisher refused: [limits] max_feeds reached")
            .count(),
        3,
        "{text}"
    );
}

/// One sample from the daemon's Prometheus endpoint.
fn metric_of(addr: std::net::SocketAddr, sample: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.lines().find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == sample).then(|| value.parse().ok())?
    })
}

/// Kills the daemon if the test fails before stopping it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
