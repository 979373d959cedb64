//! `janus-recorder room`: a room recorded for real (two synthetic publishers a few seconds
//! apart, one of them publishing again after leaving) put into one Matroska file, then cut
//! with --from/--to and drawn as a grid with --grid.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use janus_recorder::check::{CheckOptions, Status, check_file};
use support::*;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ROOM: u64 = 1701;

/// A stream of a file as ffprobe counts it: kind, title, packets, first packet's time (s).
#[derive(Debug, Clone)]
struct Stream {
    kind: String,
    title: String,
    packets: u64,
    first: f64,
    first_is_key: bool,
}

/// Every stream of `path`, with its packets counted and its first packet found by reading
/// every packet (ffprobe's stream start_time is a guess for streams that start late).
fn streams(path: &Path) -> Vec<Stream> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_entries"])
        .arg("stream=index,codec_type:stream_tags=title:packet=stream_index,pts_time,flags")
        .arg("-show_packets")
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe {}: {out:?}", path.display());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let mut list: Vec<Stream> = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Stream {
            kind: s["codec_type"].as_str().unwrap().into(),
            title: s["tags"]["title"].as_str().unwrap_or("").into(),
            packets: 0,
            first: f64::NAN,
            first_is_key: false,
        })
        .collect();
    for p in v["packets"].as_array().unwrap() {
        let s = &mut list[p["stream_index"].as_u64().unwrap() as usize];
        let pts: f64 = p["pts_time"].as_str().unwrap().parse().unwrap();
        if s.packets == 0 {
            s.first = pts;
            s.first_is_key = p["flags"].as_str().unwrap().starts_with('K');
        }
        s.packets += 1;
    }
    list
}

/// ffprobe's view of the file's DateUTC (`creation_time`, to the microsecond).
fn creation_time(path: &Path) -> OffsetDateTime {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "default=nw=1:nk=1"])
        .args(["-show_entries", "format_tags=creation_time"])
        .arg(path)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .unwrap_or_else(|e| panic!("creation_time {text:?}: {e}"))
}

/// Runs `janus-recorder room ARGS`; fails if it takes more than two minutes.
fn room_command(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .arg("room")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("janus-recorder room");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "janus-recorder room {args:?} still runs after 120 s:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "janus-recorder room: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn started_at(sidecar: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(sidecar["started_at"].as_str().unwrap(), &Rfc3339).unwrap()
}

fn ended_at(sidecar: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(sidecar["ended_at"].as_str().unwrap(), &Rfc3339).unwrap()
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn seconds(d: time::Duration) -> f64 {
    d.as_seconds_f64()
}

#[test]
fn a_room_file_from_three_recordings_including_a_republished_feed() {
    require_tools();
    let scratch = Scratch::new("roomfile");
    let dir = scratch.path.clone();
    let ns = Netns::create("roomfile");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(ROOM, "vp8")]);
    let out = dir.join("recordings");
    let config = recorder_config(&out, "", &rooms_toml(&[ROOM]));
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);

    // alice for 9 s; bob from about 3 s to 12 s; alice again (a new publication, so a new
    // feed) from about 10 s to 15 s.
    let held = |name: &str| -> Vec<String> {
        let report = dir.join(format!("sent-{name}.json"));
        vec![
            "--hold".into(),
            "--report".into(),
            report.display().to_string(),
        ]
    };
    let (a1, b, a2) = (held("alice-1"), held("bob"), held("alice-2"));
    let mut alice = synthetic_publishers(&ns, &dir, ROOM, "alice", 1, 9.0, &args(&a1));
    std::thread::sleep(Duration::from_secs(3));
    let mut bob = synthetic_publishers(&ns, &dir, ROOM, "bob", 1, 9.0, &args(&b));
    let status = wait_exit(&mut alice, Duration::from_secs(60));
    assert!(status.success(), "alice: {}", alice.log_tail(30));
    daemon
        .proc
        .wait_for_nth("recording finished", 1, Duration::from_secs(10));
    let mut alice_again = synthetic_publishers(&ns, &dir, ROOM, "alice", 1, 5.0, &args(&a2));
    for p in [&mut bob, &mut alice_again] {
        let status = wait_exit(p, Duration::from_secs(60));
        assert!(status.success(), "{}", p.log_tail(30));
    }
    daemon
        .proc
        .wait_for_nth("recording finished", 3, Duration::from_secs(10));

    let room_dir = out.join(ROOM.to_string());
    let alice = recordings_of(&out, "alice");
    let bob = recordings_of(&out, "bob");
    assert_eq!(alice.len(), 2, "alice published twice: {alice:#?}");
    assert_eq!(bob.len(), 1, "{bob:#?}");
    assert_ne!(
        alice[0].1["feed"], alice[1].1["feed"],
        "a new publication, a new feed"
    );
    // In the order the room file gives them: by start time.
    let mut recordings = [
        ("alice", &alice[0]),
        ("bob", &bob[0]),
        ("alice #2", &alice[1]),
    ];
    recordings.sort_by_key(|(_, (_, s))| started_at(s));
    let zero = started_at(&recordings[0].1.1);

    // The whole room.
    let room_file = dir.join("room.mkv");
    let text = ok(&room_command(&[
        room_dir.to_str().unwrap(),
        "--out",
        room_file.to_str().unwrap(),
    ]));
    eprintln!("{text}");
    let got = streams(&room_file);
    assert_eq!(got.len(), 6, "{got:#?}");
    for (i, (name, (file, sidecar))) in recordings.iter().enumerate() {
        let own = streams(file);
        let offset = seconds(started_at(sidecar) - zero);
        for (j, kind) in ["audio", "video"].into_iter().enumerate() {
            // The daemon writes audio as track 1 and video as track 2; so does the room file
            // for each recording.
            let s = &got[i * 2 + j];
            let own = own.iter().find(|s| s.kind == kind).unwrap();
            assert_eq!(s.kind, kind, "{got:#?}");
            assert_eq!(s.title, format!("{name} ({kind})"), "{got:#?}");
            let frames = sidecar[format!("{kind}_frames")].as_u64().unwrap();
            assert_eq!(s.packets, frames, "{name} {kind}: {sidecar:#}");
            let expected = offset + own.first;
            assert!(
                (s.first - expected).abs() <= 0.001,
                "{name} {kind} starts at {} s in the room file, {expected} s expected \
                 (offset {offset} s + {} s in its recording)",
                s.first,
                own.first
            );
        }
    }
    let date = creation_time(&room_file);
    assert!(
        (seconds(date - zero)).abs() < 2e-6,
        "DateUTC {date} is not the earliest start {zero}"
    );
    assert_eq!(decode_errors_with(&room_file, &["-map", "0"]).trim(), "");
    let report = check_file(&room_file, &CheckOptions::default());
    assert_eq!(report.status, Status::Ok, "{}", report.human());
    let (_, room_secs) = probe(&room_file);

    // A window: from 4 s to 10 s of the room.
    let cut = dir.join("cut.mkv");
    let text = ok(&room_command(&[
        room_dir.to_str().unwrap(),
        "--from",
        "00:00:04",
        "--to",
        "00:00:10",
        "--out",
        cut.to_str().unwrap(),
    ]));
    eprintln!("{text}");
    let (from, to) = (
        zero + time::Duration::seconds(4),
        zero + time::Duration::seconds(10),
    );
    let inside: Vec<&str> = recordings
        .iter()
        .filter(|(_, (_, s))| started_at(s) < to && ended_at(s) > from)
        .map(|(n, _)| *n)
        .collect();
    let got = streams(&cut);
    let mut titles: Vec<String> = got.iter().map(|s| s.title.clone()).collect();
    titles.sort();
    let mut expected: Vec<String> = inside
        .iter()
        .flat_map(|n| [format!("{n} (audio)"), format!("{n} (video)")])
        .collect();
    expected.sort();
    assert_eq!(titles, expected);
    for s in &got {
        assert!(
            s.first >= -0.01 && s.first < 6.0,
            "{} starts at {}",
            s.title,
            s.first
        );
        if s.kind == "video" {
            assert!(s.first_is_key, "{} does not start on a keyframe", s.title);
        }
    }
    let (_, cut_secs) = probe(&cut);
    assert!(
        (5.0..=6.1).contains(&cut_secs),
        "the window lasts {cut_secs} s"
    );
    assert!((seconds(creation_time(&cut) - from)).abs() < 2e-6);
    assert_eq!(decode_errors_with(&cut, &["-map", "0"]).trim(), "");
    let report = check_file(&cut, &CheckOptions::default());
    assert_eq!(report.status, Status::Ok, "{}", report.human());

    // The grid: one video and one audio stream, as long as the room.
    let grid = dir.join("grid.mp4");
    let text = ok(&room_command(&[
        room_dir.to_str().unwrap(),
        "--out",
        dir.join("room2.mkv").to_str().unwrap(),
        "--grid",
        grid.to_str().unwrap(),
    ]));
    eprintln!("{text}");
    let (grid_streams, grid_secs) = probe(&grid);
    let kinds: BTreeMap<String, usize> = grid_streams.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.codec_type.clone()).or_default() += 1;
        m
    });
    assert_eq!(
        kinds,
        BTreeMap::from([("audio".into(), 1), ("video".into(), 1)]),
        "{grid_streams:#?}"
    );
    assert!(
        (grid_secs - room_secs).abs() <= 1.0,
        "the grid lasts {grid_secs} s, the room {room_secs} s"
    );
    assert_eq!(decode_errors(&grid).trim(), "");
    // What `room` makes is as private as the recordings (0640), whatever the umask.
    for made in [dir.join("room2.mkv"), grid.clone()] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{}", made.display());
    }

    // Bad input: exit status 2, naming the path.
    let missing = dir.join("no-such-room");
    let bad = room_command(&[missing.to_str().unwrap(), "--out", "/dev/null"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains(missing.to_str().unwrap()));
    let empty = dir.join("empty-room");
    std::fs::create_dir_all(&empty).unwrap();
    let bad = room_command(&[empty.to_str().unwrap(), "--out", "/dev/null"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no recordings"));
}

/// Writes a sidecar for `file` (a copy of the test clip) in `dir`.
fn clip_recording(dir: &Path, file: &str, sidecar: serde_json::Value) {
    std::fs::copy(require_clip(), dir.join(file)).unwrap();
    let path = dir.join(file).with_extension("json");
    std::fs::write(path, sidecar.to_string()).unwrap();
}

/// `n` recordings of the clip in `dir` (room `room`), the i-th by publisher `p{i}` starting
/// `i * step` after 2026-11-25 10:00 UTC.
fn recordings_apart(dir: &Path, room: u64, n: i32, step: time::Duration) {
    let base = OffsetDateTime::parse("2026-11-25T10:00:00Z", &Rfc3339).unwrap();
    for i in 0..n {
        let file = format!("{i}-p-{i}.webm");
        let start = (base + step * i).format(&Rfc3339).unwrap();
        clip_recording(
            dir,
            &file,
            serde_json::json!({"room": room, "feed": i, "display": format!("p{i}"), "file": file,
                "started_at": start, "part": 1}),
        );
    }
}

/// The parts of a split recording (linked by `previous_part`) become one track pair, in
/// order; another publication beside them keeps its own pair.
#[test]
fn split_parts_join_into_one_track_pair() {
    require_ffmpeg();
    let scratch = Scratch::new("roomfile-parts");
    let room = scratch.path.join("5");
    std::fs::create_dir_all(&room).unwrap();
    let part = |file: &str, start: &str, n: u32, previous: Option<&str>| {
        serde_json::json!({"room": 5, "feed": 1, "display": "carol", "file": file,
            "started_at": start, "ended_at": null, "part": n, "previous_part": previous})
    };
    clip_recording(
        &room,
        "1-carol-a.webm",
        part("1-carol-a.webm", "2026-11-25T10:00:00Z", 1, None),
    );
    clip_recording(
        &room,
        "1-carol-b.webm",
        part(
            "1-carol-b.webm",
            "2026-11-25T10:00:10.010Z",
            2,
            Some("1-carol-a.webm"),
        ),
    );
    clip_recording(
        &room,
        "2-dan.webm",
        serde_json::json!({"room": 5, "feed": 2, "display": "dan", "file": "2-dan.webm",
            "started_at": "2026-11-25T10:00:05Z", "part": 1}),
    );
    let out = scratch.path.join("room.mkv");
    let text = ok(&room_command(&[
        room.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    eprintln!("{text}");
    let clip = streams(&require_clip());
    let clip_frames = |kind: &str| clip.iter().find(|s| s.kind == kind).unwrap().packets;
    let got = streams(&out);
    let titles: Vec<&str> = got.iter().map(|s| s.title.as_str()).collect();
    // The clip has its video track first.
    assert_eq!(
        titles,
        [
            "carol (video)",
            "carol (audio)",
            "dan (video)",
            "dan (audio)"
        ]
    );
    for (s, parts) in got.iter().zip([2, 2, 1, 1]) {
        assert_eq!(s.packets, parts * clip_frames(&s.kind), "{s:?}");
    }
    assert!(
        (got[2].first - 5.0 - clip[0].first).abs() <= 0.001,
        "{got:?}"
    );
    assert_eq!(decode_errors_with(&out, &["-map", "0"]).trim(), "");
    let report = check_file(&out, &CheckOptions::default());
    assert_eq!(report.status, Status::Ok, "{}", report.human());
}

/// A room directory with more recordings than the open-file limit (a room used every day):
/// merged with only the overlapping ones open (before: every input was opened at once, and
/// 30 recordings under `ulimit -n 20` failed with "Too many open files"). 30: the check tool
/// reads at most 64 tracks.
#[test]
fn more_recordings_than_open_files_are_merged() {
    require_ffmpeg();
    let scratch = Scratch::new("roomfile-many");
    let room = scratch.path.join("6");
    std::fs::create_dir_all(&room).unwrap();
    // One after the other, an hour apart: never more than one open.
    recordings_apart(&room, 6, 30, time::Duration::hours(1));
    let out = scratch.path.join("room.mkv");
    let text = ok(&room_under_ulimit_20(&room, &out));
    assert!(text.contains("30 recordings, 60 tracks"), "{text}");
    let report = check_file(&out, &CheckOptions::default());
    assert_eq!(report.status, Status::Ok, "{}", report.human());
    assert_eq!(report.tracks.len(), 60);
}

/// `room` under `ulimit -n 20`, soft and hard (so it cannot raise its own limit).
fn room_under_ulimit_20(room: &Path, out: &Path) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 20 && exec '{}' room '{}' --out '{}'",
            env!("CARGO_BIN_EXE_janus-recorder"),
            room.display(),
            out.display()
        ))
        .output()
        .unwrap()
}

/// One publication split into more parts than the open-file limit is laid out and merged
/// into one track pair (before: every part of a publication was held open while the tracks
/// were laid out, and the parts past the limit were skipped with "Too many open files").
#[test]
fn a_publication_of_more_parts_than_open_files_is_merged() {
    require_ffmpeg();
    let scratch = Scratch::new("roomfile-parts-many");
    let room = scratch.path.join("7");
    std::fs::create_dir_all(&room).unwrap();
    let base = OffsetDateTime::parse("2026-11-25T10:00:00Z", &Rfc3339).unwrap();
    for i in 0..30i64 {
        let file = format!("1-erin-{i:02}.webm");
        let previous = (i > 0).then(|| format!("1-erin-{:02}.webm", i - 1));
        let start = (base + time::Duration::seconds(11 * i))
            .format(&Rfc3339)
            .unwrap();
        clip_recording(
            &room,
            &file,
            serde_json::json!({"room": 7, "feed": 1, "display": "erin", "file": file,
                "started_at": start, "part": i + 1, "previous_part": previous}),
        );
    }
    let out = scratch.path.join("room.mkv");
    let made = room_under_ulimit_20(&room, &out);
    let text = ok(&made);
    assert!(text.contains("30 recordings, 2 tracks"), "{text}");
    let stderr = String::from_utf8_lossy(&made.stderr);
    assert!(!stderr.contains("skipped"), "{stderr}");
    let clip = streams(&require_clip());
    for s in streams(&out) {
        let per_part = clip.iter().find(|c| c.kind == s.kind).unwrap().packets;
        assert_eq!(s.packets, 30 * per_part, "{s:?}");
    }
}

/// More recordings overlapping at once than `room` may hold open: refused, saying so, and no
/// room file left (before: those past the limit were skipped with a warning and the room
/// file, missing people, was kept with exit status 0).
#[test]
fn more_overlapping_recordings_than_open_files_are_refused_clearly() {
    require_ffmpeg();
    let scratch = Scratch::new("roomfile-overlap");
    let room = scratch.path.join("8");
    std::fs::create_dir_all(&room).unwrap();
    recordings_apart(&room, 8, 30, time::Duration::ZERO);
    let out = scratch.path.join("room.mkv");
    let made = room_under_ulimit_20(&room, &out);
    let stderr = String::from_utf8_lossy(&made.stderr);
    assert_eq!(made.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("open-file limit (20)") && stderr.contains("ulimit -n"),
        "{stderr}"
    );
    assert!(!out.exists(), "a room file missing people was left");
}

/// Display names are the publisher's: terminal escapes and bidi overrides in them never
/// reach the terminal from `room`, nor the room file's track names (before: printed and
/// written raw, so `room` could retitle or clear the operator's terminal).
#[test]
fn hostile_display_names_are_escaped_and_stripped() {
    require_ffmpeg();
    let scratch = Scratch::new("roomfile-hostile");
    let room = scratch.path.join("9");
    std::fs::create_dir_all(&room).unwrap();
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2JEve\u{202e}gpj.exe";
    clip_recording(
        &room,
        "1-eve.webm",
        serde_json::json!({"room": 9, "feed": 1, "display": evil, "file": "1-eve.webm",
            "started_at": "2026-11-25T10:00:00Z", "part": 1}),
    );
    // A sidecar that is not one: its warning names the file, whose name is hostile too.
    std::fs::write(room.join("x\u{1b}[31m.json"), "{").unwrap();
    let out = scratch.path.join("room.mkv");
    let made = room_command(&[room.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let printed =
        String::from_utf8_lossy(&made.stdout).into_owned() + &String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "{printed}");
    let hazard = |c: char| (c.is_control() && c != '\n') || c == '\u{202e}';
    assert!(!printed.chars().any(hazard), "{printed:?}");
    assert!(printed.contains("x\\u{1b}[31m.json"), "{printed}");
    for s in streams(&out) {
        assert!(!s.title.chars().any(hazard), "{:?}", s.title);
        assert!(
            s.title.contains("Eve") && s.title.contains("gpj.exe"),
            "{:?}",
            s.title
        );
    }
}

/// A recording declaring 140 tracks (mkvmerge, 70 copies of the clip) brings its first
/// audio and video track into the room file, the others counted in a warning (before: every
/// one became a room track, and 16,400 of them a room file no player opens).
#[test]
fn a_recording_brings_one_audio_and_one_video_track() {
    require_ffmpeg();
    require_mkvmerge();
    let scratch = Scratch::new("roomfile-tracks");
    let room = scratch.path.join("10");
    std::fs::create_dir_all(&room).unwrap();
    let short = scratch.path.join("short.webm");
    let cut = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(require_clip())
        .args(["-t", "1", "-c", "copy"])
        .arg(&short)
        .output()
        .unwrap();
    assert!(cut.status.success(), "{cut:?}");
    let many = room.join("1-many.mkv");
    let merged = Command::new("mkvmerge")
        .arg("-q")
        .arg("-o")
        .arg(&many)
        .args(std::iter::repeat_n(&short, 70))
        .output()
        .unwrap();
    // 1: warnings only (the copies' track UIDs are made new).
    assert!(merged.status.code() <= Some(1), "{merged:?}");
    std::fs::write(
        room.join("1-many.json"),
        serde_json::json!({"room": 10, "feed": 1, "display": "many", "file": "1-many.mkv",
            "started_at": "2026-11-25T10:00:00Z", "part": 1})
        .to_string(),
    )
    .unwrap();
    let out = scratch.path.join("room.mkv");
    let made = room_command(&[room.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let text = ok(&made);
    assert!(text.contains("1 recordings, 2 tracks"), "{text}");
    let stderr = String::from_utf8_lossy(&made.stderr);
    assert!(
        stderr.contains("138 tracks past its first audio and video ignored"),
        "{stderr}"
    );
    let got = streams(&out);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(decode_errors_with(&out, &["-map", "0"]).trim(), "");
}

/// 70 recordings make 140 tracks: blocks of tracks past 127 (two-byte track numbers) land on
/// their own track, each with its recording's frames at its recording's time (the issue saw
/// a block for track 16390 written as track 6: the number was cut to its low bits).
#[test]
fn tracks_past_127_get_their_own_blocks() {
    require_ffmpeg();
    let scratch = Scratch::new("roomfile-wide");
    let room = scratch.path.join("11");
    std::fs::create_dir_all(&room).unwrap();
    recordings_apart(&room, 11, 70, time::Duration::minutes(1));
    let out = scratch.path.join("room.mkv");
    let text = ok(&room_command(&[
        room.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(text.contains("70 recordings, 140 tracks"), "{text}");
    let clip = streams(&require_clip());
    let got = streams(&out);
    assert_eq!(got.len(), 140);
    for (n, s) in got.iter().enumerate() {
        let i = n / 2;
        let of_clip = clip.iter().find(|c| c.kind == s.kind).unwrap();
        assert_eq!(s.title, format!("p{i} ({})", s.kind), "track {}", n + 1);
        assert_eq!(s.packets, of_clip.packets, "track {}: {s:?}", n + 1);
        let want = i as f64 * 60.0 + of_clip.first;
        assert!((s.first - want).abs() <= 0.002, "track {}: {s:?}", n + 1);
    }
}

/// `room --grid` over two meetings 30 days apart is refused before ffmpeg runs, saying how to
/// go on (a window or --force), exit 2 and no grid (before: a filter graph for a video of
/// 2,592,001 s was handed to ffmpeg).
#[test]
fn a_grid_over_meetings_a_month_apart_is_refused() {
    require_ffmpeg();
    let scratch = Scratch::new("roomfile-month");
    let room = scratch.path.join("12");
    std::fs::create_dir_all(&room).unwrap();
    recordings_apart(&room, 12, 2, time::Duration::days(30));
    let out = scratch.path.join("room.mkv");
    let grid = scratch.path.join("grid.mp4");
    let made = room_command(&[
        room.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--grid",
        grid.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&made.stderr);
    assert_eq!(made.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--from/--to") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(!grid.exists(), "a grid was made");
}
