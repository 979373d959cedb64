//! The outbox and the webhooks against a real HTTP receiver on loopback.

use super::*;
use std::net::SocketAddr;

const SECRET: &str = "whsec-0123456789abcdef";

/// What a receiver got: each event taken (2xx) with its id, type and whether its signature
/// was right; every request; and those that followed a redirect.
#[derive(Debug, Default)]
struct Got {
    events: Vec<(String, EventKind, bool)>,
    tries: usize,
    redirected: usize,
}

/// How a receiver answers its `n`th request (from 0).
#[derive(Debug, Clone, Copy)]
enum Answer {
    Take,
    Hang,
    Status(u16),
    /// 307 to a path that would take it.
    Redirect,
}

/// A webhook receiver on `addr` (port 0: any), verifying signatures; `hang` never answers.
async fn receiver(
    addr: SocketAddr,
    hang: bool,
) -> (SocketAddr, Arc<Mutex<Got>>, tokio::task::JoinHandle<()>) {
    receiver_answering(
        addr,
        move |_| if hang { Answer::Hang } else { Answer::Take },
    )
    .await
}

async fn receiver_answering(
    addr: SocketAddr,
    answer: impl Fn(usize) -> Answer + Clone + Send + Sync + 'static,
) -> (SocketAddr, Arc<Mutex<Got>>, tokio::task::JoinHandle<()>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let got: Arc<Mutex<Got>> = Arc::default();
    let g = got.clone();
    let r = got.clone();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let g = g.clone();
                    let answer = answer.clone();
                    async move {
                        let n = {
                            let mut g = g.lock().unwrap();
                            g.tries += 1;
                            g.tries - 1
                        };
                        match answer(n) {
                            Answer::Take => {}
                            Answer::Hang => std::future::pending::<()>().await,
                            Answer::Status(s) => {
                                return StatusCode::from_u16(s).unwrap().into_response();
                            }
                            Answer::Redirect => {
                                return (
                                    StatusCode::TEMPORARY_REDIRECT,
                                    [("location", "/elsewhere")],
                                )
                                    .into_response();
                            }
                        }
                        assert_eq!(headers["content-type"], "application/json");
                        let sig = headers[SIGNATURE_HEADER].to_str().unwrap().to_owned();
                        let t: u64 = sig
                            .strip_prefix("t=")
                            .and_then(|s| s.split(',').next())
                            .unwrap()
                            .parse()
                            .unwrap();
                        let valid = sign(SECRET.as_bytes(), t, &body) == sig;
                        let e: Event = serde_json::from_slice(&body).unwrap();
                        assert_eq!(headers[webhook::EVENT_ID_HEADER], e.id.as_str());
                        g.lock().unwrap().events.push((e.id, e.kind, valid));
                        StatusCode::NO_CONTENT.into_response()
                    }
                },
            ),
        )
        .route(
            "/elsewhere",
            axum::routing::any(move || {
                let r = r.clone();
                async move {
                    r.lock().unwrap().redirected += 1;
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, got, task)
}

fn hook(addr: SocketAddr, events: Vec<EventKind>) -> WebhookConfig {
    WebhookConfig {
        url: format!("http://{addr}/hook"),
        secret: Secret::new(SECRET),
        events,
        name: None,
        max_outbox: 100,
        timeout: Duration::from_secs(2),
        // Also the first wait: retries every 100-200 ms.
        retry_max: Duration::from_millis(200),
    }
}

/// A bus with `hooks` on this test's runtime, and what stops its deliveries.
fn start(dir: &Path, hooks: Vec<WebhookConfig>) -> (Events, CancellationToken) {
    let stop = CancellationToken::new();
    let events =
        Events::start(dir, hooks, &tokio::runtime::Handle::current(), stop.clone()).unwrap();
    (events, stop)
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jr-events-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn wait_for(got: &Arc<Mutex<Got>>, n: usize) -> Vec<(String, EventKind, bool)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let events = got.lock().unwrap().events.clone();
        if events.len() >= n {
            return events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} events: {events:?}",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `delivered` came in the order of the ids (the order emitted), none twice.
fn in_id_order_each_once(delivered: &[(String, EventKind, bool)]) {
    let ids: Vec<&String> = delivered.iter().map(|e| &e.0).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "in id order, each once");
}

fn a_free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[test]
fn the_signature_is_stripes_scheme() {
    // From Python: hmac.new(secret, b'1700000000.{"id":"x"}', hashlib.sha256).hexdigest()
    assert_eq!(
        sign(SECRET.as_bytes(), 1_700_000_000, br#"{"id":"x"}"#),
        "t=1700000000,v1=ffcc3087b2ccc7bc8c7614f2a2500a2cb8605108d6b4bb72c037de4f60d0bd08"
    );
}

#[test]
fn webhook_tables_are_checked() {
    let parse = |t: &str| toml::from_str::<WebhookConfig>(t);
    let w = parse("url = \"https://a.example/h?token=x\"\nsecret = \"0123456789abcdef\"\nevents = [\"recording_finished\"]\ntimeout = \"3s\"").unwrap();
    assert!(w.validate().is_ok());
    assert_eq!(
        w.label(),
        "a.example",
        "never the URL, which may hold a token"
    );
    assert!(w.wants(EventKind::RecordingFinished) && !w.wants(EventKind::RoomStarted));
    assert!(parse("url = \"x\"\nsecret = \"s\"\nevents = [\"recording_done\"]").is_err());
    let bad = parse("url = \"ftp://x\"\nsecret = \"0123456789abcdef\"").unwrap();
    assert_eq!(bad.validate().unwrap_err().0, "url");
    let short = parse("url = \"http://x/\"\nsecret = \"short\"").unwrap();
    assert_eq!(short.validate().unwrap_err().0, "secret");
    assert!(parse("url = \"http://x/\"\nsecret = \"0123456789abcdef\"\ntimeout = \"0s\"").is_err());
    assert!(parse("url = \"http://x/\"\nsecret = \"0123456789abcdef\"\nurl2 = 1").is_err());
    let other = parse("url = \"http://y:8080/a\"\nsecret = \"0123456789abcdef\"").unwrap();
    assert_eq!(other.label(), "y:8080");
    assert_eq!(same_url(&[w.clone(), other.clone()]), None);
    assert_eq!(same_url(&[w.clone(), other.clone(), w.clone()]), Some(2));
    assert!(validate_all(&[w.clone(), other.clone()]).is_ok());
    let again = validate_all(&[w.clone(), other.clone(), w.clone()]).unwrap_err();
    assert_eq!(again.0, "webhooks[2].url");
    let mut same_host = other.clone();
    same_host.url = "http://y:8080/b".into();
    let err = validate_all(&[w.clone(), other.clone(), same_host.clone()]).unwrap_err();
    assert_eq!(err.0, "webhooks[2].name", "{err:?}");
    same_host.name = Some("b".into());
    assert!(validate_all(&[w, other, same_host]).is_ok());
}

/// Signed, in order, only the kinds wanted; the stream gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_in_order_and_only_those_wanted() {
    let (addr, got, _server) = receiver("127.0.0.1:0".parse().unwrap(), false).await;
    let dir = scratch("order");
    let wanted = vec![EventKind::RecordingStarted, EventKind::RecordingFinished];
    let (events, stop) = start(&dir, vec![hook(addr, wanted)]);
    let mut stream = events.subscribe();
    assert!(events.wanted(EventKind::RecordingFinished));
    for i in 0..5 {
        events.emit(EventKind::RecordingStarted, serde_json::json!({ "n": i }));
        events.emit(EventKind::RoomStarted, serde_json::json!({ "n": i }));
    }
    events.emit(EventKind::RecordingFinished, serde_json::json!({}));
    let delivered = wait_for(&got, 6).await;
    assert!(
        delivered.iter().all(|e| e.2),
        "every signature valid: {delivered:?}"
    );
    let kinds: Vec<EventKind> = delivered.iter().map(|e| e.1).collect();
    assert_eq!(kinds[..5], [EventKind::RecordingStarted; 5]);
    assert_eq!(kinds[5], EventKind::RecordingFinished);
    in_id_order_each_once(&delivered);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        got.lock().unwrap().events.len(),
        6,
        "room_started is not wanted"
    );
    assert_eq!(
        stream.recv().await.unwrap().kind,
        EventKind::RecordingStarted
    );
    assert_eq!(stream.recv().await.unwrap().kind, EventKind::RoomStarted);
    assert!(
        webhook_files(&dir).is_empty(),
        "delivered events leave the outbox"
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

fn webhook_files(dir: &Path) -> Vec<PathBuf> {
    let outbox = dir.join("outbox");
    std::fs::read_dir(&outbox)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|d| webhook::pending(&d.path()))
        .collect()
}

/// The receiver is down, the daemon "restarts" (the first bus stops, a new one opens the same
/// outbox), the receiver comes up: every event arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_receiver_down_and_a_restart() {
    let addr = a_free_port();
    let dir = scratch("restart");
    let (events, first) = start(&dir, vec![hook(addr, vec![])]);
    for i in 0..4 {
        events.emit(EventKind::RecordingFinished, serde_json::json!({ "n": i }));
    }
    // In the outbox before anything is delivered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while webhook_files(&dir).len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            webhook_files(&dir)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.cancel();
    drop(events);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (events, second) = start(&dir, vec![hook(addr, vec![])]);
    events.emit(EventKind::RoomEnded, serde_json::json!({}));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, got, _server) = receiver(addr, false).await;
    let delivered = wait_for(&got, 5).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let delivered_later = got.lock().unwrap().events.clone();
    assert_eq!(
        delivered.len(),
        delivered_later.len(),
        "nothing twice: {delivered_later:?}"
    );
    let mut ids: Vec<&String> = delivered_later.iter().map(|e| &e.0).collect();
    ids.dedup();
    assert_eq!(ids.len(), 5, "each id once");
    assert_eq!(
        delivered_later[4].1,
        EventKind::RoomEnded,
        "the oldest first"
    );
    second.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Over `max_outbox` the oldest events are dropped; also when a restart lowers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_drops_the_oldest() {
    let addr = a_free_port();
    let dir = scratch("full");
    let mut h = hook(addr, vec![]);
    h.max_outbox = 3;
    let (events, stop) = start(&dir, vec![h.clone()]);
    for i in 0..5 {
        events.emit(EventKind::RecordingStarted, serde_json::json!({ "n": i }));
    }
    outbox_becomes(&dir, &[2, 3, 4]).await;
    stop.cancel();
    drop(events);

    h.max_outbox = 2;
    let (_events, stop) = start(&dir, vec![h]);
    outbox_becomes(&dir, &[3, 4]).await;
    let (_, got, _server) = receiver(addr, false).await;
    assert_eq!(wait_for(&got, 2).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().events.len(), 2);
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the outboxes under `dir` hold the events whose `data.n` are `want`.
async fn outbox_becomes(dir: &Path, want: &[u64]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let kept: Vec<u64> = webhook_files(dir)
            .iter()
            .filter_map(|f| {
                let e: Event = serde_json::from_slice(&std::fs::read(f).ok()?).ok()?;
                e.data["n"].as_u64()
            })
            .collect();
        if kept == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{kept:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A receiver that never answers neither blocks `emit` nor loses the event: it is tried again
/// after the timeout, and taken once the receiver answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_blocks_nothing() {
    let (addr, hung, server) = receiver("127.0.0.1:0".parse().unwrap(), true).await;
    let dir = scratch("hang");
    let mut h = hook(addr, vec![]);
    h.timeout = Duration::from_millis(300);
    let (events, stop) = start(&dir, vec![h]);
    let began = std::time::Instant::now();
    for _ in 0..100 {
        events.emit(EventKind::RecordingFinished, serde_json::json!({}));
    }
    assert!(
        began.elapsed() < Duration::from_millis(100),
        "emit waits for nothing"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tries = hung.lock().unwrap().tries;
    assert!(tries >= 2, "tried again after the timeout: {tries}");
    server.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, got, _server) = receiver(addr, false).await;
    assert_eq!(wait_for(&got, 100).await.len(), 100);
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Answers other than 2xx (an error, a redirect, which is not followed) are tried again,
/// head of line: the events still arrive in order, each taken once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_is_retried_in_order() {
    let (addr, got, _server) = receiver_answering("127.0.0.1:0".parse().unwrap(), |n| match n {
        0 => Answer::Status(500),
        1 => Answer::Redirect,
        2 => Answer::Status(410),
        _ => Answer::Take,
    })
    .await;
    let dir = scratch("failing");
    let (events, stop) = start(&dir, vec![hook(addr, vec![])]);
    for i in 0..3 {
        events.emit(EventKind::RecordingStarted, serde_json::json!({ "n": i }));
    }
    let delivered = wait_for(&got, 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = got.lock().unwrap();
    assert_eq!(got.events.len(), 3, "each once: {:?}", got.events);
    assert_eq!(got.tries, 6, "3 refusals, then 3 taken");
    assert_eq!(got.redirected, 0, "a redirect is not followed");
    in_id_order_each_once(&delivered);
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Events emitted on plain threads (no runtime), several at once, reach the webhook in the
/// order of their ids (the outbox's order), each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_from_many_threads_arrive_in_id_order() {
    let (addr, got, _server) = receiver("127.0.0.1:0".parse().unwrap(), false).await;
    let dir = scratch("threads");
    let (events, stop) = start(&dir, vec![hook(addr, vec![])]);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let events = events.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    events.emit(
                        EventKind::RecordingFinished,
                        serde_json::json!({ "t": t, "i": i }),
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let delivered = wait_for(&got, 100).await;
    in_id_order_each_once(&delivered);
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reload: a webhook removed stops getting events and keeps its outbox, which it delivers
/// when it comes back; an added one starts; a changed one follows its new `events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_follow_a_reload() {
    let down = a_free_port();
    let (b_addr, b, _b) = receiver("127.0.0.1:0".parse().unwrap(), false).await;
    let dir = scratch("reload");
    let a = hook(down, vec![]);
    let (events, stop) = start(&dir, vec![a.clone()]);
    events.emit(EventKind::RoomStarted, serde_json::json!({ "n": 0 }));
    let a_dir = dir.join("outbox").join(a.key());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while webhook::pending(&a_dir).is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    events.set_webhooks(vec![hook(b_addr, vec![])]);
    events.emit(EventKind::RoomStarted, serde_json::json!({ "n": 1 }));
    assert_eq!(wait_for(&b, 1).await.len(), 1);
    assert_eq!(
        webhook::pending(&a_dir).len(),
        1,
        "a removed webhook keeps its outbox"
    );
    let b_key = hook(b_addr, vec![]).key();
    assert_eq!(
        webhook::orphaned(&dir.join("outbox"), &[b_key]),
        [(a_dir.clone(), 1)],
        "and is told of"
    );

    events.set_webhooks(vec![hook(b_addr, vec![EventKind::RoomEnded])]);
    assert!(!events.wanted(EventKind::RoomStarted));
    events.emit(EventKind::RoomStarted, serde_json::json!({ "n": 2 }));
    events.emit(EventKind::RoomEnded, serde_json::json!({ "n": 3 }));
    let to_b = wait_for(&b, 2).await;
    assert_eq!(to_b[1].1, EventKind::RoomEnded);

    let (_, a_got, _a) = receiver(down, false).await;
    events.set_webhooks(vec![a, hook(b_addr, vec![EventKind::RoomEnded])]);
    let to_a = wait_for(&a_got, 1).await;
    assert_eq!(
        to_a[0].1,
        EventKind::RoomStarted,
        "what it missed, delivered"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        b.lock().unwrap().events.len(),
        2,
        "room_started is not b's any more"
    );
    assert_eq!(a_got.lock().unwrap().events.len(), 1);
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Makes `path` look written `ago`.
fn age(path: &Path, ago: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - ago).unwrap();
}

/// What a previous run left: an event older than a day is dropped (by its `at`, or by its
/// file's time when `at` is not a time), a file that is not an
/// event is moved aside, a stale temporary removed; the rest is delivered and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_and_broken_outbox_files_are_dealt_with() {
    let (addr, got, _server) = receiver("127.0.0.1:0".parse().unwrap(), false).await;
    let dir = scratch("leftovers");
    let h = hook(addr, vec![]);
    let hook_dir = dir.join("outbox").join(h.key());
    std::fs::create_dir_all(&hook_dir).unwrap();
    let event = |id: &str, at: SystemTime| Event {
        id: id.into(),
        kind: EventKind::RecordingFinished,
        at: rfc3339(at),
        data: serde_json::json!({}),
    };
    let day = Duration::from_secs(25 * 3600);
    let write = |name: &str, bytes: &[u8]| std::fs::write(hook_dir.join(name), bytes).unwrap();
    write(
        "0-old.json",
        &serde_json::to_vec(&event("0-old", SystemTime::now() - day)).unwrap(),
    );
    write("1-bad.json", b"{not json");
    let mut garbled = event("0b-garbled", SystemTime::now());
    garbled.at = "yesterday".into();
    write("0b-garbled.json", &serde_json::to_vec(&garbled).unwrap());
    age(&hook_dir.join("0b-garbled.json"), day);
    write(
        "2-ok.json",
        &serde_json::to_vec(&event("2-ok", SystemTime::now())).unwrap(),
    );
    write(".3-cut.json.0123.tmp", b"{\"id\":");
    age(
        &hook_dir.join(".3-cut.json.0123.tmp"),
        Duration::from_secs(120),
    );
    write(".4-now.json.0123.tmp", b"{\"id\":");

    let (_events, stop) = start(&dir, vec![h]);
    let delivered = wait_for(&got, 1).await;
    assert_eq!(delivered[0].0, "2-ok");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().events.len(), 1);
    let mut left: Vec<String> = std::fs::read_dir(&hook_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [".4-now.json.0123.tmp", "1-bad.broken"],
        "a temporary being written now is left alone"
    );
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A state directory that cannot hold the outbox is an error of `start`, not a panic.
#[tokio::test]
async fn an_unusable_state_dir_is_an_error() {
    let file = scratch("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let started = Events::start(
        &file,
        vec![],
        &tokio::runtime::Handle::current(),
        CancellationToken::new(),
    );
    assert!(started.is_err());
    let _ = std::fs::remove_file(&file);
}

const CHILD_DIR: &str = "JR_EVENTS_TEST_CHILD_DIR";
const CHILD_ADDR: &str = "JR_EVENTS_TEST_CHILD_ADDR";

/// A process SIGKILLed while it writes events into the outbox: what it had written is
/// delivered by the next one, each event once, in order; a file cut short is not sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_a_sigkill() {
    // In the child (this test run again by itself, below): emit 300 events for a webhook
    // that is down, then wait to be killed.
    if let (Ok(dir), Ok(addr)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_ADDR)) {
        let (events, _stop) = start(Path::new(&dir), vec![hook(addr.parse().unwrap(), vec![])]);
        for i in 0..300 {
            events.emit(EventKind::RecordingFinished, serde_json::json!({ "n": i }));
        }
        std::future::pending::<()>().await;
    }
    let addr = a_free_port();
    let dir = scratch("sigkill");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "events::tests::events_survive_a_sigkill"])
        .env(CHILD_DIR, &dir)
        .env(CHILD_ADDR, addr.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while webhook_files(&dir).len() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the child wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written = webhook_files(&dir).len();

    let (_, got, _server) = receiver(addr, false).await;
    let (_events, stop) = start(&dir, vec![hook(addr, vec![])]);
    let delivered = wait_for(&got, written).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.lock().unwrap().events.len(), written);
    assert!(delivered.iter().all(|e| e.2), "signed");
    in_id_order_each_once(&delivered);
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}
