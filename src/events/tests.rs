//! The outbox and the webhooks against a real HTTP receiver on loopback.

use super::*;
use std::net::SocketAddr;

const SECRET: &str = "whsec-0123456789abcdef";

/// What a receiver got: each event's id and type, and whether its signature was right.
#[derive(Debug, Default)]
struct Got {
    events: Vec<(String, EventKind, bool)>,
}

/// A webhook receiver on `addr` (port 0: any), verifying signatures; `hang` never answers.
async fn receiver(
    addr: SocketAddr,
    hang: bool,
) -> (SocketAddr, Arc<Mutex<Got>>, tokio::task::JoinHandle<()>) {
    let got: Arc<Mutex<Got>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    if hang {
                        std::future::pending::<()>().await;
                    }
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
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
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
        retry_max: Duration::from_millis(500),
    }
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
}

/// Signed, in order, only the kinds wanted; the stream gets every event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_in_order_and_only_those_wanted() {
    let (addr, got, _server) = receiver("127.0.0.1:0".parse().unwrap(), false).await;
    let dir = scratch("order");
    let stop = CancellationToken::new();
    let events = Events::start(
        &dir,
        vec![hook(
            addr,
            vec![EventKind::RecordingStarted, EventKind::RecordingFinished],
        )],
        &tokio::runtime::Handle::current(),
        stop.clone(),
    )
    .unwrap();
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
    let ids: Vec<&String> = delivered.iter().map(|e| &e.0).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "in the order emitted");
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
    let first = CancellationToken::new();
    let events = Events::start(
        &dir,
        vec![hook(addr, vec![])],
        &tokio::runtime::Handle::current(),
        first.clone(),
    )
    .unwrap();
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

    let second = CancellationToken::new();
    let events = Events::start(
        &dir,
        vec![hook(addr, vec![])],
        &tokio::runtime::Handle::current(),
        second.clone(),
    )
    .unwrap();
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

/// Over `max_outbox` the oldest events are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_drops_the_oldest() {
    let addr = a_free_port();
    let dir = scratch("full");
    let stop = CancellationToken::new();
    let mut h = hook(addr, vec![]);
    h.max_outbox = 3;
    let events = Events::start(
        &dir,
        vec![h],
        &tokio::runtime::Handle::current(),
        stop.clone(),
    )
    .unwrap();
    for i in 0..5 {
        events.emit(EventKind::RecordingStarted, serde_json::json!({ "n": i }));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let kept: Vec<u64> = webhook_files(&dir)
            .iter()
            .filter_map(|f| {
                let e: Event = serde_json::from_slice(&std::fs::read(f).ok()?).ok()?;
                e.data["n"].as_u64()
            })
            .collect();
        if kept == [2, 3, 4] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{kept:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, got, _server) = receiver(addr, false).await;
    assert_eq!(wait_for(&got, 3).await.len(), 3);
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A receiver that never answers neither blocks `emit` nor loses the event: it is tried again
/// after the timeout, and taken once the receiver answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_blocks_nothing() {
    let (addr, _hung, server) = receiver("127.0.0.1:0".parse().unwrap(), true).await;
    let dir = scratch("hang");
    let stop = CancellationToken::new();
    let mut h = hook(addr, vec![]);
    h.timeout = Duration::from_millis(300);
    let events = Events::start(
        &dir,
        vec![h],
        &tokio::runtime::Handle::current(),
        stop.clone(),
    )
    .unwrap();
    let began = std::time::Instant::now();
    for _ in 0..100 {
        events.emit(EventKind::RecordingFinished, serde_json::json!({}));
    }
    assert!(
        began.elapsed() < Duration::from_millis(100),
        "emit waits for nothing"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.abort();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, got, _server) = receiver(addr, false).await;
    assert_eq!(wait_for(&got, 100).await.len(), 100);
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}
