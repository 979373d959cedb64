//! End-to-end recording against the real thing: Janus 1.1.2 and headless Chromium publishers in
//! a network namespace, the daemon recording several rooms, and the files checked with ffprobe,
//! ffmpeg, janus-pp-rec's output and our own check tool.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use janus_recorder::check::{CheckOptions, Status, check_file};
use serde_json::{Value, json};
use support::*;

/// What one recording should look like.
#[derive(Debug)]
struct Expected {
    room: u64,
    display: String,
    start: SystemTime,
    end: SystemTime,
    audio: bool,
    video: Option<&'static str>,
    end_reason: &'static str,
}

impl Expected {
    fn seconds(&self) -> f64 {
        self.end
            .duration_since(self.start)
            .expect("end after start")
            .as_secs_f64()
    }
}

/// A hostile display name: path traversal, separators, control characters, markup, and length.
const HOSTILE: &str = "../../../tmp/evil\u{1b}[31m\n/..\\name <script>&\u{7f}";

#[test]
fn records_every_publisher_of_every_room() {
    require_tools();
    let scratch = Scratch::new("rooms");
    let dir = &scratch.path;
    let ns = Netns::create("rooms");
    let janus = Janus::start(
        &ns,
        dir,
        &[
            RoomSpec::new(1234, "vp8"),
            RoomSpec {
                pin: Some("sesame"),
                ..RoomSpec::new(1235, "vp9")
            },
            RoomSpec {
                record: true,
                ..RoomSpec::new(1236, "vp8")
            },
            RoomSpec {
                pin: Some("right"),
                ..RoomSpec::new(1237, "vp8")
            },
            RoomSpec::new(1238, "vp8"),
        ],
    );
    let page = PageServer::start(&ns, dir);

    // Already publishing when the daemon starts: VP8 in 1234, VP9 behind a pin in 1235.
    let mut alice = Publisher::start(&ns, &page, dir, PublisherSpec::new(1234, "Alice"));
    let mut bob = Publisher::start(
        &ns,
        &page,
        dir,
        PublisherSpec {
            pin: Some("sesame".into()),
            ..PublisherSpec::new(1235, "Bob")
        },
    );
    let alice_start = alice.wait_published(1);
    let bob_start = bob.wait_published(1);

    let out = dir.join("recordings");
    let config = format!(
        r#"
[janus]
url = "ws://127.0.0.1:8188"

[output]
dir = "{}"

[network]
advertise = ["{ADDR_B}"]

[[rooms]]
room = 1234

[[rooms]]
room = 1235
pin = "sesame"

[[rooms]]
room = 1236

[[rooms]]
room = 1237
pin = "wrong"

[[rooms]]
room = 1238

[[rooms]]
room = 9999
"#,
        out.display()
    );
    let daemon_start = SystemTime::now();
    let mut daemon = Daemon::start(&ns, dir, &config);
    daemon
        .proc
        .wait_for_nth("recording started", 2, Duration::from_secs(20));

    // Joining after the daemon started: audio-only and video-only (twice) in 1234, and a
    // hostile display name in 1236 (recorded by Janus too) that leaves instead of unpublishing;
    // then one kicked by the room's administrator and one alone in a room that gets destroyed.
    // One Chromium starts after the other has published: five starting at once kept both
    // cores at 100% for seconds, and every subscription's start with them.
    let mut carol = Publisher::start(
        &ns,
        &page,
        dir,
        PublisherSpec {
            video: false,
            ..PublisherSpec::new(1234, "Carol")
        },
    );
    let carol_start = carol.wait_published(1);
    let mut erin = Publisher::start(
        &ns,
        &page,
        dir,
        PublisherSpec {
            audio: false,
            secs: Some(4),
            cycles: 2,
            ..PublisherSpec::new(1234, "Erin")
        },
    );
    let erin_start_1 = erin.wait_published(1);
    let mut mallory = Publisher::start(
        &ns,
        &page,
        dir,
        PublisherSpec {
            end: "leave",
            ..PublisherSpec::new(1236, HOSTILE)
        },
    );
    let mallory_start = mallory.wait_published(1);
    let mut kim = Publisher::start(&ns, &page, dir, PublisherSpec::new(1234, "Kim"));
    let kim_start = kim.wait_published(1);
    let mut dora = Publisher::start(&ns, &page, dir, PublisherSpec::new(1238, "Dora"));
    let dora_start = dora.wait_published(1);

    std::thread::sleep(Duration::from_secs(7));
    alice.stop();
    bob.stop();
    mallory.stop();
    let kim_id = kim.feed_id();
    let kick = videoroom_request(&ns, json!({"request": "kick", "room": 1234, "id": kim_id}));
    assert_eq!(kick["videoroom"], "success", "kick: {kick}");
    let kim_end = SystemTime::now();
    let destroy = videoroom_request(&ns, json!({"request": "destroy", "room": 1238}));
    assert_eq!(destroy["videoroom"], "destroyed", "destroy: {destroy}");
    let dora_end = SystemTime::now();
    let long = Duration::from_secs(20);
    let alice_end = alice.wait_ended(1, long);
    let bob_end = bob.wait_ended(1, long);
    let mallory_end = mallory.wait_ended(1, long);
    let erin_end_1 = erin.wait_ended(1, long);
    let erin_start_2 = erin.wait_published(2);
    let erin_end_2 = erin.wait_ended(2, long);
    // Let the daemon see the last events before it is told to stop.
    std::thread::sleep(Duration::from_millis(1500));

    // Carol is still publishing: SIGTERM must finalize her file and exit 0 within 5 s.
    let carol_end = SystemTime::now();
    let (status, took) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "daemon exited with {status}; log:\n{}",
        daemon.proc.log_tail(40)
    );
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");

    // Rooms that cannot be recorded are named in the log, and did not stop the others.
    let log = daemon.proc.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("room=9999") && l.contains("room not recorded")),
        "no clear error for the nonexistent room 9999:\n{}",
        daemon.proc.log_tail(80)
    );
    assert!(
        log.lines().any(|l| l.contains("room=1237")
            && l.contains("room not recorded")
            && l.to_lowercase().contains("pin")),
        "no clear error for the wrong pin of room 1237:\n{}",
        daemon.proc.log_tail(80)
    );

    let later = |a: SystemTime, b: SystemTime| a.max(b);
    let expected = vec![
        Expected {
            room: 1234,
            display: "Alice".into(),
            start: later(alice_start, daemon_start),
            end: alice_end,
            audio: true,
            video: Some("vp8"),
            end_reason: "unpublished",
        },
        Expected {
            room: 1235,
            display: "Bob".into(),
            start: later(bob_start, daemon_start),
            end: bob_end,
            audio: true,
            video: Some("vp9"),
            end_reason: "unpublished",
        },
        Expected {
            room: 1234,
            display: "Carol".into(),
            start: carol_start,
            end: carol_end,
            audio: true,
            video: None,
            end_reason: "shutdown",
        },
        Expected {
            room: 1234,
            display: "Erin".into(),
            start: erin_start_1,
            end: erin_end_1,
            audio: false,
            video: Some("vp8"),
            end_reason: "unpublished",
        },
        Expected {
            room: 1234,
            display: "Erin".into(),
            start: erin_start_2,
            end: erin_end_2,
            audio: false,
            video: Some("vp8"),
            end_reason: "unpublished",
        },
        Expected {
            room: 1236,
            display: HOSTILE.into(),
            start: mallory_start,
            end: mallory_end,
            audio: true,
            video: Some("vp8"),
            end_reason: "leaving",
        },
        Expected {
            room: 1234,
            display: "Kim".into(),
            start: kim_start,
            end: kim_end,
            audio: true,
            video: Some("vp8"),
            end_reason: "kicked",
        },
        Expected {
            room: 1238,
            display: "Dora".into(),
            start: dora_start,
            end: dora_end,
            audio: true,
            video: Some("vp8"),
            end_reason: "destroyed",
        },
    ];

    let recordings = recordings_by_sidecar(&out);
    assert_eq!(
        recordings.len(),
        expected.len(),
        "one file per publication expected; found {:#?}",
        recordings.keys().collect::<Vec<_>>()
    );
    let mut failures = Vec::new();
    let mut unmatched: Vec<_> = recordings.into_iter().collect();
    for want in &expected {
        let Some(i) = unmatched
            .iter()
            .position(|(_, sc)| sidecar_matches(sc, want))
        else {
            failures.push(format!("no recording for {want:?}"));
            continue;
        };
        let (webm, sidecar) = unmatched.remove(i);
        failures.extend(check_recording(&out, &webm, &sidecar, want));
    }
    assert!(
        failures.is_empty(),
        "{}\n\ndaemon log tail:\n{}",
        failures.join("\n"),
        daemon.proc.log_tail(40)
    );

    // Nothing escaped the output directory: the only files are the recordings, sidecars and
    // audio levels (`crate::levels`).
    for f in files_under(&out) {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
        assert!(
            ext == "webm" || ext == "json" || ext == "levels",
            "unexpected file {}",
            f.display()
        );
    }
    assert!(!Path::new("/tmp/evil").exists(), "the hostile name escaped");

    // A damaged copy of a recording (cut in half, as by a full disk) is diagnosed, not refused.
    let (alice, _) = recordings_by_sidecar(&out.join("1234"))
        .into_iter()
        .find(|(_, sc)| sc["display"] == "Alice")
        .expect("Alice's recording");
    let bytes = fs::read(&alice).unwrap();
    let cut = dir.join("alice-cut.webm");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let report = check_file(&cut, &CheckOptions::default());
    assert!(
        report.playable && report.status == Status::Problems && !report.finalized,
        "{}",
        report.human()
    );

    // Janus's own recording of the hostile publisher, converted by janus-pp-rec, agrees.
    compare_with_janus_recording(&janus.rec_dir, dir, &expected[5], &out);
}

/// The recordings under `out`, keyed by the `.webm` path, with their parsed sidecars.
fn recordings_by_sidecar(out: &Path) -> BTreeMap<PathBuf, Value> {
    let mut found = BTreeMap::new();
    for f in files_under(out) {
        if f.extension().is_some_and(|e| e == "webm") {
            let sidecar_path = f.with_extension("json");
            let text = fs::read_to_string(&sidecar_path)
                .unwrap_or_else(|e| panic!("sidecar {}: {e}", sidecar_path.display()));
            let sidecar: Value = serde_json::from_str(&text).expect("sidecar is JSON");
            found.insert(f, sidecar);
        }
    }
    found
}

fn sidecar_matches(sidecar: &Value, want: &Expected) -> bool {
    let started: Option<SystemTime> = sidecar["started_at"]
        .as_str()
        .and_then(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(SystemTime::from);
    sidecar["display"].as_str() == Some(want.display.as_str())
        && sidecar["room"].as_u64() == Some(want.room)
        // Two files of one publisher are told apart by their start.
        && started.is_some_and(|s| {
            let d = s
                .duration_since(want.start)
                .unwrap_or_else(|e| e.duration());
            d < Duration::from_secs(2)
        })
}

/// Checks one recording against what was published; returns the failures.
fn check_recording(out: &Path, webm: &Path, sidecar: &Value, want: &Expected) -> Vec<String> {
    let mut failures = Vec::new();
    let name = webm.display().to_string();
    let mut fail = |msg: String| failures.push(format!("{name}: {msg}"));

    // Where it is and what it is called.
    let room_dir = out.join(want.room.to_string());
    if webm.parent() != Some(room_dir.as_path()) {
        fail(format!("not in {}", room_dir.display()));
    }
    let file_name = webm.file_name().unwrap().to_string_lossy().into_owned();
    if file_name.chars().any(|c| c.is_control() || c == '\\') || file_name.contains("..") {
        fail(format!("unsafe file name {file_name:?}"));
    }

    // The sidecar.
    if sidecar["end_reason"].as_str() != Some(want.end_reason) {
        fail(format!(
            "end_reason {} (want {})",
            sidecar["end_reason"], want.end_reason
        ));
    }
    for key in ["started_at", "ended_at", "feed"] {
        if sidecar[key].is_null() {
            fail(format!("sidecar lacks {key}"));
        }
    }
    if sidecar["audio_codec"].as_str() != want.audio.then_some("opus")
        || sidecar["video_codec"].as_str() != want.video
    {
        fail(format!(
            "sidecar codecs {} / {}",
            sidecar["audio_codec"], sidecar["video_codec"]
        ));
    }

    // ffprobe: codecs and duration.
    let (streams, duration) = probe(webm);
    let codec_of = |kind: &str| {
        streams
            .iter()
            .find(|s| s.codec_type == kind)
            .map(|s| s.codec_name.clone())
    };
    if codec_of("audio").as_deref() != want.audio.then_some("opus") {
        fail(format!("audio stream {:?}", codec_of("audio")));
    }
    if codec_of("video").as_deref() != want.video {
        fail(format!(
            "video stream {:?}, want {:?}",
            codec_of("video"),
            want.video
        ));
    }
    if want.video.is_some() {
        let v = streams.iter().find(|s| s.codec_type == "video");
        if v.and_then(|v| v.width).unwrap_or(0) == 0 {
            fail(format!("video without a width: {v:?}"));
        }
        if !first_video_packet_is_key(webm) {
            fail("the first video frame is not a keyframe".into());
        }
    }
    let published = want.seconds();
    if published - duration > START_BUDGET || duration - published > 1.0 {
        fail(format!(
            "duration {duration:.2} s, published for {published:.2} s"
        ));
    }

    // ffmpeg decodes every frame without an error.
    let errors = decode_errors(webm);
    if !errors.trim().is_empty() {
        fail(format!("ffmpeg decode errors:\n{errors}"));
    }

    // Our own check tool finds nothing wrong, and agrees with ffprobe.
    let report = check_file(webm, &CheckOptions::default());
    if report.status != Status::Ok {
        fail(format!("the check tool says:\n{}", report.human()));
    }
    if let Some(problem) = agreement_with_ffprobe(webm, &report, 0.05) {
        fail(problem);
    }
    failures
}

/// How much shorter than the publication (or Janus's own recording of it) a file may be. It
/// starts at the first keyframe after Janus announced the publisher and we attached, joined,
/// answered, connected ICE and DTLS and sent a PLI: 0.2-0.5 s on an idle machine, but up to
/// 1.2 s measured here, where seven Chromium publishers keep both cores at 100% and Janus's
/// own replies take most of it. The daemon's own share is held to account where the machine
/// is not saturated: the relay tests (late subscriber within 1 s) and the benchmark.
const START_BUDGET: f64 = 1.5;

/// Converts Janus's own `.mjr` recordings of `want` with janus-pp-rec and compares durations.
fn compare_with_janus_recording(rec_dir: &Path, dir: &Path, want: &Expected, out: &Path) {
    let converted = janus_pp_rec_video(rec_dir, None, &dir.join("janus-pp-rec.webm"));
    let (_, reference) = probe(&converted);
    // The check tool reads a file Janus's own tools wrote, and agrees with ffprobe on it.
    let report = check_file(&converted, &CheckOptions::default());
    assert!(report.playable, "{}", report.human());
    assert_eq!(agreement_with_ffprobe(&converted, &report, 0.05), None);
    let ours = recordings_by_sidecar(&out.join("1236"));
    assert_eq!(ours.len(), 1);
    let (_, ours) = probe(ours.keys().next().unwrap());
    assert!(
        reference - ours <= START_BUDGET && ours - reference <= 1.0,
        "janus-pp-rec's file lasts {reference:.2} s, ours {ours:.2} s (published {:.2} s)",
        want.seconds()
    );
}
