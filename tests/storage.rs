//! `[storage]`: finished recordings go to a real S3 server (Garage, single node, in the
//! test's namespace), verified, under the key template; failures that waiting will not heal
//! are said clearly and the files kept; `keep_local = "until-uploaded"` deletes only what is
//! verified.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use sha2::Digest;
use support::garage::Garage;
use support::*;

const UPLOADED: &str = "uploaded and verified";
const DELETED: &str = "deleted the uploaded local copy";

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key the template `rec/{room}/{date}/{feed}/{file}` gives a recording's file.
fn key_of(file: &Path, sidecar: &serde_json::Value) -> String {
    format!(
        "rec/{}/{}/{}/{}",
        sidecar["room"],
        &sidecar["started_at"].as_str().unwrap()[..10],
        sidecar["feed"],
        file.file_name().unwrap().to_string_lossy()
    )
}

/// Garage, Janus with one VP8 room and the daemon recording it with `[storage]` (the table
/// `storage` makes, given the server and the scratch directory), watching the room; `output`
/// is more `[output]` lines.
/// Fields drop in order: the daemon first, the scratch directory last.
struct Rig {
    daemon: Daemon,
    _janus: Janus,
    garage: Garage,
    ns: Netns,
    _scratch: Scratch,
    dir: PathBuf,
    out: PathBuf,
}

fn rig(
    tag: &str,
    room: u64,
    output: &str,
    storage: impl FnOnce(&mut Garage, &Path) -> String,
) -> Rig {
    require_tools();
    let scratch = Scratch::new(tag);
    let dir = scratch.path.clone();
    let ns = Netns::create(tag);
    let mut garage = Garage::start(&ns, &dir);
    let janus = Janus::start(&ns, &dir, &[RoomSpec::new(room, "vp8")]);
    let out = dir.join("recordings");
    let storage = storage(&mut garage, &dir);
    let config = recorder_config(&out, output, &format!("{}{storage}", rooms_toml(&[room])));
    let daemon = Daemon::watching(&ns, &dir, &config, 1);
    Rig {
        daemon,
        _janus: janus,
        garage,
        ns,
        _scratch: scratch,
        dir,
        out,
    }
}

/// The `path=` field of a log line.
fn path_in(line: &str) -> PathBuf {
    line.split("path=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no path in {line}"))
}

fn room_manifests(out: &Path) -> Vec<PathBuf> {
    files_under(out)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".room.json"))
        .collect()
}

/// Every recording of `displays` in `room`, its sidecar and the room's one manifest are in
/// the bucket under `rec/{room}/{date}/{feed}/{file}`, byte-identical, with their SHA-256;
/// and nothing else is.
fn assert_all_uploaded(out: &Path, garage: &Garage, room: u64, displays: &[&str]) {
    let mut expected = Vec::new();
    for display in displays {
        let recs = recordings_of(out, display);
        assert!(!recs.is_empty(), "no recording of {display}");
        for (media, sidecar) in &recs {
            for file in [media.clone(), media.with_extension("json")] {
                expected.push((key_of(&file, sidecar), file));
            }
        }
    }
    let manifests = room_manifests(out);
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifests[0]).unwrap()).unwrap();
    assert!(manifest["ended_at"].is_string(), "{manifest:#}");
    expected.push((
        format!(
            "rec/{room}/{}/{}",
            &manifest["started_at"].as_str().unwrap()[..10],
            manifests[0].file_name().unwrap().to_string_lossy()
        ),
        manifests[0].clone(),
    ));
    let mut keys: Vec<String> = expected.iter().map(|(k, _)| k.clone()).collect();
    keys.sort();
    assert_eq!(garage.keys(), keys);
    for (key, file) in &expected {
        let local = std::fs::read(file).unwrap();
        let (remote, sha) = garage.get(key);
        assert!(remote == local, "{key} differs from {}", file.display());
        assert_eq!(sha.as_deref(), Some(sha256_hex(&local).as_str()), "{key}");
    }
}

#[test]
fn three_recordings_sidecars_and_the_manifest_are_uploaded_byte_identical() {
    let key = "key = \"rec/{room}/{date}/{feed}/{file}\"\n";
    let mut r = rig("storage3", 1701, "", |g, d| g.storage_toml(d, key));
    let (dir, out) = (r.dir.clone(), r.out.clone());
    let (garage, ns, daemon) = (&r.garage, &r.ns, &mut r.daemon);
    publish_held(ns, &dir, 1701, "up", 3, 4.0, &[]);
    daemon
        .proc
        .wait_for_nth("recording finished", 3, Duration::from_secs(15));
    let destroyed = videoroom_request(ns, json!({"request": "destroy", "room": 1701}));
    assert_eq!(destroyed["videoroom"], "destroyed", "{destroyed}");
    // 3 recordings, 3 sidecars, 1 manifest.
    daemon
        .proc
        .wait_for_nth(UPLOADED, 7, Duration::from_secs(60));

    assert_all_uploaded(&out, garage, 1701, &["up-1", "up-2", "up-3"]);
    let metrics_free_log = daemon.proc.log_text();
    assert!(
        !metrics_free_log.contains("upload failed"),
        "{}",
        daemon.proc.log_tail(40)
    );
}

/// How long the storage is down in the outage test (seconds; `JRT_STORAGE_OUTAGE_SECS`).
fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("JRT_STORAGE_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    )
}

#[test]
fn storage_down_for_minutes_while_recording_loses_nothing() {
    let extra = "key = \"rec/{room}/{date}/{feed}/{file}\"\n[http]\nlisten = \"127.0.0.1:9479\"\n";
    let mut r = rig("storaged", 1704, "split_after = \"5s\"\n", |g, d| {
        g.storage_toml(d, extra)
    });
    let (dir, out) = (r.dir.clone(), r.out.clone());
    r.garage.kill();
    let down = std::time::Instant::now();
    let (ns, daemon) = (&r.ns, &mut r.daemon);
    // Recording goes on: two publishers, two files each (split after 5 s), while the
    // storage is down.
    publish_held(ns, &dir, 1704, "down", 2, 8.0, &[]);
    let destroyed = videoroom_request(ns, json!({"request": "destroy", "room": 1704}));
    assert_eq!(destroyed["videoroom"], "destroyed", "{destroyed}");
    daemon
        .proc
        .wait_for("upload failed; retrying", Duration::from_secs(60));
    // Two files per recording and the manifest wait in the queue.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = http_get(ns, "127.0.0.1:9479", "/metrics");
        let queued = metric(&metrics, "janus_recorder_upload_queue_files");
        if queued >= 5.0 {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{queued} files queued:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        metric(
            &metrics,
            "janus_recorder_upload_failures_total{cause=\"unavailable\"}"
        ) >= 1.0,
        "{metrics}"
    );
    std::thread::sleep(outage().saturating_sub(down.elapsed()));
    assert!(
        !daemon.proc.log_text().contains(UPLOADED),
        "uploaded while the storage was down"
    );
    r.garage.restart(&r.ns);
    let files =
        2 * recordings_of(&out, "down-1").len() + 2 * recordings_of(&out, "down-2").len() + 1;
    r.daemon
        .proc
        .wait_for_nth(UPLOADED, files, MAX_BACKOFF_WAIT + outage());
    assert_all_uploaded(&out, &r.garage, 1704, &["down-1", "down-2"]);
    let metrics = http_get(&r.ns, "127.0.0.1:9479", "/metrics");
    assert_eq!(metric(&metrics, "janus_recorder_upload_queue_files"), 0.0);
}

/// The longest a test waits for a retry: the storage's longest backoff, 5 min ±25%.
const MAX_BACKOFF_WAIT: Duration = Duration::from_secs(400);

#[test]
fn wrong_credentials_keep_the_files_and_a_mended_config_drains_the_queue() {
    // A secret key that is not the key's.
    let wrong = |g: &mut Garage, dir: &Path| {
        let table = g.storage_toml(dir, "[http]\nlisten = \"127.0.0.1:9479\"\n");
        std::fs::write(dir.join("s3-secret"), "0".repeat(64)).unwrap();
        table
    };
    let mut r = rig("storagec", 1702, "", wrong);
    let (dir, out) = (r.dir.clone(), r.out.clone());
    let (garage, ns, daemon) = (&r.garage, &r.ns, &mut r.daemon);
    let events = follow_events(ns, "127.0.0.1:9479", None);
    publish_held(ns, &dir, 1702, "creds", 1, 3.0, &[]);
    let line = daemon
        .proc
        .wait_for("will not succeed by waiting", Duration::from_secs(30));
    assert!(line.contains("credentials"), "{line}");
    let recs = recordings_of(&out, "creds");
    assert_eq!(recs.len(), 1);
    assert!(recs[0].0.exists() && recs[0].0.with_extension("json").exists());
    assert!(garage.keys().is_empty());

    std::fs::write(dir.join("s3-secret"), format!("{}\n", garage.secret)).unwrap();
    unsafe { libc::kill(daemon.proc.child.id() as i32, libc::SIGHUP) };
    daemon
        .proc
        .wait_for_nth(UPLOADED, 2, Duration::from_secs(30));
    let keys = garage.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let media = &recs[0].0;
    let media_key = keys
        .iter()
        .find(|k| k.ends_with(&*media.file_name().unwrap().to_string_lossy()))
        .unwrap();
    let local = std::fs::read(media).unwrap();
    assert!(garage.get(media_key).0 == local);

    // The event stream told the failure once, with its cause, then each upload.
    let told = |kind: &str, n: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = events_of(&events, kind);
            if seen.len() >= n || std::time::Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let failed = told("recording_upload_failed", 1);
    assert!(!failed.is_empty(), "no recording_upload_failed");
    assert_eq!(failed[0]["data"]["cause"], "credentials", "{failed:?}");
    assert_eq!(failed[0]["data"]["path"], media.display().to_string());
    let uploaded = told("recording_uploaded", 2);
    let ev = uploaded
        .iter()
        .map(|e| &e["data"])
        .find(|d| d["kind"] == "media")
        .unwrap_or_else(|| panic!("no media upload told: {uploaded:?}"));
    assert_eq!(ev["key"], media_key.as_str(), "{ev}");
    assert_eq!(ev["bucket"], "recordings", "{ev}");
    assert_eq!(ev["bytes"], local.len(), "{ev}");
    assert_eq!(ev["sha256"], sha256_hex(&local), "{ev}");
    assert_eq!(ev["path"], media.display().to_string(), "{ev}");
    assert!(ev["id"].is_string(), "{ev}");
}

/// The API on loopback (no tokens needed there).
const API: &str = "127.0.0.1:9469";

/// `keep_local = "until-uploaded"`: the media file goes once its upload is verified, never
/// before; its sidecar stays (the index of the API and the page). The API then serves the
/// file from the bucket, ranges included, and the meeting, once its watch ended, is
/// `uploaded`.
#[test]
fn until_uploaded_deletes_the_local_copy_only_once_verified() {
    let until = |g: &mut Garage, d: &Path| {
        let storage = g.storage_toml(d, "keep_local = \"until-uploaded\"\n");
        format!("{storage}\n[http]\nlisten = \"{API}\"\n")
    };
    let mut r = rig("storageu", 1703, "", until);
    let dir = r.dir.clone();
    let (garage, ns, daemon) = (&r.garage, &r.ns, &mut r.daemon);
    publish_held(ns, &dir, 1703, "gone", 1, 3.0, &[]);
    let line = daemon
        .proc
        .wait_for("recording finished", Duration::from_secs(15));
    daemon.proc.wait_for(DELETED, Duration::from_secs(30));
    let media = path_in(&line);
    let sidecar = media.with_extension("json");
    assert!(!media.exists(), "{} is still there", media.display());
    daemon
        .proc
        .wait_for_nth(UPLOADED, 2, Duration::from_secs(30));
    assert!(sidecar.exists(), "the sidecar went too");
    let keys = garage.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    let media_key = keys
        .iter()
        .find(|k| k.ends_with(".webm"))
        .unwrap_or_else(|| panic!("no media object: {keys:?}"));
    for key in &keys {
        let (bytes, sha) = garage.get(key);
        assert_eq!(sha.as_deref(), Some(sha256_hex(&bytes).as_str()), "{key}");
        assert!(!bytes.is_empty());
    }
    // The media file went only after its upload was verified.
    let log = daemon.proc.log_text();
    let field = format!("path={}", media.display());
    let at = |needle: &str| {
        log.lines()
            .position(|l| l.contains(needle) && l.split_whitespace().any(|w| w == field))
            .unwrap_or_else(|| panic!("no {needle:?} for {field}:\n{log}"))
    };
    assert!(at(UPLOADED) < at(DELETED));

    // Served from the bucket: whole, a range, a range past the end.
    let (object, _) = garage.get(media_key);
    let id = format!(
        "{}~{}",
        media
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy(),
        media.file_stem().unwrap().to_string_lossy()
    );
    let file = format!("/api/v1/recordings/{id}/file");
    let whole = http_request(ns, API, &file, &[]);
    assert_eq!(whole.status, 200, "{}", whole.head);
    assert_eq!(whole.header("content-type"), Some("video/webm"));
    assert!(whole.body == object, "the served file is not the object");
    let part = http_request(ns, API, &file, &["Range: bytes=100-4195"]);
    assert_eq!(part.status, 206, "{}", part.head);
    let total = object.len();
    let want = format!("bytes 100-4195/{total}");
    assert_eq!(part.header("content-range"), Some(want.as_str()));
    assert!(
        part.body == object[100..4196],
        "the range is not the object's"
    );
    let past = http_request(ns, API, &file, &[&format!("Range: bytes={total}-")]);
    assert_eq!(past.status, 416, "{}", past.head);
    let detail: serde_json::Value =
        serde_json::from_str(&http_get(ns, API, &format!("/api/v1/recordings/{id}"))).unwrap();
    assert_eq!(detail["local"], false, "{detail:#}");
    assert_eq!(detail["uploaded"], true, "{detail:#}");
    assert_eq!(detail["bytes"], total, "{detail:#}");

    // The watch ends (a stop); after the next start that meeting is `uploaded`.
    daemon.proc.terminate(Duration::from_secs(20));
    let config = std::fs::read_to_string(&daemon.config).unwrap();
    *daemon = Daemon::watching(ns, &dir, &config, 1);
    let list: serde_json::Value =
        serde_json::from_str(&http_get(ns, API, "/api/v1/meetings?room=1703")).unwrap();
    let meeting = list["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["recordings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == id.as_str())
        })
        .unwrap_or_else(|| panic!("no meeting with {id}: {list:#}"));
    assert_eq!(meeting["state"], "uploaded", "{meeting:#}");
    let rec = &meeting["recordings"][0];
    assert_eq!(
        (&rec["local"], &rec["uploaded"]),
        (&false.into(), &true.into()),
        "{meeting:#}"
    );
    // The whole room cannot be made from files that are not here: said, not a broken file.
    let room = http_request(
        ns,
        API,
        &format!(
            "/api/v1/meetings/{}/room.mkv",
            meeting["id"].as_str().unwrap()
        ),
        &[],
    );
    assert_eq!(room.status, 409, "{}", room.head);
}

/// The daemon with `[storage]` and no Janus (uploads do not need one), started on a queue a
/// previous run left: one 100 MiB recording to upload (its queue entry as the daemon writes
/// them).
struct Leftover {
    daemon: Daemon,
    garage: Garage,
    ns: Netns,
    _scratch: Scratch,
    dir: PathBuf,
    config: String,
    file: PathBuf,
    journal: PathBuf,
}

const BIG: usize = 100 << 20;

fn leftover_queue(tag: &str) -> Leftover {
    let scratch = Scratch::new(tag);
    let dir = scratch.path.clone();
    let ns = Netns::create(tag);
    let garage = Garage::start(&ns, &dir);
    let out = dir.join("recordings");
    let file = out.join("1799").join("big.webm");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // Bytes that do not repeat (xorshift), so a part sent twice or out of place shows.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..BIG / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let queue = out.join(".state/uploads/queue");
    std::fs::create_dir_all(&queue).unwrap();
    let id = "0190aaaa-0000-7000-8000-000000000001";
    let entry = json!({
        "id": id, "path": file, "key": "1799/big.webm", "kind": "media",
        "bytes": BIG, "queued_at": 1_790_000_000u64,
    });
    std::fs::write(queue.join(format!("{id}.json")), entry.to_string()).unwrap();
    let storage = garage.storage_toml(&dir, "");
    let config = recorder_config(&out, "", &format!("{}{storage}", rooms_toml(&[1799])));
    let daemon = Daemon::start(&ns, &dir, &config);
    Leftover {
        daemon,
        garage,
        ns,
        _scratch: scratch,
        journal: out.join(format!(".state/uploads/multipart/{id}.json")),
        dir,
        config,
        file,
    }
}

/// Waits until the multipart journal lists at least `parts` parts; returns it.
fn journal_with(l: &Leftover, parts: usize) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(j) = std::fs::read(&l.journal)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .filter(|j| j["parts"].as_array().is_some_and(|p| p.len() >= parts))
        {
            return j;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no journal with {parts} parts; log:\n{}",
            l.daemon.proc.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The upload's end: one object, byte-identical, uploaded with `upload_id`, resumed with at
/// least `kept` parts kept.
fn assert_resumed(l: &mut Leftover, upload_id: &str, kept: usize) {
    let line = l.daemon.proc.wait_for(UPLOADED, Duration::from_secs(120));
    assert!(line.contains(upload_id), "{line}");
    let resumed = l
        .daemon
        .proc
        .wait_for("resuming a multipart upload", Duration::from_secs(1));
    assert!(resumed.contains(upload_id), "{resumed}");
    let parts_kept: usize = resumed
        .split("parts_kept=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{resumed}"));
    assert!(parts_kept >= kept, "{resumed}");
    assert_eq!(l.garage.keys(), ["1799/big.webm"]);
    let (remote, _) = l.garage.get("1799/big.webm");
    assert!(
        remote == std::fs::read(&l.file).unwrap(),
        "the object differs"
    );
    assert!(!l.journal.exists(), "the journal stays after completion");
}

#[test]
fn a_multipart_upload_resumes_with_the_same_upload_id_after_the_server_was_killed() {
    require_tools();
    let mut l = leftover_queue("storagek");
    let journal = journal_with(&l, 2);
    l.garage.kill();
    l.daemon
        .proc
        .wait_for("upload failed; retrying", Duration::from_secs(60));
    l.garage.restart(&l.ns);
    let upload_id = journal["upload_id"].as_str().unwrap().to_owned();
    assert_resumed(&mut l, &upload_id, 2);
}

/// SIGKILLs the daemon once two parts are uploaded and runs `then` with the upload id (the
/// daemon's log is kept beside); returns the upload id.
fn killed_mid_upload(l: &mut Leftover, then: impl FnOnce(&str)) -> String {
    let journal = journal_with(l, 2);
    unsafe { libc::kill(l.daemon.proc.child.id() as i32, libc::SIGKILL) };
    let _ = l.daemon.proc.child.wait();
    let upload_id = journal["upload_id"].as_str().unwrap().to_owned();
    then(&upload_id);
    let log = l.dir.join("janus-recorder.log");
    std::fs::rename(&log, l.dir.join("janus-recorder-killed.log")).unwrap();
    upload_id
}

#[test]
fn a_daemon_killed_mid_upload_resumes_it_after_a_restart() {
    require_tools();
    let mut l = leftover_queue("storagek9");
    let upload_id = killed_mid_upload(&mut l, |_| {});
    l.daemon = Daemon::start(&l.ns, &l.dir, &l.config);
    assert_resumed(&mut l, &upload_id, 2);
}

#[test]
fn a_checksum_mismatch_keeps_the_local_file_and_says_so() {
    let altered = |g: &mut Garage, d: &Path| {
        g.alter_before_first_head();
        g.storage_toml(d, "keep_local = \"until-uploaded\"\n")
    };
    let mut r = rig("storagex", 1705, "", altered);
    let dir = r.dir.clone();
    let (ns, daemon) = (&r.ns, &mut r.daemon);
    publish_held(ns, &dir, 1705, "sum", 1, 3.0, &[]);
    let line = daemon
        .proc
        .wait_for("will not succeed by waiting", Duration::from_secs(30));
    assert!(
        line.contains("checksum") && line.contains("the local file is kept"),
        "{line}"
    );
    let media = path_in(&line);
    assert!(media.exists(), "{} went after a mismatch", media.display());
    // The next try is not altered: verified, and only then the local file goes.
    daemon
        .proc
        .wait_for_nth(UPLOADED, 2, Duration::from_secs(30));
    let log = daemon.proc.log_text();
    let name = media.file_name().unwrap().to_string_lossy().into_owned();
    let failed_at = log.find("will not succeed by waiting").unwrap();
    let uploaded_at = log
        .lines()
        .find(|l| l.contains(UPLOADED) && l.contains(&name))
        .and_then(|l| log.find(l))
        .unwrap_or_else(|| panic!("{name} not uploaded:\n{log}"));
    assert!(failed_at < uploaded_at);
    assert!(!media.exists());
    let key = r.garage.keys().into_iter().find(|k| k.ends_with(&name));
    let (bytes, sha) = r.garage.get(&key.unwrap());
    assert_eq!(sha.as_deref(), Some(sha256_hex(&bytes).as_str()));
}

#[test]
fn an_upload_id_gone_from_the_server_starts_the_upload_over() {
    require_tools();
    let mut l = leftover_queue("storagea");
    let bucket = l.garage.bucket();
    // Aborted, as a lifecycle rule for abandoned uploads would.
    let stale = killed_mid_upload(&mut l, |id| bucket.abort("1799/big.webm", id));
    l.daemon = Daemon::start(&l.ns, &l.dir, &l.config);
    l.daemon.proc.wait_for(
        "is gone from the storage; starting over",
        Duration::from_secs(60),
    );
    let line = l.daemon.proc.wait_for(UPLOADED, Duration::from_secs(120));
    assert!(!line.contains(&stale), "{line}");
    assert_eq!(l.garage.keys(), ["1799/big.webm"]);
    let (remote, _) = l.garage.get("1799/big.webm");
    assert!(
        remote == std::fs::read(&l.file).unwrap(),
        "the object differs"
    );
}
