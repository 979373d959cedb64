//! The HTTP API against a real Janus and real publishers: rooms started and stopped on
//! demand (kept over a restart), recordings listed and fetched (ranges, a live file),
//! tokens and bad input refused with clear errors while recording goes on, the events
//! stream, and `rooms = "all"` recording a room created while the daemon runs.

mod support;

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use support::*;

const CONTROL: &str = "control-token-0123456789";
const READ: &str = "read-token-0123456789abc";
const API: &str = "127.0.0.1:9469";

/// `[http]` with a control and a read token.
fn http_toml() -> String {
    format!(
        "[http]\nlisten = \"{API}\"\n[[http.tokens]]\nname = \"app\"\ntoken = \"{CONTROL}\"\n\
         scope = \"control\"\n[[http.tokens]]\ntoken = \"{READ}\"\nscope = \"read\"\n"
    )
}

/// One answer of the API.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// An error answer's code and message.
    fn error(&self) -> (String, String) {
        let v = self.json();
        (
            v["error"]["code"].as_str().unwrap_or_default().to_owned(),
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }
}

/// Calls the API inside the namespace.
fn call(
    ns: &Netns,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let url = format!("http://{API}{path}");
    let token = token.map(str::to_owned);
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    block_on_in_netns(ns, move || async move {
        let mut req = reqwest::Client::new()
            .request(method, &url)
            .timeout(Duration::from_secs(20));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    })
}

fn get(ns: &Netns, path: &str) -> Answer {
    call(ns, "GET", path, Some(READ), None, &[])
}

/// Waits until `f` holds, polling; fails with `what` after `timeout`.
fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The room entry of `room` in `GET /rooms`.
fn room_entry(ns: &Netns, room: &str) -> Option<Value> {
    let v = get(ns, "/api/v1/rooms").json();
    v["rooms"]
        .as_array()?
        .iter()
        .find(|r| r["room"].to_string().trim_matches('"') == room)
        .cloned()
}

#[test]
fn rooms_on_demand_recordings_files_tokens_and_bad_input() {
    require_tools();
    let scratch = Scratch::new("api");
    let dir = scratch.path.clone();
    let ns = Netns::create("api");
    let _janus = Janus::start(
        &ns,
        &dir,
        &[RoomSpec::new(1701, "vp8"), RoomSpec::new(1702, "vp8")],
    );
    let out = dir.join("recordings");
    let config = recorder_config(&out, "", &http_toml());
    let mut daemon = Daemon::start(&ns, &dir, &config);
    daemon
        .proc
        .wait_for("serving the HTTP API", Duration::from_secs(20));
    let events = follow_events(&ns, API, Some(READ));

    // Tokens: none, a wrong one, a read token where control is needed.
    let put = |token: Option<&str>, path: &str, body: Option<Vec<u8>>| {
        call(&ns, "PUT", path, token, body, &[])
    };
    let a = put(None, "/api/v1/rooms/default/1701", None);
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (401, "unauthorized"),
        "{a:?}"
    );
    assert_eq!(a.headers["www-authenticate"], "Bearer");
    let a = put(
        Some("wrong-token-wrong-token"),
        "/api/v1/rooms/default/1701",
        None,
    );
    assert_eq!(a.status, 401, "{a:?}");
    let a = put(Some(READ), "/api/v1/rooms/default/1701", None);
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (403, "forbidden"),
        "{a:?}"
    );
    assert_eq!(
        call(&ns, "GET", "/api/v1/rooms", None, None, &[]).status,
        401
    );

    // Bad input: each a clear 4xx naming what is wrong.
    let a = put(Some(CONTROL), "/api/v1/rooms/default/abc", None);
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.error().1.contains("not a room number"), "{a:?}");
    let a = put(Some(CONTROL), "/api/v1/rooms/elsewhere/1701", None);
    assert_eq!(a.status, 404, "{a:?}");
    assert!(a.error().1.contains("elsewhere"), "{a:?}");
    let a = put(
        Some(CONTROL),
        "/api/v1/rooms/default/1701",
        Some(vec![b' '; 1 << 20]),
    );
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (413, "payload_too_large"),
        "{a:?}"
    );
    let a = put(
        Some(CONTROL),
        "/api/v1/rooms/default/1701",
        Some(b"{\"pin\": ".to_vec()),
    );
    assert_eq!(a.status, 400, "{a:?}");
    let a = put(
        Some(CONTROL),
        "/api/v1/rooms/default/1701",
        Some(br#"{"split_after": "1s"}"#.to_vec()),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.error().1.contains("split_after"), "{a:?}");
    let a = put(
        Some(CONTROL),
        "/api/v1/rooms/default/1701",
        Some(br#"{"colour": "red"}"#.to_vec()),
    );
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.error().1.contains("colour"), "{a:?}");
    let a = get(&ns, "/api/v1/recordings?limit=0");
    assert_eq!(a.status, 400, "{a:?}");
    assert!(a.error().1.contains("limit"), "{a:?}");
    let a = get(&ns, "/api/v1/nothing-here");
    assert_eq!(
        (a.status, a.error().0.as_str()),
        (404, "not_found"),
        "{a:?}"
    );

    // Start room 1701; a second start is a conflict.
    let a = put(
        Some(CONTROL),
        "/api/v1/rooms/default/1701",
        Some(br#"{"max_duration": "2h"}"#.to_vec()),
    );
    assert_eq!(a.status, 201, "{a:?}");
    assert_eq!(a.json()["source"], "api");
    let a = put(Some(CONTROL), "/api/v1/rooms/default/1701", None);
    assert_eq!((a.status, a.error().0.as_str()), (409, "conflict"), "{a:?}");
    eventually(Duration::from_secs(20), "room 1701 watched", || {
        room_entry(&ns, "1701").filter(|r| r["state"] == "watching")
    });

    // A publisher; the recording is live, listed with bytes so far, its file served by range.
    let mut publisher = synthetic_publishers(&ns, &dir, 1701, "alice", 1, 60.0, &[]);
    daemon
        .proc
        .wait_for("recording started", Duration::from_secs(20));
    let live = eventually(
        Duration::from_secs(10),
        "a live recording with bytes",
        || {
            let v = get(&ns, "/api/v1/recordings?room=1701&state=recording").json();
            v["recordings"]
                .as_array()
                .and_then(|r| r.first().cloned())
                .filter(|r| r["bytes"].as_u64() > Some(1000))
        },
    );
    let id = live["id"].as_str().unwrap().to_owned();
    assert!(live["duration_ms"].as_u64().is_some(), "{live:#}");
    let a = call(
        &ns,
        "GET",
        &format!("/api/v1/recordings/{id}/file"),
        Some(READ),
        None,
        &[("range", "bytes=0-99")],
    );
    assert_eq!(a.status, 206, "live file by range: {a:?}");
    assert_eq!(a.body.len(), 100);
    assert_eq!(&a.body[..4], &[0x1a, 0x45, 0xdf, 0xa3], "an EBML header");
    // Bad input while it records: refused, and the recording goes on (checked below).
    for (body, status) in [(vec![b'x'; 1 << 20], 413), (b"{\"until\": 5".to_vec(), 400)] {
        let a = put(Some(CONTROL), "/api/v1/rooms/default/1702", Some(body));
        assert_eq!(a.status, status, "{a:?}");
    }
    let entry = room_entry(&ns, "1701").unwrap();
    assert_eq!(entry["feeds_recording"], 1, "{entry:#}");
    assert!(entry["until"].is_string(), "{entry:#}");

    // While it records: the metrics, the OpenAPI document, the command line.
    let metrics = get(&ns, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(String::from_utf8_lossy(&metrics.body).contains("janus_recorder_feeds_recording 1"));
    let doc = get(&ns, "/api/v1/openapi.json").json();
    assert!(
        doc["paths"]["/api/v1/rooms/{server}/{room}"]["put"].is_object(),
        "{doc:#}"
    );
    let cli = ns
        .command(env!("CARGO_BIN_EXE_janus-recorder"))
        .args(["rooms", "--config"])
        .arg(&daemon.config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(
        text.contains("default 1701  api  watching  1 feeds"),
        "{text}"
    );

    // Stop it: the file is finalized, ending `stopped`.
    std::thread::sleep(Duration::from_secs(3));
    let a = call(
        &ns,
        "DELETE",
        "/api/v1/rooms/default/1701",
        Some(CONTROL),
        None,
        &[],
    );
    assert_eq!(a.status, 204, "{a:?}");
    daemon
        .proc
        .wait_for("recording finished", Duration::from_secs(10));
    let a = call(
        &ns,
        "DELETE",
        "/api/v1/rooms/default/1701",
        Some(CONTROL),
        None,
        &[],
    );
    assert_eq!(a.status, 404, "stopping it again: {a:?}");
    publisher.terminate(Duration::from_secs(5));

    let detail = eventually(Duration::from_secs(5), "the finished recording", || {
        let a = get(&ns, &format!("/api/v1/recordings/{id}"));
        (a.status == 200 && a.json()["state"] == "finished").then(|| a.json())
    });
    assert_eq!(detail["sidecar"]["end_reason"], "stopped", "{detail:#}");
    assert_eq!(detail["check"]["status"], "ok", "{detail:#}");
    let on_disk = std::fs::read(out.join("1701").join(detail["file"].as_str().unwrap())).unwrap();
    let a = call(
        &ns,
        "GET",
        &format!("/api/v1/recordings/{id}/file"),
        Some(READ),
        None,
        &[],
    );
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "video/webm");
    assert!(
        a.body == on_disk,
        "the file from the API is the file on disk"
    );
    let a = call(
        &ns,
        "GET",
        &format!("/api/v1/recordings/{id}/file"),
        Some(READ),
        None,
        &[("range", "bytes=100-")],
    );
    assert_eq!(a.status, 206);
    assert_eq!(a.body, on_disk[100..]);
    assert_eq!(get(&ns, "/api/v1/recordings/1701~nope").status, 404);
    assert_eq!(get(&ns, "/api/v1/recordings/..~etc").status, 404);

    // The events stream told the room and the recording, start to finish.
    eventually(
        Duration::from_secs(5),
        "recording_finished on the stream",
        || events_of(&events, "recording_finished").first().cloned(),
    );
    let started = events_of(&events, "recording_started");
    assert_eq!(started.len(), 1, "{started:#?}");
    assert_eq!(started[0]["data"]["id"], id.as_str());
    let finished = &events_of(&events, "recording_finished")[0];
    assert_eq!(finished["data"]["sidecar"]["end_reason"], "stopped");
    assert_eq!(finished["data"]["check"]["status"], "ok", "{finished:#}");
    assert_eq!(
        events_of(&events, "room_ended")[0]["data"]["reason"],
        "stopped"
    );

    // A room started through the API is recorded again after a restart.
    let a = put(
        Some(CONTROL),
        "/api/v1/rooms/default/1702",
        Some(br#"{"split_after": "1h"}"#.to_vec()),
    );
    assert_eq!(a.status, 201, "{a:?}");
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let mut daemon = Daemon::start(&ns, &dir, &config);
    daemon
        .proc
        .wait_for("serving the HTTP API", Duration::from_secs(20));
    let entry = eventually(Duration::from_secs(20), "room 1702 watched again", || {
        room_entry(&ns, "1702").filter(|r| r["state"] == "watching")
    });
    assert_eq!(entry["source"], "api");
    assert!(
        room_entry(&ns, "1701").is_none(),
        "the stopped room stays stopped"
    );
    let listed = get(&ns, "/api/v1/recordings").json();
    assert_eq!(
        listed["recordings"].as_array().unwrap().len(),
        1,
        "{listed:#}"
    );
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

#[test]
fn rooms_all_records_rooms_created_on_janus_and_finalizes_destroyed_ones() {
    require_tools();
    let scratch = Scratch::new("api-all");
    let dir = scratch.path.clone();
    let ns = Netns::create("api-all");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1711, "vp8")]);
    let out = dir.join("recordings");
    let config = recorder_config(&out, "", &http_toml()).replace(
        "url = \"ws://127.0.0.1:8188\"\n",
        "url = \"ws://127.0.0.1:8188\"\nrooms = \"all\"\nexclude = [1711]\n",
    );
    let mut daemon = Daemon::start(&ns, &dir, &config);
    daemon
        .proc
        .wait_for("serving the HTTP API", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        room_entry(&ns, "1711").is_none(),
        "an excluded room is not recorded"
    );

    // Rooms created through Janus's API while the daemon runs: one open, one with a PIN.
    let created = videoroom_request(
        &ns,
        json!({"request": "create", "room": 1799, "publishers": 6, "videocodec": "vp8", "description": "made later"}),
    );
    assert_eq!(created["videoroom"], "created", "{created:#}");
    let pinned = videoroom_request(
        &ns,
        json!({"request": "create", "room": 1798, "pin": "4242", "videocodec": "vp8"}),
    );
    assert_eq!(pinned["videoroom"], "created", "{pinned:#}");
    let entry = eventually(Duration::from_secs(10), "room 1799 watched", || {
        room_entry(&ns, "1799").filter(|r| r["state"] == "watching")
    });
    assert_eq!(entry["source"], "discovered");
    let skipped = eventually(Duration::from_secs(10), "room 1798 skipped", || {
        room_entry(&ns, "1798")
    });
    assert_eq!(skipped["state"], "skipped", "{skipped:#}");
    assert!(
        skipped["reason"].as_str().unwrap().contains("PIN"),
        "{skipped:#}"
    );
    // `status` says so too.
    eventually(
        Duration::from_secs(10),
        "status naming the skipped room",
        || {
            let out = ns
                .command(env!("CARGO_BIN_EXE_janus-recorder"))
                .args(["status", "--config"])
                .arg(&daemon.config)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("room 1798: skipped: the room needs a PIN")
                .then_some(text)
        },
    );

    let joined = SystemTime::now();
    let mut publisher = synthetic_publishers(&ns, &dir, 1799, "late", 1, 60.0, &[]);
    daemon
        .proc
        .wait_for("recording started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    let destroyed = videoroom_request(&ns, json!({"request": "destroy", "room": 1799}));
    assert_eq!(destroyed["videoroom"], "destroyed", "{destroyed:#}");
    daemon
        .proc
        .wait_for("recording finished", Duration::from_secs(10));
    publisher.terminate(Duration::from_secs(5));
    let recs = recordings_of(&out, "late");
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let (file, sidecar) = &recs[0];
    assert_eq!(sidecar["end_reason"], "destroyed", "{sidecar:#}");
    assert!(first_video_packet_is_key(file));
    assert_eq!(decode_errors(file).trim(), "");
    let started = time::OffsetDateTime::parse(
        sidecar["started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let delay = SystemTime::from(started)
        .duration_since(joined)
        .unwrap_or_default();
    println!(
        "rooms = \"all\": publisher joined -> first frame of its recording: {} ms (first keyframe {} ms after it was announced)",
        delay.as_millis(),
        sidecar["first_keyframe_ms"]
    );
    eventually(
        Duration::from_secs(10),
        "room 1799 gone from the list",
        || room_entry(&ns, "1799").is_none().then_some(()),
    );
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}
