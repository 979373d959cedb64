//! `[output] split_after`: a long publication in bounded files. Each part starts on a video
//! keyframe, no frame is lost between parts, and the sidecars link the parts in order.

mod support;

use std::time::Duration;

use janus_recorder::check::{CheckOptions, Status, check_file};
use support::*;

#[test]
fn split_after_continues_in_linked_parts_without_losing_a_frame() {
    require_tools();
    let scratch = Scratch::new("split");
    let dir = scratch.path.clone();
    let ns = Netns::create("split");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1601, "vp8")]);
    let out = dir.join("recordings");
    let config = recorder_config(&out, "split_after = \"5s\"\n", &rooms_toml(&[1601]));
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    // The default clip has a keyframe every 2 s: parts of about 6, 6 and 1 s.
    let sent = publish_held(&ns, &dir, 1601, "long", 1, 13.0, &[]);
    daemon
        .proc
        .wait_for_nth("recording finished", 3, Duration::from_secs(10));

    let parts = recordings_of(&out, "long");
    assert_eq!(parts.len(), 3, "{parts:#?}");
    let sent = &sent["feeds"][0];
    let total = |key: &str| -> u64 { parts.iter().map(|(_, s)| s[key].as_u64().unwrap()).sum() };
    assert_eq!(
        total("video_frames"),
        sent["video_frames"].as_u64().unwrap()
    );
    assert_eq!(
        total("audio_frames"),
        sent["audio_frames"].as_u64().unwrap()
    );
    let names: Vec<String> = parts
        .iter()
        .map(|(f, _)| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for (i, (file, sidecar)) in parts.iter().enumerate() {
        assert_eq!(sidecar["part"], i + 1, "{sidecar:#}");
        let previous = i.checked_sub(1).map(|p| names[p].clone());
        assert_eq!(
            sidecar["previous_part"].as_str(),
            previous.as_deref(),
            "{sidecar:#}"
        );
        assert_eq!(
            sidecar["next_part"].as_str(),
            names.get(i + 1).map(|s| s.as_str())
        );
        let reason = if i + 1 < parts.len() {
            "split"
        } else {
            "leaving"
        };
        assert_eq!(sidecar["end_reason"], reason, "{sidecar:#}");
        assert!(first_video_packet_is_key(file), "{}", file.display());
        assert_eq!(decode_errors(file).trim(), "", "{}", file.display());
        let r = check_file(file, &CheckOptions::default());
        assert_eq!(r.status, Status::Ok, "{}", r.human());
        if i + 1 < parts.len() {
            let ms = sidecar["duration_ms"].as_u64().unwrap();
            assert!(
                (5_000..=7_500).contains(&ms),
                "part {} lasts {ms} ms",
                i + 1
            );
        }
    }
}
