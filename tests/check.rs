//! The check tool on files no one here wrote (ffmpeg with libvpx and libopus) and on damaged
//! copies of them, compared with ffprobe; and its command line. (Janus's own recordings via
//! janus-pp-rec and the daemon's files are checked in `tests/recording.rs`.)

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use janus_recorder::check::{CheckOptions, FileReport, ProblemKind, Status, check_file};
use support::{Scratch, agreement_with_ffprobe, require_ffmpeg};

/// Makes a 5 s clip with ffmpeg: `video` is "vp8", "vp9", "h264-PROFILE", "h265", "av1" or
/// none (a keyframe every 30 frames); `extra` goes before the output name.
fn clip(
    dir: &Path,
    name: &str,
    video: Option<&str>,
    audio_src: Option<&str>,
    extra: &[&str],
) -> PathBuf {
    require_ffmpeg();
    let out = dir.join(name);
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-y"]);
    if video.is_some() {
        cmd.args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"]);
    }
    if let Some(src) = audio_src {
        cmd.args(["-f", "lavfi", "-i", src]);
    }
    cmd.args(["-t", "5"]);
    match video {
        Some("vp9") => cmd.args([
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "30",
        ]),
        Some(h264) if h264.starts_with("h264-") => cmd.args([
            "-c:v",
            "libx264",
            "-profile:v",
            &h264[5..],
            "-pix_fmt",
            "yuv420p",
            "-x264-params",
            "keyint=30:min-keyint=30:scenecut=0",
        ]),
        Some("h265") => cmd.args([
            "-c:v",
            "libx265",
            "-pix_fmt",
            "yuv420p",
            "-x265-params",
            "keyint=30:min-keyint=30:scenecut=0:log-level=error",
        ]),
        Some("av1") => cmd.args([
            "-c:v",
            "libaom-av1",
            "-usage",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "30",
            "-keyint_min",
            "30",
        ]),
        Some(_) => cmd.args(["-c:v", "libvpx", "-g", "30"]),
        None => cmd.arg("-vn"),
    };
    if audio_src.is_some() {
        cmd.args(["-c:a", "libopus", "-ac", "2"]);
    }
    let status = cmd.args(extra).arg(&out).status().expect("ffmpeg");
    assert!(status.success(), "ffmpeg could not make {name}");
    out
}

const SINE: &str = "sine=frequency=440:sample_rate=48000";

fn check(path: &Path) -> FileReport {
    check_file(path, &CheckOptions::default())
}

#[test]
fn files_from_ffmpeg_are_ok_and_agree_with_ffprobe() {
    let scratch = Scratch::new("check-good");
    let dir = &scratch.path;
    for (name, video, audio) in [
        ("vp8.webm", Some("vp8"), Some(SINE)),
        ("vp9.webm", Some("vp9"), Some(SINE)),
        ("audio.webm", None, Some(SINE)),
        ("video.mkv", Some("vp8"), None),
    ] {
        let path = clip(dir, name, video, audio, &[]);
        let r = check(&path);
        assert_eq!(r.status, Status::Ok, "{name}: {}", r.human());
        assert!(r.problems.is_empty() && r.playable && r.finalized);
        let one_frame = if video.is_some() { 1.0 / 30.0 } else { 0.02 };
        assert_eq!(agreement_with_ffprobe(&path, &r, one_frame), None);
        for t in &r.tracks {
            match t.kind.as_str() {
                "audio" => {
                    assert_eq!(t.codec, "A_OPUS");
                    assert_eq!(t.decode_errors, 0);
                    let decoded = t.decoded_ms.unwrap();
                    assert!(
                        (decoded as i64 - 5000).abs() <= 30,
                        "{name}: decoded {decoded}"
                    );
                    assert!(
                        t.silent_share.unwrap() < 0.05,
                        "{name}: a sine is not silent"
                    );
                }
                "video" => {
                    assert_eq!(
                        t.codec,
                        if video == Some("vp9") {
                            "V_VP9"
                        } else {
                            "V_VP8"
                        }
                    );
                    assert_eq!((t.width, t.height), (Some(320), Some(240)));
                    assert_eq!(t.keyframes, 5, "{name}: a keyframe every 30 frames");
                    assert!((t.fps.unwrap() - 30.0).abs() < 0.5);
                }
                other => panic!("{name}: unexpected track kind {other}"),
            }
        }
    }
}

#[test]
fn silence_and_gaps_are_reported() {
    let scratch = Scratch::new("check-gaps");
    let dir = &scratch.path;
    // First half silent, second half a tone.
    let quiet = clip(
        dir,
        "half-silent.webm",
        None,
        Some("aevalsrc=if(lt(t\\,2.5)\\,0\\,0.5*sin(2*PI*440*t)):s=48000:d=5"),
        &[],
    );
    let r = check(&quiet);
    let share = r.tracks[0].silent_share.unwrap();
    assert!((share - 0.5).abs() < 0.06, "silent share {share}");
    assert_eq!(r.status, Status::Ok, "silence alone is not a problem");

    // Video that jumps 3 s ahead at 2 s.
    let gappy = clip(
        dir,
        "gap.webm",
        Some("vp8"),
        None,
        &[
            "-vf",
            "setpts=PTS+gte(T\\,2)*3/TB",
            "-fps_mode",
            "passthrough",
            "-t",
            "9",
        ],
    );
    let r = check(&gappy);
    let gaps: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Gap)
        .collect();
    assert_eq!(gaps.len(), 1, "{}", r.human());
    let at = gaps[0].at_ms.unwrap();
    assert!((1900..=2050).contains(&at), "gap at {at} ms");
    let length = gaps[0].length_ms.unwrap();
    assert!((2900..=3100).contains(&length), "gap of {length} ms");
    assert_eq!(r.status, Status::Problems);
    assert_eq!(r.exit_status(), 1);
    // A larger threshold hides it.
    let relaxed = check_file(
        &gappy,
        &CheckOptions {
            gap: std::time::Duration::from_secs(5),
            ..CheckOptions::default()
        },
    );
    assert!(relaxed.problems.iter().all(|p| p.kind != ProblemKind::Gap));
}

/// A reproducible stream of bytes that look random.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn damaged_files_are_diagnosed_without_a_panic() {
    let scratch = Scratch::new("check-damaged");
    let dir = &scratch.path;
    let good = clip(dir, "good.webm", Some("vp8"), Some(SINE), &[]);
    let bytes = fs::read(&good).unwrap();

    // Cut off at 10%, 50% and 90%: playable up to roughly the cut.
    let mut playable = Vec::new();
    for percent in [10, 50, 90] {
        let path = dir.join(format!("cut-{percent}.webm"));
        fs::write(&path, &bytes[..bytes.len() * percent / 100]).unwrap();
        let r = check(&path);
        assert!(r.playable, "cut at {percent}%: {}", r.human());
        assert_eq!(r.status, Status::Problems);
        assert!(
            r.problems.iter().any(|p| p.kind == ProblemKind::Truncated),
            "{}",
            r.human()
        );
        let ms = r.playable_ms.unwrap() as f64;
        let expected = 5000.0 * percent as f64 / 100.0;
        assert!(
            (ms - expected).abs() < 1000.0,
            "cut at {percent}%: {ms} ms playable"
        );
        playable.push(ms);
    }
    assert!(playable.windows(2).all(|w| w[0] < w[1]));

    // 2 KiB of noise over the middle: reported, not a panic.
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid..mid + 2048].copy_from_slice(&noise(2048, 7));
    let path = dir.join("overwritten.webm");
    fs::write(&path, &damaged).unwrap();
    let r = check(&path);
    assert_ne!(r.status, Status::Ok, "{}", r.human());
    assert!(!r.problems.is_empty());

    // A mangled OpusHead.
    let at = bytes
        .windows(8)
        .position(|w| w == b"OpusHead")
        .expect("OpusHead in the file");
    let mut mangled = bytes.clone();
    mangled[at..at + 8].copy_from_slice(b"OpusXXXX");
    let path = dir.join("bad-opushead.webm");
    fs::write(&path, &mangled).unwrap();
    let r = check(&path);
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == ProblemKind::BadCodecPrivate),
        "{}",
        r.human()
    );

    // Random bytes and an empty file: unreadable.
    for (name, content) in [
        ("random.webm", noise(100_000, 42)),
        ("empty.webm", Vec::new()),
    ] {
        let path = dir.join(name);
        fs::write(&path, content).unwrap();
        let r = check(&path);
        assert_eq!(r.status, Status::Unreadable, "{name}: {}", r.human());
        assert!(!r.playable);
        assert_eq!(r.exit_status(), 2);
    }
}

fn run_check(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn command_line_json_exit_status_and_timeline() {
    let scratch = Scratch::new("check-cli");
    let dir = &scratch.path;
    fs::create_dir_all(dir.join("a")).unwrap();
    let good = clip(dir, "a/good.webm", Some("vp8"), Some(SINE), &[])
        .to_string_lossy()
        .into_owned();
    let bytes = fs::read(&good).unwrap();
    let cut = dir.join("a/b/cut.mkv");
    fs::create_dir_all(cut.parent().unwrap()).unwrap();
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let random = dir.join("random.webm");
    fs::write(&random, noise(5000, 3)).unwrap();

    // One good file: exit 0, a JSON object with the promised fields.
    let (code, out) = run_check(&["--json", &good]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    for key in ["file", "playable", "duration_ms", "tracks", "problems"] {
        assert!(v.get(key).is_some(), "no {key} in {v}");
    }
    for key in ["codec", "frames", "keyframes", "duration_ms"] {
        assert!(v["tracks"][0].get(key).is_some(), "no tracks[].{key}");
    }

    // A directory: found recursively, worst status wins, an array of objects.
    let (code, out) = run_check(&["--json", &dir.join("a").to_string_lossy()]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");
    let cut_report = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["file"].as_str().unwrap().ends_with("cut.mkv"))
        .expect("the cut file is found");
    assert_eq!(cut_report["problems"][0]["kind"], "truncated");
    assert!(cut_report["problems"][0]["at_ms"].is_i64());
    assert!(cut_report["problems"][0]["message"].is_string());

    let (code, out) = run_check(&[&good, &random.to_string_lossy()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("UNREADABLE") && out.contains("OK"), "{out}");

    // A timeline per file.
    let svg = dir.join("t.svg");
    let (code, _) = run_check(&[
        "--timeline",
        &svg.to_string_lossy(),
        &good,
        &cut.to_string_lossy(),
    ]);
    assert_eq!(code, 1);
    for name in ["t-good.svg", "t-cut.svg"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{name}: as private as the recordings");
        let text = fs::read_to_string(dir.join(name)).unwrap();
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("class=\"lane\"").count(), 2, "{name}");
        assert!(text.contains("class=\"keyframe\""));
    }
    let cut_svg = fs::read_to_string(dir.join("t-cut.svg")).unwrap();
    assert!(cut_svg.contains("class=\"problem\""));
}

#[test]
fn a_resolution_change_is_reported_but_is_no_problem() {
    let scratch = Scratch::new("check-resize");
    let dir = &scratch.path;
    let big = clip(dir, "big.webm", Some("vp8"), None, &["-t", "2"]);
    let small = dir.join("small.webm");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi"])
        .args([
            "-i",
            "testsrc=size=160x120:rate=30",
            "-t",
            "2",
            "-c:v",
            "libvpx",
            "-g",
            "30",
        ])
        .arg(&small)
        .status()
        .unwrap();
    assert!(status.success());
    let list = dir.join("list.txt");
    fs::write(
        &list,
        format!("file '{}'\nfile '{}'\n", big.display(), small.display()),
    )
    .unwrap();
    let joined = dir.join("joined.webm");
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i",
        ])
        .arg(&list)
        .args(["-c", "copy"])
        .arg(&joined)
        .status()
        .unwrap();
    assert!(status.success());
    let r = check(&joined);
    let video = &r.tracks[0];
    assert_eq!(
        (video.width, video.height),
        (Some(160), Some(120)),
        "the last size"
    );
    assert_eq!(video.size_changes.len(), 1, "{}", r.human());
    assert!((1900..=2100).contains(&video.size_changes[0].at_ms));
    assert_eq!(r.status, Status::Ok, "{}", r.human());
}

#[test]
fn a_missing_opus_codec_private_is_reported() {
    let scratch = Scratch::new("check-nopriv");
    let bytes = fs::read(clip(&scratch.path, "a.webm", None, Some(SINE), &[])).unwrap();
    // Turn CodecPrivate (id 63 A2, 1-byte size) into a Void of the same length.
    let at = codec_private_at(&bytes, b"A_OPUS");
    let size = bytes[at + 2];
    assert!(size & 0x80 != 0, "a 1-byte size");
    let mut removed = bytes[..at].to_vec();
    removed.extend_from_slice(&[0xEC, 0x40, size & 0x7F]);
    removed.extend_from_slice(&bytes[at + 3..]);
    let path = scratch.path.join("no-private.webm");
    fs::write(&path, removed).unwrap();
    let r = check(&path);
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == ProblemKind::MissingCodecPrivate),
        "{}",
        r.human()
    );
    assert_eq!(r.status, Status::Problems);
}

/// A recording over 64 MiB written by the daemon's own writer (a high-bitrate clip looped, each
/// loop starting on its keyframe) is read whole: ebml-iterable's default element limit (64 MiB,
/// masters included) once made `check` call every long recording unreadable.
#[test]
fn a_recording_over_64_mib_is_read_whole() {
    use janus_recorder::media::Codec;
    use janus_recorder::publish::clip::Clip;
    use janus_recorder::webm::writer::{TrackSetup, WebmWriter};
    use std::time::Duration;

    let scratch = Scratch::new("check-large");
    let dir = &scratch.path;
    // 4 s of noise at about 20 Mb/s: 10 MB a loop.
    require_ffmpeg();
    let source = dir.join("source.webm");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1280x720:rate=30,noise=alls=60:allf=t")
        .args(["-f", "lavfi", "-i", SINE, "-t", "4"])
        .args([
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "60",
        ])
        .args(["-b:v", "20M", "-minrate", "20M", "-maxrate", "20M"])
        .args(["-c:a", "libopus", "-ac", "2"])
        .arg(&source)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg could not make the source clip");
    let clip = Clip::load(&source).unwrap();
    let (audio, video) = (clip.audio.unwrap(), clip.video.unwrap());
    let out = dir.join("large.webm");
    let setup = TrackSetup {
        audio: Some(Codec::Opus),
        video: Some(Codec::Vp8),
    };
    let mut w = WebmWriter::create(&out, setup).unwrap();
    let loops = 8u32;
    let mut frames: Vec<(Duration, bool, bool, &[u8])> = Vec::new();
    for n in 0..loops {
        let base = clip.duration * n;
        frames.extend(
            audio
                .frames
                .iter()
                .map(|f| (base + f.at, false, true, &f.data[..])),
        );
        frames.extend(
            video
                .frames
                .iter()
                .map(|f| (base + f.at, true, f.keyframe, &f.data[..])),
        );
    }
    frames.sort_by_key(|f| f.0);
    for (at, is_video, key, data) in frames {
        if is_video {
            w.write_video(at, key, data).unwrap();
        } else {
            w.write_audio(at, data).unwrap();
        }
    }
    let summary = w.finalize().unwrap();
    assert!(
        summary.bytes > 64 << 20,
        "the test needs a file over 64 MiB, got {} bytes",
        summary.bytes
    );

    let r = check(&out);
    assert_eq!(r.status, Status::Ok, "{}", r.human());
    let expected = (clip.duration * loops).as_millis() as i64;
    let got = r.duration_ms.unwrap() as i64;
    assert!(
        (got - expected).abs() <= 50,
        "check says {got} ms, the file holds {expected} ms"
    );
    assert_eq!(agreement_with_ffprobe(&out, &r, 1.0 / 30.0), None);
    let (status, _) = run_check(&[out.to_str().unwrap()]);
    assert_eq!(status, 0);

    // Cut in half (a partial copy, its Segment claiming twice what is there): truncated, and
    // memory is bounded by the element cap, not by the file's or the Segment's size.
    let bytes = fs::read(&out).unwrap();
    let cut = dir.join("cut.webm");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    drop(bytes);
    let r = check(&cut);
    assert!(
        r.problems.iter().any(|p| p.kind == ProblemKind::Truncated),
        "{}",
        r.human()
    );
    let half = expected / 2;
    let ms = r.playable_ms.unwrap() as i64;
    assert!((ms - half).abs() < 2_000, "{ms} ms playable of {expected}");
    let peak_mib = check_peak_rss_mib(&cut);
    println!(
        "check on a cut {} MiB file: peak RSS {peak_mib:.1} MiB",
        summary.bytes >> 21
    );
    assert!(peak_mib <= 64.0, "peak RSS {peak_mib:.1} MiB");
}

/// ffprobe's count of the first video stream's keyframe packets.
fn keyframe_packets(path: &Path) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-of", "csv"])
        .args(["-show_entries", "packet=flags"])
        .arg(path)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("packet,K"))
        .count() as u64
}

#[test]
fn h264_h265_and_av1_files_are_ok_and_agree_with_ffprobe() {
    let scratch = Scratch::new("check-codecs");
    for (name, video, codec) in [
        ("h264-baseline.mkv", "h264-baseline", "V_MPEG4/ISO/AVC"),
        ("h264-main.mkv", "h264-main", "V_MPEG4/ISO/AVC"),
        ("h264-high.mkv", "h264-high", "V_MPEG4/ISO/AVC"),
        ("h265.mkv", "h265", "V_MPEGH/ISO/HEVC"),
        ("av1.webm", "av1", "V_AV1"),
        ("av1.mkv", "av1", "V_AV1"),
    ] {
        let path = clip(&scratch.path, name, Some(video), Some(SINE), &[]);
        let r = check(&path);
        assert_eq!(r.status, Status::Ok, "{name}: {}", r.human());
        assert_eq!(agreement_with_ffprobe(&path, &r, 1.0 / 30.0), None);
        let v = r.tracks.iter().find(|t| t.kind == "video").unwrap();
        assert_eq!(v.codec, codec, "{name}");
        assert_eq!((v.width, v.height), (Some(320), Some(240)), "{name}");
        assert_eq!(v.keyframes, 5, "{name}: a keyframe every 30 frames");
        assert_eq!(v.keyframes, keyframe_packets(&path), "{name}");
        assert_eq!(v.frames, 150, "{name}");
        assert!(v.codec_private_bytes > 0 && v.size_changes.is_empty());
    }
}

/// The byte ranges of the SimpleBlocks of a Matroska file ffmpeg wrote (known sizes): each
/// block's body, from its track number on.
fn simple_blocks(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    // An EBML variable-size integer at `at`: (value with the marker removed, length).
    let vint = |at: usize, keep_marker: bool| -> (u64, usize) {
        let len = bytes[at].leading_zeros() as usize + 1;
        let mut v = u64::from(bytes[at]);
        if !keep_marker {
            v &= 0xff >> len;
        }
        for b in &bytes[at + 1..at + len] {
            v = v << 8 | u64::from(*b);
        }
        (v, len)
    };
    let mut blocks = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (id, id_len) = vint(at, true);
        let (size, size_len) = vint(at + id_len, false);
        let body = at + id_len + size_len;
        match id {
            // Segment and Cluster: go inside.
            0x1853_8067 | 0x1F43_B675 => at = body,
            0xA3 => {
                blocks.push(body..body + size as usize);
                at = body + size as usize;
            }
            _ => at = body + size as usize,
        }
    }
    blocks
}

#[test]
fn a_bad_nal_length_is_reported() {
    let scratch = Scratch::new("check-h264-damage");
    let good = clip(&scratch.path, "good.mkv", Some("h264-main"), None, &[]);
    let mut bytes = fs::read(&good).unwrap();
    let blocks = simple_blocks(&bytes);
    assert_eq!(blocks.len(), 150);
    // The 40th frame's first NAL unit claims 2^31 bytes (the header is 4 bytes: track 1,
    // time, flags).
    let at = blocks[40].start + 4;
    bytes[at..at + 4].copy_from_slice(&[0x80, 0, 0, 0]);
    let path = scratch.path.join("bad-length.mkv");
    fs::write(&path, &bytes).unwrap();
    let r = check(&path);
    assert_eq!(r.status, Status::Problems, "{}", r.human());
    let bad: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::UndecodableVideo)
        .collect();
    assert_eq!(bad.len(), 1, "{}", r.human());
    assert!(bad[0].message.contains("NAL"), "{}", bad[0].message);
    assert_eq!(r.tracks[0].frames, 150);
}

#[test]
fn a_first_h264_frame_that_is_no_idr_is_reported() {
    let scratch = Scratch::new("check-h264-start");
    let good = clip(&scratch.path, "good.mkv", Some("h264-baseline"), None, &[]);
    let mut bytes = fs::read(&good).unwrap();
    let first = simple_blocks(&bytes)[0].clone();
    // Make the first frame's IDR slices (type 5) plain slices (type 1), and clear the block's
    // keyframe flag: a recording that starts mid-GOP.
    bytes[first.start + 3] &= !0x80;
    let mut at = first.start + 4;
    while at + 4 < first.end {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if bytes[at + 4] & 0x1f == 5 {
            bytes[at + 4] = bytes[at + 4] & !0x1f | 1;
        }
        at += 4 + len;
    }
    let path = scratch.path.join("no-idr.mkv");
    fs::write(&path, &bytes).unwrap();
    let r = check(&path);
    assert!(
        r.problems
            .iter()
            .any(|p| p.kind == ProblemKind::FirstVideoNotKeyframe && p.at_ms == Some(0)),
        "{}",
        r.human()
    );
    assert!(
        r.problems
            .iter()
            .all(|p| p.kind != ProblemKind::KeyframeFlagMismatch),
        "{}",
        r.human()
    );
    assert_eq!(r.tracks[0].keyframes, 4);
}

/// Where the CodecPrivate element of the track whose CodecID starts with `codec` ("V_",
/// "A_OPUS") starts: the first id 0x63A2 after that CodecID, which ffmpeg writes just before
/// it. (The first 0x63A2 of the file can be two bytes of a random SegmentUID or TrackUID,
/// which are written before.)
fn codec_private_at(bytes: &[u8], codec: &[u8]) -> usize {
    let codec_id = bytes
        .windows(codec.len())
        .position(|w| w == codec)
        .expect("the track's CodecID");
    codec_id
        + bytes[codec_id..]
            .windows(2)
            .position(|w| w == [0x63, 0xA2])
            .expect("CodecPrivate")
}

/// Turns the video's CodecPrivate into a Void of the same length.
fn without_codec_private(bytes: &[u8]) -> Vec<u8> {
    let at = codec_private_at(bytes, b"V_");
    let size_len = bytes[at + 2].leading_zeros() as usize + 1;
    let mut size = u64::from(bytes[at + 2] & (0xff >> size_len));
    for b in &bytes[at + 3..at + 2 + size_len] {
        size = size << 8 | u64::from(*b);
    }
    // Void (EC), then the same size in one more byte.
    let mut out = bytes[..at].to_vec();
    out.push(0xEC);
    let longer = size_len + 1;
    let coded = size | 1 << (7 * longer);
    out.extend_from_slice(&coded.to_be_bytes()[8 - longer..]);
    out.extend_from_slice(&bytes[at + 2 + size_len..]);
    out
}

#[test]
fn missing_and_bad_codec_private_and_av1_temporal_delimiters_are_reported() {
    let scratch = Scratch::new("check-codec-private");
    for (video, first_byte) in [("h264-baseline", 1), ("h265", 1), ("av1", 0x81)] {
        let name = format!("{video}.mkv");
        let bytes = fs::read(clip(&scratch.path, &name, Some(video), None, &[])).unwrap();
        let has = |path: &Path, kind: ProblemKind| {
            let r = check(path);
            assert!(
                r.problems.iter().any(|p| p.kind == kind),
                "{video}: {}",
                r.human()
            );
            assert_eq!(r.status, Status::Problems);
        };
        let missing = scratch.path.join(format!("{video}-missing.mkv"));
        fs::write(&missing, without_codec_private(&bytes)).unwrap();
        has(&missing, ProblemKind::MissingCodecPrivate);

        // The record's version byte (right after the CodecPrivate's id and size) changed.
        let at = codec_private_at(&bytes, b"V_");
        let body = at + 2 + bytes[at + 2].leading_zeros() as usize + 1;
        assert_eq!(bytes[body], first_byte, "{video}");
        let mut bad = bytes.clone();
        bad[body] = 0x7f;
        let path = scratch.path.join(format!("{video}-bad.mkv"));
        fs::write(&path, bad).unwrap();
        has(&path, ProblemKind::BadCodecPrivate);

        if video == "av1" {
            // A frame OBU (type 6) of an inter frame turned into a temporal delimiter (2).
            let block = simple_blocks(&bytes)[10].clone();
            let mut with_td = bytes.clone();
            let obu = block.start + 4;
            assert_eq!(with_td[obu] >> 3 & 0xf, 6, "a frame OBU");
            with_td[obu] = with_td[obu] & !0x78 | 2 << 3;
            let path = scratch.path.join("av1-td.mkv");
            fs::write(&path, with_td).unwrap();
            has(&path, ProblemKind::Av1TemporalDelimiter);
        }
    }
}

/// A finalized file over the old 1 MiB floor, cut in half (a partial copy): its Segment
/// claims more than the file holds. Before, that size was refused as oversized and the file
/// was UNREADABLE with 0 frames; now it is truncated, with the first half playable.
#[test]
fn a_large_file_cut_short_is_truncated_not_unreadable() {
    let scratch = Scratch::new("check-cut-large");
    let dir = &scratch.path;
    // Noise does not compress: 5 s of it at 640x480 is several MiB.
    require_ffmpeg();
    let big = dir.join("big.webm");
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc=size=640x480:rate=30,noise=alls=60:allf=t")
        .args(["-f", "lavfi", "-i", SINE, "-t", "5"])
        .args([
            "-c:v",
            "libvpx",
            "-g",
            "30",
            "-b:v",
            "8M",
            "-deadline",
            "realtime",
        ])
        .args(["-c:a", "libopus", "-ac", "2"])
        .arg(&big)
        .status()
        .expect("ffmpeg");
    assert!(status.success(), "ffmpeg could not make big.webm");
    let bytes = fs::read(&big).unwrap();
    assert!(bytes.len() > 2 << 20, "{} bytes", bytes.len());
    let whole = check(&big);
    assert_eq!(whole.status, Status::Ok, "{}", whole.human());
    assert!(whole.finalized);
    let cut = dir.join("cut.webm");
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = check(&cut);
    assert!(r.playable, "{}", r.human());
    assert!(!r.finalized);
    assert!(
        r.problems.iter().any(|p| p.kind == ProblemKind::Truncated),
        "{}",
        r.human()
    );
    let ms = r.playable_ms.unwrap();
    assert!((1500..=3500).contains(&ms), "{ms} ms playable of 5 s");
}

/// The start of a WebM file (unknown-sized Segment and Cluster) whose first SimpleBlock, of
/// track 1, claims `size` bytes (an 8-byte size); none of its data follows.
fn claiming_block(size: u64) -> Vec<u8> {
    let mut head = vec![0x1A, 0x45, 0xDF, 0xA3, 0x87, 0x42, 0x82, 0x84];
    head.extend_from_slice(b"webm");
    let unknown = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    head.extend_from_slice(&[0x18, 0x53, 0x80, 0x67]);
    head.extend_from_slice(&unknown);
    head.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75]);
    head.extend_from_slice(&unknown);
    head.push(0xA3);
    head.extend_from_slice(&(size | 1 << 56).to_be_bytes());
    head.extend_from_slice(&[0x81, 0, 0, 0x80]);
    head
}

/// A 256 MiB sparse file (4 KiB on disk) whose one block claims 250 MiB, or 60 MiB: the check
/// tool's peak memory stays small (before: the claimed size was allocated and copied, 794 MB).
#[test]
fn a_block_claiming_hundreds_of_megabytes_costs_no_memory() {
    let scratch = Scratch::new("check-sparse");
    // 60 MiB: under the former 64 MiB cap, it cost 221 MiB.
    for claim_mib in [250u64, 60] {
        let path = scratch.path.join(format!("sparse-{claim_mib}.webm"));
        // Then nothing but the sparse file's zeros.
        fs::write(&path, claiming_block(claim_mib << 20)).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        let peak_mib = check_peak_rss_mib(&path);
        println!(
            "check on a 256 MiB sparse file claiming a {claim_mib} MiB block: peak RSS \
             {peak_mib:.1} MiB"
        );
        assert!(
            peak_mib <= 64.0,
            "{claim_mib} MiB: peak RSS {peak_mib:.1} MiB"
        );
    }
}

/// A 4 KiB file whose block claims 15 MiB (under the 16 MiB element cap): nothing larger
/// than the file is allocated (before: the claim was zero-filled and copied, and under the
/// former 64 MiB cap a 60 MiB claim cost 156 MiB), and the file reads as cut there.
#[test]
fn a_claim_larger_than_the_file_costs_no_memory() {
    let scratch = Scratch::new("check-claim");
    let path = scratch.path.join("claim.webm");
    let mut head = claiming_block(15 << 20);
    head.resize(4096, 0x55);
    fs::write(&path, &head).unwrap();
    let peak_mib = check_peak_rss_mib(&path);
    println!("check on a 4 KiB file claiming a 15 MiB block: peak RSS {peak_mib:.1} MiB");
    assert!(peak_mib < 64.0, "peak RSS {peak_mib:.1} MiB");
    let r = check(&path);
    assert_problem(&r, ProblemKind::CorruptData, false);

    // A Cluster may claim more than the file holds (masters are not held in memory): a cut
    // copy of an audio file with one Cluster (more than half the file) plays to the cut.
    let audio = clip(&scratch.path, "audio.webm", None, Some(SINE), &[]);
    let bytes = fs::read(&audio).unwrap();
    let clusters = with_id(&top_elements(&bytes), 0x1F43_B675);
    assert!(
        clusters[0].body.len() > bytes.len() * 6 / 10,
        "{} clusters",
        clusters.len()
    );
    let r = write_and_check(&scratch.path, "cut.webm", &bytes[..bytes.len() * 6 / 10]);
    assert_problem(&r, ProblemKind::Truncated, true);
    assert_problem(&r, ProblemKind::CorruptData, false);
    let ms = r.playable_ms.unwrap();
    assert!((2000..=4000).contains(&ms), "{ms} ms of 5 s: {}", r.human());
}

/// The peak RSS of `janus-recorder check PATH`, in MiB, as GNU time measures it. (`wait4` on
/// a child of the test would not do: std spawns with a shared address space until `exec`, and
/// Linux keeps the larger high-water mark, so the child would inherit the test's.)
fn check_peak_rss_mib(path: &Path) -> f64 {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_janus-recorder"))
        .arg("check")
        .arg(path)
        .stdout(std::process::Stdio::null())
        .output()
        .expect("/usr/bin/time (apt-get install time)");
    assert!(out.status.code().is_some(), "exited by itself");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib: f64 = stderr
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS from /usr/bin/time: {stderr}"));
    kib / 1024.0
}

/// An EBML element found by [`top_elements`]: its ID, where it starts, where its size field
/// is, and where its body is.
#[derive(Debug, Clone)]
struct Element {
    id: u64,
    start: usize,
    size_field: std::ops::Range<usize>,
    body: std::ops::Range<usize>,
}

/// The Segment, its Clusters and their SimpleBlocks (the elements other than those are
/// stepped over), in file order. Unknown sizes are taken to run to the end of the file.
fn top_elements(bytes: &[u8]) -> Vec<Element> {
    let vint = |at: usize, keep_marker: bool| -> (u64, usize, bool) {
        let len = bytes[at].leading_zeros() as usize + 1;
        let mut v = u64::from(bytes[at]);
        if !keep_marker {
            v &= 0xff >> len;
        }
        for b in &bytes[at + 1..at + len] {
            v = v << 8 | u64::from(*b);
        }
        let unknown = !keep_marker && v == (1u64 << (7 * len)) - 1;
        (v, len, unknown)
    };
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (id, id_len, _) = vint(at, true);
        let (size, size_len, unknown) = vint(at + id_len, false);
        let body = at + id_len + size_len;
        let end = if unknown {
            bytes.len()
        } else {
            body + size as usize
        };
        let e = Element {
            id,
            start: at,
            size_field: at + id_len..body,
            body: body..end,
        };
        match id {
            0x1853_8067 | 0x1F43_B675 => {
                found.push(e);
                at = body;
            }
            0xA3 => {
                found.push(e);
                at = end;
            }
            _ => at = end,
        }
    }
    found
}

fn with_id(elements: &[Element], id: u64) -> Vec<Element> {
    elements.iter().filter(|e| e.id == id).cloned().collect()
}

/// Overwrites a size field with the largest known size of the same length (an unknown size
/// is all ones, so one less).
fn claim_the_most(bytes: &mut [u8], field: std::ops::Range<usize>) {
    let len = field.len();
    let value = (1u64 << (7 * len)) - 2;
    let coded = value | 1 << (7 * len);
    bytes[field].copy_from_slice(&coded.to_be_bytes()[8 - len..]);
}

/// Overwrites a size field with the unknown size of the same length.
fn unknown_size(bytes: &mut [u8], field: std::ops::Range<usize>) {
    let len = field.len();
    bytes[field.start] = 0xFF >> (len - 1);
    for b in &mut bytes[field.start + 1..field.end] {
        *b = 0xFF;
    }
}

/// A clip of 5 s with a Cluster a second (ffmpeg's default is one per 5 s of WebM).
fn clustered_clip(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["-cluster_time_limit", "1000"];
    args.extend_from_slice(extra);
    clip(dir, name, Some("vp8"), Some(SINE), &args)
}

/// The first problem of `kind`.
fn problem_of(r: &FileReport, kind: ProblemKind) -> Option<&janus_recorder::check::Problem> {
    r.problems.iter().find(|p| p.kind == kind)
}

/// Writes `bytes` to `dir/name` and checks it.
fn write_and_check(dir: &Path, name: impl AsRef<Path>, bytes: &[u8]) -> FileReport {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    check(&path)
}

/// Asserts that `r` has (or has not) a problem of `kind`, showing the report if not.
fn assert_problem(r: &FileReport, kind: ProblemKind, present: bool) {
    assert_eq!(
        problem_of(r, kind).is_some(),
        present,
        "{kind:?}: {}",
        r.human()
    );
}

/// Replaces a size field with an 8-byte one claiming about 2^48 bytes (281 TB); later offsets
/// move by the difference.
fn claim_petabytes(bytes: &[u8], field: std::ops::Range<usize>) -> Vec<u8> {
    let mut out = bytes[..field.start].to_vec();
    out.extend_from_slice(&[0x01, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    out.extend_from_slice(&bytes[field.end..]);
    out
}

/// A Cluster, or a block, claiming petabytes in the middle of a file: the damaged span is
/// reported and reading goes on at the next Cluster (as ffmpeg does), so the rest of the file
/// is read. Before, the reader skipped to the next byte that looked like any element and lost
/// its way in the media data. A Cluster claiming a little more than it holds loses nothing.
#[test]
fn after_damage_reading_goes_on_at_the_next_cluster() {
    let scratch = Scratch::new("check-resync");
    let dir = &scratch.path;
    let good = clustered_clip(dir, "good.webm", &[]);
    let bytes = fs::read(&good).unwrap();
    let whole = check(&good);
    assert_eq!(whole.status, Status::Ok, "{}", whole.human());
    let frames = |r: &FileReport| r.tracks.iter().map(|t| t.frames).sum::<u64>();
    let elements = top_elements(&bytes);
    let clusters = with_id(&elements, 0x1F43_B675);
    assert!(clusters.len() >= 4, "{} clusters", clusters.len());
    let second = &clusters[1];
    let block = elements
        .iter()
        .filter(|e| e.id == 0xA3 && second.body.contains(&e.start))
        .nth(10)
        .expect("blocks in the second cluster")
        .clone();
    let moved = |field: &std::ops::Range<usize>| clusters[2].start + 8 - field.len();
    let mut a_bit_more = bytes.clone();
    claim_the_most(&mut a_bit_more, second.size_field.clone());

    for (name, data, span, lost) in [
        (
            "cluster.webm",
            claim_petabytes(&bytes, second.size_field.clone()),
            format!(
                "from byte {} to {}",
                second.start,
                moved(&second.size_field)
            ),
            true,
        ),
        (
            "block.webm",
            claim_petabytes(&bytes, block.size_field.clone()),
            format!("from byte {} to {}", block.start, moved(&block.size_field)),
            true,
        ),
        (
            "a-bit-more.webm",
            a_bit_more,
            format!("up to byte {}", clusters[2].start),
            false,
        ),
    ] {
        let r = write_and_check(dir, name, &data);
        let damage = problem_of(&r, ProblemKind::CorruptData)
            .unwrap_or_else(|| panic!("{name}: {}", r.human()));
        assert!(damage.message.contains(&span), "{name}: {}", damage.message);
        assert!(
            damage.message.contains("next Cluster"),
            "{}",
            damage.message
        );
        // What follows the damage is read: the file plays to its end, losing at most the
        // rest of the damaged Cluster.
        assert!(r.playable_ms.unwrap() >= 4900, "{name}: {}", r.human());
        if lost {
            assert!(frames(&r) < frames(&whole), "{name}");
            assert!(
                frames(&r) > frames(&whole) * 3 / 5,
                "{name}: {} of {} frames",
                frames(&r),
                frames(&whole)
            );
        } else {
            assert_eq!(frames(&r), frames(&whole), "{name}");
        }
        assert!(r.finalized, "{name}: {}", r.human());
        assert_eq!(r.status, Status::Problems);
    }
}

/// A whole file in live layout (an unknown-size Segment, as `ffmpeg -live 1` writes, and
/// unknown-size Clusters too, as browsers' MediaRecorder writes; no Cues, no Duration) is
/// "not finalized", not cut off by a crash; the same file cut inside a block is truncated.
#[test]
fn a_file_written_live_is_not_finalized_and_not_truncated() {
    let scratch = Scratch::new("check-live");
    let dir = &scratch.path;
    let live = clustered_clip(dir, "live.webm", &["-live", "1"]);
    let bytes = fs::read(&live).unwrap();
    let elements = top_elements(&bytes);
    let segment = &with_id(&elements, 0x1853_8067)[0];
    assert_eq!(
        segment.body.end,
        bytes.len(),
        "ffmpeg -live 1 leaves the Segment's size unknown"
    );
    let mut unknown_clusters = bytes.clone();
    for c in with_id(&elements, 0x1F43_B675) {
        unknown_size(&mut unknown_clusters, c.size_field);
    }
    let path = dir.join("unknown-clusters.webm");
    fs::write(&path, &unknown_clusters).unwrap();
    for path in [&live, &path] {
        let r = check(path);
        let name = path.display();
        assert!(r.playable && !r.finalized, "{name}: {}", r.human());
        let p = problem_of(&r, ProblemKind::NotFinalized)
            .unwrap_or_else(|| panic!("{name}: {}", r.human()));
        assert!(
            p.message
                .starts_with("not finalized: unknown-size Segment, no Cues, no Duration"),
            "{}",
            p.message
        );
        assert_problem(&r, ProblemKind::Truncated, false);
        assert!(r.playable_ms.unwrap() >= 4900, "{name}: {}", r.human());
        assert_eq!(r.status, Status::Problems);
    }
    // Cut in the middle of the last block: truncated.
    let last = with_id(&elements, 0xA3).pop().unwrap();
    let r = write_and_check(dir, "cut.webm", &unknown_clusters[..last.body.start + 2]);
    assert_problem(&r, ProblemKind::Truncated, true);
    assert_problem(&r, ProblemKind::NotFinalized, false);
}

/// Strings padded with zero bytes (RFC 8794 allows it: the value ends at the first) are read
/// as the spec says: a DocType of `webm\0` is WebM.
#[test]
fn a_zero_padded_doctype_is_webm() {
    let scratch = Scratch::new("check-padded");
    let dir = &scratch.path;
    let good = clip(dir, "good.webm", Some("vp8"), Some(SINE), &[]);
    let bytes = fs::read(&good).unwrap();
    // EBML header: ID, a one-byte size, then children; DocType is 42 82 84 "webm".
    assert_eq!(&bytes[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
    assert_eq!(bytes[4] & 0x80, 0x80, "a one-byte EBML header size");
    let doctype = bytes
        .windows(7)
        .position(|w| w == b"\x42\x82\x84webm")
        .expect("DocType");
    let mut padded = bytes[..doctype].to_vec();
    padded[4] += 1;
    padded.extend_from_slice(b"\x42\x82\x85webm\0");
    padded.extend_from_slice(&bytes[doctype + 7..]);
    let path = dir.join("padded.webm");
    fs::write(&path, &padded).unwrap();
    // ffprobe reads it as WebM too.
    assert_eq!(
        agreement_with_ffprobe(&path, &check(&good), 1.0 / 30.0),
        None
    );
    let r = check(&path);
    assert_eq!(r.status, Status::Ok, "{}", r.human());
}

/// A codec the check cannot read is a problem, not a silent pass.
#[test]
fn an_unknown_codec_is_a_problem() {
    let scratch = Scratch::new("check-codec");
    let dir = &scratch.path;
    let good = clip(dir, "good.webm", Some("vp8"), Some(SINE), &[]);
    let mut bytes = fs::read(&good).unwrap();
    let at = bytes.windows(5).position(|w| w == b"V_VP8").unwrap();
    bytes[at..at + 5].copy_from_slice(b"V_XY8");
    let r = write_and_check(dir, "xy8.mkv", &bytes);
    assert_eq!(r.status, Status::Problems, "{}", r.human());
    let p = problem_of(&r, ProblemKind::UnknownCodec).unwrap();
    assert_eq!(
        p.message,
        format!(
            "track {0}: codec V_XY8 not checked (only Opus, VP8, VP9, H.264, H.265 and AV1 are)",
            p.track.unwrap()
        )
    );
}

/// A first frame that is a keyframe in its bitstream but whose block flag is cleared is a flag
/// mismatch; the start still shows, so it is not "not a keyframe".
#[test]
fn a_first_keyframe_with_its_flag_cleared_is_a_flag_mismatch() {
    let scratch = Scratch::new("check-keyflag");
    let dir = &scratch.path;
    let good = clip(dir, "good.webm", Some("vp8"), None, &[]);
    let mut bytes = fs::read(&good).unwrap();
    let first = simple_blocks(&bytes)[0].clone();
    assert_eq!(bytes[first.start + 3] & 0x80, 0x80);
    bytes[first.start + 3] &= !0x80;
    let r = write_and_check(dir, "flag.webm", &bytes);
    let p = problem_of(&r, ProblemKind::KeyframeFlagMismatch).expect("a flag mismatch");
    assert_eq!(p.at_ms, Some(0));
    assert_problem(&r, ProblemKind::FirstVideoNotKeyframe, false);
}

/// A file mkvmerge wrote (no one here wrote it: BlockGroups for the last frames, its own
/// element order and sizes) is OK and agrees with ffprobe; the same file cut at 60% is
/// truncated with about 60% playable.
#[test]
fn files_from_mkvmerge_are_ok_and_their_cut_copies_truncated() {
    let scratch = Scratch::new("check-mkvmerge");
    let dir = &scratch.path;
    let source = clip(dir, "source.webm", Some("vp8"), Some(SINE), &[]);
    for (name, webm) in [("out.mkv", false), ("out.webm", true)] {
        let out = dir.join(name);
        let mut cmd = Command::new("mkvmerge");
        cmd.arg("-q").arg("-o").arg(&out);
        if webm {
            cmd.arg("--webm");
        }
        let status = cmd.arg(&source).status().unwrap_or_else(|e| {
            panic!(
                "mkvmerge: {e} (install mkvtoolnix: scripts/setup.sh or apt-get install mkvtoolnix)"
            )
        });
        assert!(status.success(), "mkvmerge");
        let r = check(&out);
        assert_eq!(r.status, Status::Ok, "{name}: {}", r.human());
        assert_eq!(agreement_with_ffprobe(&out, &r, 1.0 / 30.0), None, "{name}");
        let bytes = fs::read(&out).unwrap();
        let r = write_and_check(dir, format!("cut-{name}"), &bytes[..bytes.len() * 6 / 10]);
        assert_problem(&r, ProblemKind::Truncated, true);
        let ms = r.playable_ms.unwrap();
        assert!((2000..=4000).contains(&ms), "{name}: {ms} ms of 5 s");
    }
}

/// `--decode` puts every video frame through a real decoder (libavcodec; libdav1d for AV1):
/// files of each codec decode whole. An H.264 frame whose slice data is overwritten (its NAL
/// units still whole, so the header check passes) fails in the decoder and is reported at its
/// time, as ffmpeg reports it; without `--decode` the report says video was checked by its
/// headers only.
#[test]
fn decode_puts_every_video_frame_through_a_decoder() {
    let scratch = Scratch::new("check-decode");
    let dir = &scratch.path;
    let decoding = CheckOptions {
        video_decoder: Some(env!("CARGO_BIN_EXE_janus-recorder-decode").into()),
        ..CheckOptions::default()
    };
    for (name, codec) in [
        ("vp8.webm", "vp8"),
        ("vp9.webm", "vp9"),
        ("h264.mkv", "h264-main"),
        ("h265.mkv", "h265"),
        ("av1.mkv", "av1"),
    ] {
        let path = clip(dir, name, Some(codec), None, &[]);
        let r = check_file(&path, &decoding);
        assert_eq!(r.status, Status::Ok, "{}", r.human());
        assert!(r.video_decoded);
        let v = &r.tracks[0];
        assert_eq!(v.decoded_frames, Some(v.frames), "{}", r.human());
    }

    let good = clip(dir, "baseline.mkv", Some("h264-baseline"), None, &[]);
    let mut bytes = fs::read(&good).unwrap();
    let block = simple_blocks(&bytes)[40].clone();
    let mid = (block.start + block.end) / 2;
    bytes[mid..mid + 32].copy_from_slice(&noise(32, 7));
    let path = dir.join("damaged.mkv");
    fs::write(&path, &bytes).unwrap();
    let ffmpeg = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let said = String::from_utf8_lossy(&ffmpeg.stderr);
    assert!(said.contains("error while decoding"), "ffmpeg: {said}");

    let headers_only = check(&path);
    assert_eq!(headers_only.status, Status::Ok, "{}", headers_only.human());
    assert!(!headers_only.video_decoded);
    assert!(
        headers_only
            .human()
            .contains("video checked by its headers only (--decode decodes every frame)"),
        "{}",
        headers_only.human()
    );
    let r = check_file(&path, &decoding);
    assert_eq!(r.status, Status::Problems, "{}", r.human());
    let first = problem_of(&r, ProblemKind::DecodeError).expect("a decode error");
    // Block 40 of a 30 fps clip without B-frames.
    assert_eq!(first.at_ms, Some(1333), "{}", r.human());
    assert!(
        first.message.starts_with("video decoder: "),
        "{}",
        first.message
    );
    assert_problem(&r, ProblemKind::UndecodableVideo, false);
    let path = path.to_str().unwrap();
    let (status, out) = run_check(&["--decode", path]);
    assert_eq!(status, 1, "{out}");
    assert!(out.contains("DecodeError: video decoder"), "{out}");
}

/// The decoder is a program of its own, so `janus-recorder` (the daemon too) links no
/// libavcodec: a dozen shared libraries, not a hundred. A decoder that dies on a frame (here a
/// program killed by a signal as soon as it is asked) or is missing is a `decode_error` in the
/// report, the rest of the file still checked; check itself does not crash.
#[test]
fn the_decoder_runs_apart_and_its_failures_are_reported() {
    let ldd = Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_janus-recorder"))
        .output()
        .expect("ldd (libc-bin)");
    let libs = String::from_utf8_lossy(&ldd.stdout);
    assert!(!libs.contains("libavcodec"), "{libs}");
    assert!(libs.lines().count() < 30, "{libs}");

    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("check-decoder-fails");
    let path = clip(&scratch.path, "vp8.webm", Some("vp8"), Some(SINE), &[]);
    let dying = scratch.path.join("dying-decoder");
    fs::write(&dying, "#!/bin/sh\nkill -SEGV $$\n").unwrap();
    fs::set_permissions(&dying, fs::Permissions::from_mode(0o755)).unwrap();
    for (program, says) in [
        (dying, "the video decoder stopped (signal: 11"),
        (scratch.path.join("missing"), "cannot run the video decoder"),
    ] {
        let r = check_file(
            &path,
            &CheckOptions {
                video_decoder: Some(program),
                ..CheckOptions::default()
            },
        );
        let p = r
            .problems
            .iter()
            .find(|p| p.kind == ProblemKind::DecodeError)
            .unwrap_or_else(|| panic!("{}", r.human()));
        assert!(p.message.contains(says), "{}", p.message);
        assert!(r.tracks.iter().all(|t| t.frames > 0), "{}", r.human());
    }
}

/// libwebm's own test files (tests/fixtures/libwebm, unchanged): its VP9 and Opus files are OK,
/// decode whole and agree with ffprobe; of its invalid ones, a block claiming far more than
/// its cluster is damage after which the first block still plays (before: UNREADABLE with no
/// frames), and a fixed-lacing size that does not divide is a bad lacing, not a panic.
#[test]
fn libwebm_test_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/libwebm");
    let decoding = CheckOptions {
        video_decoder: Some(env!("CARGO_BIN_EXE_janus-recorder-decode").into()),
        ..CheckOptions::default()
    };
    for name in [
        "bbb_480p_vp9_opus_1second.webm",
        "test_stereo_left_right.webm",
    ] {
        let path = dir.join(name);
        let r = check_file(&path, &decoding);
        assert_eq!(r.status, Status::Ok, "{}", r.human());
        let v = r.tracks.iter().find(|t| t.kind == "video").unwrap();
        assert_eq!(v.decoded_frames, Some(v.frames), "{}", r.human());
        assert_eq!(
            agreement_with_ffprobe(&path, &r, 1.0 / 24.0),
            None,
            "{name}"
        );
    }

    let r = check(&dir.join("block_ends_beyond_cluster.mkv"));
    assert_eq!(r.status, Status::Problems, "{}", r.human());
    assert_eq!(r.tracks[0].frames, 1, "{}", r.human());
    assert_problem(&r, ProblemKind::CorruptData, true);

    let r = check(&dir.join("fixed_lacing_bad_lace_size.mkv"));
    let lacing = r
        .problems
        .iter()
        .find(|p| p.message.contains("bad lacing"))
        .unwrap_or_else(|| panic!("{}", r.human()));
    assert_eq!(lacing.kind, ProblemKind::CorruptData);
}
