//! Never lose a feed: a subscription that fails while its publisher stays is made again, its
//! recording going on as the next part; a publisher refused at `max_feeds` is recorded once a
//! slot frees.

mod support;

use std::time::Duration;

use serde_json::json;
use support::janus_admin::{admin, subscriber_handles};
use support::*;

#[test]
fn a_subscription_hung_up_while_the_publisher_stays_goes_on_as_part_2() {
    require_tools();
    let scratch = Scratch::new("resubscribe");
    let dir = scratch.path.clone();
    let ns = Netns::create("resubscribe");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1801, "vp8")]);
    let out = dir.join("recordings");
    // Janus's candidates only from the namespace's network: its host candidates are there.
    let config = recorder_config(&out, "", &rooms_toml(&[1801])).replace(
        "[network]\n",
        "[network]\ncandidate_networks = [\"10.201.0.0/24\"]\n",
    );
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    let mut publisher = synthetic_publishers(&ns, &dir, 1801, "stays", 1, 30.0, &[]);
    daemon
        .proc
        .wait_for("recording started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    let handles = subscriber_handles(&ns);
    assert_eq!(handles.len(), 1, "{handles:?}");
    let (s, h) = handles[0];
    let hung = admin(
        &ns,
        json!({"janus": "hangup_webrtc", "session_id": s, "handle_id": h}),
    );
    assert_eq!(hung["janus"], "success", "{hung:#}");
    daemon
        .proc
        .wait_for("subscribing again", Duration::from_secs(10));
    daemon
        .proc
        .wait_for_nth("recording started", 2, Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(3));
    publisher.terminate(Duration::from_secs(5));
    daemon
        .proc
        .wait_for_nth("recording finished", 2, Duration::from_secs(15));
    let parts = recordings_of(&out, "stays");
    assert_eq!(parts.len(), 2, "{parts:#?}");
    let (first, second) = (&parts[0].1, &parts[1].1);
    // Janus sends its `hangup` event and closes DTLS at once: whichever reaches the daemon
    // first names the end (both are a hang-up that may heal); part 2 names the same cause as `resumed_after`.
    let hung_up = |why: &serde_json::Value| {
        let why = why.as_str().unwrap_or_default();
        why.starts_with("hangup") || why == "error: peer closed the DTLS connection"
    };
    assert!(hung_up(&first["end_reason"]), "{first:#}");
    assert_eq!(second["part"], 2, "{second:#}");
    assert_eq!(second["previous_part"], first["file"], "{second:#}");
    assert_eq!(second["resumed_after"], first["end_reason"], "{second:#}");
    for (file, sidecar) in &parts {
        assert!(first_video_packet_is_key(file), "{}", file.display());
        assert_eq!(decode_errors(file).trim(), "", "{}", file.display());
        assert!(sidecar["video_frames"].as_u64() > Some(30), "{sidecar:#}");
    }
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
}

#[test]
fn a_publisher_refused_at_max_feeds_is_recorded_once_a_slot_frees() {
    require_tools();
    let scratch = Scratch::new("waiting");
    let dir = scratch.path.clone();
    let ns = Netns::create("waiting");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1802, "vp8")]);
    let out = dir.join("recordings");
    let config = recorder_config(
        &out,
        "",
        &format!("{}[limits]\nmax_feeds = 2\n", rooms_toml(&[1802])),
    );
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    let mut early = synthetic_publishers(&ns, &dir, 1802, "early", 2, 5.0, &[]);
    daemon
        .proc
        .wait_for_nth("recording started", 2, Duration::from_secs(20));
    let mut late = synthetic_publishers(&ns, &dir, 1802, "late", 1, 15.0, &[]);
    daemon
        .proc
        .wait_for("recorded once a slot frees", Duration::from_secs(20));
    let _ = wait_exit(&mut early, Duration::from_secs(30));
    daemon
        .proc
        .wait_for_nth("recording started", 3, Duration::from_secs(20));
    let _ = wait_exit(&mut late, Duration::from_secs(40));
    daemon
        .proc
        .wait_for_nth("recording finished", 3, Duration::from_secs(15));
    let late = recordings_of(&out, "late");
    assert_eq!(late.len(), 1, "{late:#?}");
    let (file, sidecar) = &late[0];
    assert_eq!(sidecar["end_reason"], "leaving", "{sidecar:#}");
    assert!(sidecar["duration_ms"].as_u64() > Some(5000), "{sidecar:#}");
    assert!(first_video_packet_is_key(file));
    assert_eq!(decode_errors(file).trim(), "");
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
}
