//! Webhooks from a daemon recording a real Janus room into a real HTTP receiver in the
//! namespace: signed events that survive the receiver being down for 30 s and the daemon
//! being SIGKILLed meanwhile (every event arrives, each id once), and how soon
//! `recording_finished` reaches a live receiver after the file is finalized.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use janus_recorder::events::sign;
use serde_json::Value;
use support::*;

const SECRET: &str = "whsec-test-0123456789";
const RECEIVER: &str = "127.0.0.1:9500";

/// One POST the receiver took.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    kind: String,
    valid: bool,
    arrived: SystemTime,
    event: Value,
}

/// A webhook receiver inside the namespace, verifying each signature; stops when dropped.
struct Receiver {
    got: Arc<Mutex<Vec<Delivery>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(ns: &Netns) -> Receiver {
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let g = got.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = spawn_in_netns(&ns.name, move || {
            block_on(async move {
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(
                        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                            let g = g.clone();
                            async move {
                                let sig = headers["janus-recorder-signature"]
                                    .to_str()
                                    .unwrap()
                                    .to_owned();
                                let t: u64 = sig[2..sig.find(',').unwrap()].parse().unwrap();
                                let event: Value = serde_json::from_slice(&body).unwrap();
                                g.lock().unwrap().push(Delivery {
                                    id: event["id"].as_str().unwrap().to_owned(),
                                    kind: event["type"].as_str().unwrap().to_owned(),
                                    valid: sign(SECRET.as_bytes(), t, &body) == sig
                                        && headers["janus-recorder-event-id"]
                                            == event["id"].as_str().unwrap(),
                                    arrived: SystemTime::now(),
                                    event,
                                });
                                axum::http::StatusCode::OK
                            }
                        },
                    ),
                );
                let listener = tokio::net::TcpListener::bind(RECEIVER).await.unwrap();
                ready_tx.send(()).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        ready.recv_timeout(Duration::from_secs(10)).unwrap();
        Receiver {
            got,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` events of `kind` arrived.
    fn wait_for(&self, kind: &str, n: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let of: Vec<Delivery> = self
                .deliveries()
                .into_iter()
                .filter(|d| d.kind == kind)
                .collect();
            if of.len() >= n {
                return of;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} {kind} events: {:#?}",
                of.len(),
                self.deliveries()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn config(out: &std::path::Path) -> String {
    recorder_config(
        out,
        "",
        &format!(
            "{}[http]\n[[webhooks]]\nurl = \"http://{RECEIVER}/hook\"\nsecret = \"{SECRET}\"\n\
             retry_max = \"2s\"\ntimeout = \"2s\"\n",
            rooms_toml(&[1721])
        ),
    )
}

#[test]
fn events_survive_a_receiver_down_for_30_s_and_a_sigkill() {
    require_tools();
    let scratch = Scratch::new("webhooks");
    let dir = scratch.path.clone();
    let ns = Netns::create("webhooks");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1721, "vp8")]);
    let out = dir.join("recordings");
    let config = config(&out);
    let down_since = Instant::now();
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    // Two publications while nobody receives; the daemon is killed, then started again.
    publish_held(&ns, &dir, 1721, "first", 2, 3.0, &[]);
    daemon
        .proc
        .wait_for_nth("recording finished", 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    unsafe { libc::kill(daemon.proc.child.id() as i32, libc::SIGKILL) };
    let _ = daemon.proc.child.wait();
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    publish_held(&ns, &dir, 1721, "second", 1, 3.0, &[]);
    daemon
        .proc
        .wait_for("recording finished", Duration::from_secs(10));
    let rest = Duration::from_secs(30).saturating_sub(down_since.elapsed());
    std::thread::sleep(rest);
    let failed_tries = lines_with(&dir.join("janus-recorder.log"), "webhook delivery failed").len();
    assert!(failed_tries > 0, "the receiver was down: deliveries failed");

    let receiver = Receiver::start(&ns);
    // Before the kill: room_started, 2 recording_started, 2 recording_finished (room_ended
    // was lost with the process: it never happened); after: room_started and 1 of each.
    let finished = receiver.wait_for("recording_finished", 3, Duration::from_secs(20));
    receiver.wait_for("recording_started", 3, Duration::from_secs(5));
    receiver.wait_for("room_started", 2, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(3));
    let all = receiver.deliveries();
    assert!(
        all.iter().all(|d| d.valid),
        "every signature valid: {all:#?}"
    );
    let mut ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    ids.sort();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "each id once: {all:#?}");
    let displays: Vec<&str> = finished
        .iter()
        .map(|d| d.event["data"]["sidecar"]["display"].as_str().unwrap())
        .collect();
    assert_eq!(
        displays.iter().filter(|d| d.starts_with("first")).count(),
        2,
        "{displays:?}"
    );
    assert!(displays.contains(&"second"), "{displays:?}");
    for d in &finished {
        assert_eq!(d.event["data"]["check"]["status"], "ok", "{:#}", d.event);
        assert!(
            d.event["data"]["bytes"].as_u64() > Some(1000),
            "{:#}",
            d.event
        );
    }

    // A live receiver: how soon recording_finished comes after the file is finalized.
    publish_held(&ns, &dir, 1721, "live", 5, 3.0, &[]);
    let live = receiver.wait_for("recording_finished", 8, Duration::from_secs(20));
    let mut delays: Vec<f64> = live
        .iter()
        .filter(|d| {
            d.event["data"]["sidecar"]["display"]
                .as_str()
                .unwrap()
                .starts_with("live")
        })
        .map(|d| {
            let ended = time::OffsetDateTime::parse(
                d.event["data"]["sidecar"]["ended_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            d.arrived
                .duration_since(SystemTime::from(ended))
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    assert_eq!(delays.len(), 5);
    let p = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
    println!(
        "recording_finished after the file's end, to a live receiver: p50 {:.0} ms, p95 {:.0} ms ({} recordings)",
        p(0.5),
        p(0.95),
        delays.len()
    );
    assert!(p(0.95) < 5000.0, "{delays:?}");
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    let ended = receiver.wait_for("room_ended", 1, Duration::from_secs(10));
    assert_eq!(ended[0].event["data"]["reason"], "shutdown");
}
