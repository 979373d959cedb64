//! The sending half: synthetic publishers (`janus-recorder publish`) recorded frame for frame,
//! and the relay of a recorded room into another room of the same Janus and into a second
//! Janus, checked on what Janus's own recorder and our daemon record in the target rooms.

mod support;

use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use janus_recorder::check::{CheckOptions, Status, check_file};
use serde_json::Value;
use support::*;

/// These tests each run Janus and publishers; one at a time keeps timings honest on 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn recorder_config(out: &Path, rooms: &str) -> String {
    format!(
        "[janus]\nurl = \"ws://127.0.0.1:8188\"\n[output]\ndir = \"{}\"\n[network]\nadvertise = [\"{ADDR_B}\"]\n{rooms}",
        out.display()
    )
}

/// Every frame a synthetic publisher sent (held until the daemon's subscription asked for a
/// keyframe) is in the daemon's file: nothing lost, nothing invented.
#[test]
fn synthetic_publishers_are_recorded_frame_for_frame() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_tools();
    let scratch = Scratch::new("synthetic");
    let dir = scratch.path.clone();
    let ns = Netns::create("synthetic");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1301, "vp8")]);
    let out = dir.join("recordings");
    let mut daemon = Daemon::start(
        &ns,
        &dir,
        &recorder_config(&out, "[[rooms]]\nroom = 1301\n"),
    );
    daemon
        .proc
        .wait_for("watching room", Duration::from_secs(20));

    let report = dir.join("sent.json");
    let mut publish = synthetic_publishers(
        &ns,
        &dir,
        1301,
        "synth",
        3,
        6.0,
        &["--hold", "--report", report.to_str().unwrap()],
    );
    let status = wait_exit(&mut publish, Duration::from_secs(40));
    assert!(
        status.success(),
        "publish: {status}\n{}",
        publish.log_tail(30)
    );
    daemon
        .proc
        .wait_for_nth("recording finished", 3, Duration::from_secs(10));

    let sent: Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    let feeds = sent["feeds"].as_array().unwrap();
    assert_eq!(feeds.len(), 3, "{sent:#}");
    for feed in feeds {
        let display = feed["display"].as_str().unwrap();
        let recs = recordings_of(&out, display);
        assert_eq!(recs.len(), 1, "{display}: {recs:?}");
        let (file, sidecar) = &recs[0];
        // 6 s of 50 audio and 20 video frames per second.
        assert!(feed["audio_frames"].as_u64().unwrap() >= 290, "{feed}");
        assert!(feed["video_frames"].as_u64().unwrap() >= 115, "{feed}");
        assert_eq!(
            sidecar["audio_frames"], feed["audio_frames"],
            "{display}: {sidecar:#}"
        );
        assert_eq!(
            sidecar["video_frames"], feed["video_frames"],
            "{display}: {sidecar:#}"
        );
        assert_eq!(sidecar["end_reason"], "leaving", "{sidecar:#}");
        let first_key = sidecar["first_keyframe_ms"].as_u64().unwrap();
        assert!(
            first_key < 1000,
            "{display}: first keyframe after {first_key} ms"
        );
        let report = check_file(file, &CheckOptions::default());
        assert_eq!(report.status, Status::Ok, "{report:#?}");
        assert_eq!(decode_errors(file), "", "{}", file.display());
    }
}
