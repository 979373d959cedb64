//! Every video codec Janus forwards, recorded from real publishers against a real Janus:
//! Chromium publishing H.264 and AV1 (each in a room of its codec, and H.264 and VP8 side by
//! side in a `vp8,h264` room), compared with Janus's own recording of the same feed; and
//! synthetic publishers sending H.264, H.265 and AV1 clips made by ffmpeg, recorded frame for
//! frame.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use janus_recorder::check::{CheckOptions, Status, check_file};
use serde_json::Value;
use support::*;

/// These tests each run Janus and publishers; one at a time keeps timings honest on 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The daemon's config recording `rooms`.
fn config_for(out: &Path, rooms: &[u64]) -> String {
    recorder_config(out, "", &rooms_toml(rooms))
}

/// What a recording of one publisher must be.
struct Want<'a> {
    display: &'a str,
    /// Janus's codec name, as the sidecar says it.
    codec: &'a str,
    /// ffprobe's codec name.
    probe_codec: &'a str,
    extension: &'a str,
    container: &'a str,
}

/// The one recording of `want.display`: right container and codecs, decodes without an error,
/// starts on a keyframe, and `check` passes and agrees with ffprobe. Returns it and its sidecar.
fn verify(out: &Path, want: &Want) -> (PathBuf, Value) {
    let recs = recordings_of(out, want.display);
    assert_eq!(recs.len(), 1, "{}: {recs:?}", want.display);
    let (file, sidecar) = recs.into_iter().next().unwrap();
    let name = file.display().to_string();
    assert_eq!(
        file.extension().unwrap(),
        want.extension,
        "{name}: wrong extension"
    );
    assert_eq!(sidecar["video_codec"], want.codec, "{name}: {sidecar:#}");
    assert_eq!(sidecar["audio_codec"], "opus", "{name}: {sidecar:#}");
    assert_eq!(sidecar["container"], want.container, "{name}: {sidecar:#}");
    let (streams, _) = probe(&file);
    let video = streams
        .iter()
        .find(|s| s.codec_type == "video")
        .unwrap_or_else(|| panic!("{name}: no video stream: {streams:?}"));
    assert_eq!(video.codec_name, want.probe_codec, "{name}");
    assert!(video.width.unwrap_or(0) > 0, "{name}: {video:?}");
    assert!(
        first_video_packet_is_key(&file),
        "{name}: starts without a keyframe"
    );
    let errors = decode_errors(&file);
    let first: String = errors.chars().take(1500).collect();
    assert!(
        errors.trim().is_empty(),
        "{name}: ffmpeg decode errors:\n{first}"
    );
    let report = check_file(&file, &CheckOptions::default());
    assert_eq!(report.status, Status::Ok, "{}", report.human());
    assert_eq!(agreement_with_ffprobe(&file, &report, 0.05), None);
    (file, sidecar)
}

/// The file's video frame count is within 10% of Janus's own recording of the same feed.
fn compare_with_janus(rec_dir: &Path, dir: &Path, file: &Path, sidecar: &Value, ext: &str) {
    let feed = sidecar["feed"].to_string();
    let converted = janus_pp_rec_video(
        rec_dir,
        Some(feed.trim_matches('"')),
        &dir.join(format!("janus-{feed}.{ext}")),
    );
    let (_, reference) = packet_counts(&converted);
    let (_, ours) = packet_counts(file);
    let off = (ours as f64 - reference as f64).abs() / reference as f64;
    assert!(
        off <= 0.10,
        "{}: {ours} video frames, Janus's own recording {reference}",
        file.display()
    );
}

#[test]
fn chromium_h264_and_av1_publishers_are_recorded() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_tools();
    let scratch = Scratch::new("codecs-chromium");
    let dir = scratch.path.clone();
    let ns = Netns::create("codecs");
    let rooms = [(1501, "h264"), (1502, "av1"), (1503, "vp8,h264")];
    let specs: Vec<RoomSpec> = rooms
        .iter()
        .map(|&(id, codec)| RoomSpec {
            record: true,
            ..RoomSpec::new(id, codec)
        })
        .collect();
    let janus = Janus::start(&ns, &dir, &specs);
    let page = PageServer::start(&ns, &dir);
    let out = dir.join("recordings");
    let mut daemon = Daemon::watching(&ns, &dir, &config_for(&out, &[1501, 1502, 1503]), 3);

    // 20 s: our file may start up to 1.5 s after Janus's own (see tests/recording.rs), which
    // has to stay well inside 10% of the frames.
    let publishers = [
        (1501, "h264 publisher", None),
        (1502, "av1 publisher", None),
        (1503, "vp8 in a mixed room", None),
        (1503, "h264 in a mixed room", Some("h264")),
    ];
    let specs = publishers
        .iter()
        .map(|&(room, display, vcodec)| {
            let mut spec = PublisherSpec {
                secs: Some(20),
                ..PublisherSpec::new(room, display)
            };
            if let Some(c) = vcodec {
                spec.query.push(("vcodec", c.into()));
            }
            spec
        })
        .collect();
    let _running = publish_in_turn(&ns, &page, &dir, specs);
    daemon
        .proc
        .wait_for_nth("recording finished", 4, Duration::from_secs(15));

    let h264 = |display| Want {
        display,
        codec: "h264",
        probe_codec: "h264",
        extension: "mkv",
        container: "matroska",
    };
    for (want, janus_ext) in [
        (h264("h264 publisher"), "mp4"),
        (
            Want {
                display: "av1 publisher",
                codec: "av1",
                probe_codec: "av1",
                extension: "webm",
                container: "webm",
            },
            "mp4",
        ),
        (
            Want {
                display: "vp8 in a mixed room",
                codec: "vp8",
                probe_codec: "vp8",
                extension: "webm",
                container: "webm",
            },
            "webm",
        ),
        (h264("h264 in a mixed room"), "mp4"),
    ] {
        let (file, sidecar) = verify(&out, &want);
        compare_with_janus(&janus.rec_dir, &dir, &file, &sidecar, janus_ext);
    }
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}

/// A clip of `codec` made by `scripts/make-clip.sh` (10 s, 20 fps, a keyframe every 2 s).
fn make_clip(dir: &Path, codec: &str) -> PathBuf {
    require_ffmpeg();
    let ext = if codec.starts_with("h26") {
        "mkv"
    } else {
        "webm"
    };
    let clip = dir.join(format!("clip-{codec}.{ext}"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-clip.sh");
    let status = Command::new(script)
        .arg(&clip)
        .arg(codec)
        .status()
        .expect("scripts/make-clip.sh");
    assert!(status.success(), "make-clip.sh could not make {codec}");
    clip
}

/// Synthetic publishers sending H.264, H.265 and AV1 clips (held until our subscription asks
/// for a keyframe): every frame sent is in the file, which plays.
#[test]
fn synthetic_h264_h265_and_av1_publishers_are_recorded_frame_for_frame() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_tools();
    let scratch = Scratch::new("codecs-synthetic");
    let dir = scratch.path.clone();
    let ns = Netns::create("codecs-synth");
    let cases = [
        (1511, "h264", "h264", "mkv", "matroska"),
        (1512, "h265", "hevc", "mkv", "matroska"),
        (1513, "av1", "av1", "webm", "webm"),
    ];
    let specs: Vec<RoomSpec> = cases
        .iter()
        .map(|&(id, codec, ..)| RoomSpec::new(id, codec))
        .collect();
    let _janus = Janus::start(&ns, &dir, &specs);
    let out = dir.join("recordings");
    let ids: Vec<u64> = cases.iter().map(|c| c.0).collect();
    let _daemon = Daemon::watching(&ns, &dir, &config_for(&out, &ids), cases.len());

    for (room, codec, probe_codec, extension, container) in cases {
        let clip = make_clip(&dir, codec);
        let display = format!("synthetic {codec}");
        let clip = clip.to_str().unwrap();
        let sent = publish_held(&ns, &dir, room, &display, 1, 6.0, &["--media", clip]);
        let sent = &sent["feeds"][0];
        assert!(sent["video_frames"].as_u64().unwrap() >= 110, "{sent}");
        let want = Want {
            display: &display,
            codec,
            probe_codec,
            extension,
            container,
        };
        let (_, sidecar) = wait_for_sidecar_end(&out, &want);
        verify(&out, &want);
        assert_eq!(
            sidecar["video_frames"], sent["video_frames"],
            "{codec}: {sidecar:#}"
        );
        assert_eq!(
            sidecar["audio_frames"], sent["audio_frames"],
            "{codec}: {sidecar:#}"
        );
    }
}

/// The recording of `want.display` once its sidecar says it ended.
fn wait_for_sidecar_end(out: &Path, want: &Want) -> (PathBuf, Value) {
    for _ in 0..100 {
        if let Some(rec) = recordings_of(out, want.display)
            .into_iter()
            .find(|(_, s)| !s["ended_at"].is_null())
        {
            return rec;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{}: no finished recording under {}",
        want.display,
        out.display()
    );
}

/// A simulcast publisher (three layers, the top one stopped for 5 s as a congested uplink
/// would, so Janus switches substreams down and back up) and a VP9 SVC publisher (L3T3): both
/// recorded at their top layer, decoding cleanly through the switches.
#[test]
fn simulcast_and_vp9_svc_publishers_are_recorded_at_their_top_layer() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_tools();
    let scratch = Scratch::new("codecs-layers");
    let dir = scratch.path.clone();
    let ns = Netns::create("layers");
    let specs = [
        RoomSpec {
            record: true,
            ..RoomSpec::new(1521, "vp8")
        },
        RoomSpec {
            record: true,
            ..RoomSpec::new(1522, "vp9")
        },
    ];
    let janus = Janus::start(&ns, &dir, &specs);
    let page = PageServer::start(&ns, &dir);
    let out = dir.join("recordings");
    let mut daemon = Daemon::watching(&ns, &dir, &config_for(&out, &[1521, 1522]), 2);

    let layered = |room, display: &str, query: &[(&'static str, &str)]| {
        let mut spec = PublisherSpec {
            secs: Some(16),
            ..PublisherSpec::new(room, display)
        };
        spec.query.push(("size", "1280x720".into()));
        spec.query
            .extend(query.iter().map(|&(k, v)| (k, v.to_string())));
        let mut p = Publisher::start(&ns, &page, &dir, spec);
        p.wait_published(1);
        p
    };
    let mut simulcast = layered(
        1521,
        "simulcast",
        &[("simulcast", "1"), ("pausetop", "5-10")],
    );
    let mut svc = layered(1522, "svc", &[("svc", "L3T3_KEY")]);
    simulcast
        .proc
        .wait_for("JRT-TOPLAYER true", Duration::from_secs(20));
    for p in [&mut simulcast, &mut svc] {
        p.wait_ended(1, Duration::from_secs(60));
    }
    daemon
        .proc
        .wait_for_nth("recording finished", 2, Duration::from_secs(15));

    // Simulcast: the top layer's size at the start and end, a smaller one between, and the
    // switches in the log.
    let (file, sidecar) = verify(
        &out,
        &Want {
            display: "simulcast",
            codec: "vp8",
            probe_codec: "vp8",
            extension: "webm",
            container: "webm",
        },
    );
    let report = check_file(&file, &CheckOptions::default());
    let video = report.tracks.iter().find(|t| t.kind == "video").unwrap();
    let sizes: Vec<(u32, u32)> = video
        .size_changes
        .iter()
        .map(|c| (c.width, c.height))
        .collect();
    assert!(
        sizes.len() >= 2 && sizes.last().map(|s| s.0) == video.width,
        "substream switches down and back up: {:?} then {sizes:?}",
        (video.width, video.height)
    );
    assert!(
        daemon
            .proc
            .log_text()
            .matches("Janus switched the layer")
            .count()
            >= 2,
        "the substream switches are logged"
    );
    compare_with_janus(&janus.rec_dir, &dir, &file, &sidecar, "webm");

    // SVC: every spatial layer in each block, so the file decodes at the top layer's size.
    let (file, sidecar) = verify(
        &out,
        &Want {
            display: "svc",
            codec: "vp9",
            probe_codec: "vp9",
            extension: "webm",
            container: "webm",
        },
    );
    // One picture per block, at the top layer's size (but for the first pictures, which
    // Chromium sends before it adds the upper layers).
    let sizes = decoded_sizes(&file);
    let (_, packets) = packet_counts(&file);
    assert_eq!(sizes.len() as u64, packets, "one decoded picture per block");
    let top = sizes.iter().filter(|&&s| s == (1280, 720)).count();
    assert!(
        top * 10 >= sizes.len() * 9,
        "{top} of {} pictures at 1280x720",
        sizes.len()
    );
    compare_with_janus(&janus.rec_dir, &dir, &file, &sidecar, "webm");
}

/// The size of every picture ffmpeg decodes from `file`.
fn decoded_sizes(file: &Path) -> Vec<(u32, u32)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["frame=width,height", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (w, h) = l.trim().split_once(',')?;
            Some((w.parse().ok()?, h.trim_end_matches(',').parse().ok()?))
        })
        .collect()
}
