//! Lip sync and one room clock, measured. Chromium publishes a video that flashes white once a
//! second and audio that beeps at the same instants (files made by ffmpeg); the page reads both
//! local tracks and logs each flash's and beep's capture time on one clock: the source's own
//! A/V offset. In the recording, flashes are found by luma (ffmpeg `signalstats`) and beeps by
//! level (`silencedetect`). Two publishers join 3 s apart: each file's A/V offset must match its
//! source's, and their flashes must land on the room clock (sidecar `started_at` + file time)
//! with the same delay after capture.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::*;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Recording's median A/V offset against the source's (issue 12's target).
const AV_TOLERANCE_MS: f64 = 15.0;
/// Two feeds' flashes on the room clock.
const ROOM_TOLERANCE_MS: f64 = 20.0;

/// A 10 s y4m with one white frame a second on black (20 fps), and a wav with a 100 ms 1 kHz
/// beep at the same instants.
fn make_media(dir: &Path) -> (PathBuf, PathBuf) {
    require_ffmpeg();
    let video = dir.join("flash.y4m");
    let audio = dir.join("beep.wav");
    for (out, args) in [
        (
            &video,
            vec![
                "-f",
                "lavfi",
                "-i",
                "color=c=black:s=320x240:r=20,drawbox=c=white:t=fill:enable='lt(mod(t,1),0.05)'",
                "-pix_fmt",
                "yuv420p",
            ],
        ),
        (
            &audio,
            vec![
                "-f",
                "lavfi",
                "-i",
                "sine=f=1000:r=48000,volume=volume=0:enable='gte(mod(t,1),0.1)'",
                "-ac",
                "1",
            ],
        ),
    ] {
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-y"])
            .args(&args)
            .args(["-t", "10"])
            .arg(out)
            .status()
            .expect("ffmpeg");
        assert!(status.success(), "ffmpeg could not make {}", out.display());
    }
    (video, audio)
}

/// The page's measurement: flash and beep capture times (wall clock, ms since the epoch).
fn source_events(p: &mut Publisher) -> (Vec<f64>, Vec<f64>) {
    p.proc.wait_for("JRT-MEASURED", Duration::from_secs(40));
    let log = p.proc.log_text();
    let after = |marker: &str| -> &str {
        let at = log
            .find(marker)
            .unwrap_or_else(|| panic!("no {marker} in the log"));
        log[at + marker.len()..].lines().next().unwrap_or("")
    };
    let list = |marker: &str| -> Vec<f64> {
        let line = after(marker);
        let json = &line[..=line.rfind(']').expect("a JSON list")];
        serde_json::from_str(json).unwrap()
    };
    let origin: f64 = after("JRT-ORIGIN ")
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let wall = |v: Vec<f64>| v.into_iter().map(|t| origin + t).collect();
    (wall(list("JRT-FLASHES ")), wall(list("JRT-BEEPS ")))
}

/// Flash onsets (s from the file's start) by luma.
fn recorded_flashes(file: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("movie={},signalstats", file.display()))
        .args([
            "-show_entries",
            "frame=pts_time:frame_tags=lavfi.signalstats.YAVG",
        ])
        .args(["-of", "csv=p=0"])
        .output()
        .expect("ffprobe");
    let mut onsets = Vec::new();
    let mut bright = false;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = line.split(',');
        let (Some(t), Some(y)) = (it.next(), it.next()) else {
            continue;
        };
        let (Ok(t), Ok(y)) = (t.parse::<f64>(), y.parse::<f64>()) else {
            continue;
        };
        let now = y > 128.0;
        if now && !bright {
            onsets.push(t);
        }
        bright = now;
    }
    onsets
}

/// Beep onsets (s from the file's start): where silence ends.
fn recorded_beeps(file: &Path) -> Vec<f64> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "info", "-i"])
        .arg(file)
        .args([
            "-map",
            "0:a",
            "-af",
            "silencedetect=noise=-30dB:duration=0.05",
        ])
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.split("silence_end: ").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The median of `b - nearest a` (ms) over every `b` that has an `a` within half a second.
fn median_offset(a: &[f64], b: &[f64]) -> Option<f64> {
    let mut d: Vec<f64> = b
        .iter()
        .filter_map(|&y| {
            a.iter()
                .map(|&x| y - x)
                .min_by(|p, q| p.abs().total_cmp(&q.abs()))
        })
        .filter(|v| v.abs() < 500.0)
        .collect();
    d.sort_by(f64::total_cmp);
    d.get(d.len() / 2).copied()
}

fn ms(seconds: &[f64]) -> Vec<f64> {
    seconds.iter().map(|s| s * 1000.0).collect()
}

struct Measured {
    display: String,
    source_av_ms: f64,
    recorded_av_ms: f64,
    /// Janus's own recording of the feed (audio and video files from janus-pp-rec, each from
    /// its own time zero, as a mux of the two would put them).
    janus_av_ms: Option<f64>,
    /// Median delay from a flash's capture to its place on the room clock.
    room_latency_ms: f64,
    clocks: (Value, Value),
}

/// Janus's own recording of `feed` (`record = true`), converted by janus-pp-rec: its A/V
/// offset with both files starting at zero.
fn janus_av_ms(rec_dir: &Path, feed: &str, dir: &Path) -> Option<f64> {
    let mjr = |kind: &str| {
        files_under(rec_dir).into_iter().find(|f| {
            let name = f.to_string_lossy();
            name.ends_with(".mjr") && name.contains(&format!("-{feed}-")) && name.contains(kind)
        })
    };
    let convert = |mjr: PathBuf, ext: &str| -> PathBuf {
        let out = dir.join(format!("janus-{feed}.{ext}"));
        let ok = Command::new("janus-pp-rec")
            .arg(&mjr)
            .arg(&out)
            .output()
            .expect("janus-pp-rec")
            .status
            .success();
        assert!(ok, "janus-pp-rec {}", mjr.display());
        out
    };
    let video = convert(mjr("-video-")?, "webm");
    let audio = convert(mjr("-audio-")?, "opus");
    median_offset(&ms(&recorded_flashes(&video)), &ms(&recorded_beeps(&audio)))
}

fn measure(out: &Path, p: &mut Publisher, rec_dir: &Path, dir: &Path) -> Measured {
    let display = p.spec.display.clone();
    let (flashes, beeps) = source_events(p);
    assert!(
        flashes.len() >= 8 && beeps.len() >= 8,
        "{display}: {flashes:?} {beeps:?}"
    );
    let source_av_ms = median_offset(&flashes, &beeps).expect("source offsets");
    let recs = recordings_of(out, &display);
    assert_eq!(recs.len(), 1, "{display}: {recs:?}");
    let (file, sidecar) = &recs[0];
    let rec_flashes = recorded_flashes(file);
    let rec_beeps = recorded_beeps(file);
    assert!(
        rec_flashes.len() >= 8 && rec_beeps.len() >= 8,
        "{display}: flashes {rec_flashes:?} beeps {rec_beeps:?}"
    );
    let recorded_av_ms = median_offset(&ms(&rec_flashes), &ms(&rec_beeps)).expect("offsets");
    let started = OffsetDateTime::parse(sidecar["started_at"].as_str().unwrap(), &Rfc3339)
        .expect("started_at is RFC 3339");
    let zero_ms = started.unix_timestamp_nanos() as f64 / 1e6;
    let on_room_clock: Vec<f64> = rec_flashes.iter().map(|t| zero_ms + t * 1000.0).collect();
    let room_latency_ms = median_offset(&flashes, &on_room_clock).expect("room offsets");
    let feed = sidecar["feed"].to_string();
    Measured {
        janus_av_ms: janus_av_ms(rec_dir, feed.trim_matches('"'), dir),
        display,
        source_av_ms,
        recorded_av_ms,
        room_latency_ms,
        clocks: (
            sidecar["audio_clock"].clone(),
            sidecar["video_clock"].clone(),
        ),
    }
}

/// Two Chromium publishers of the flash-and-beep media, 3 s apart, recorded by a daemon with
/// `janus_extra` in its `[janus]` table: each feed's measures and the report, printed; the
/// daemon and Janus still running (the directory kept in `scratch`).
fn two_publishers_recorded(
    scratch: &Scratch,
    tag: &str,
    room: u64,
    janus_extra: &str,
) -> (Daemon, Netns, Janus, Vec<Measured>, String) {
    require_tools();
    let dir = scratch.path.clone();
    let (video, audio) = make_media(&dir);
    let ns = Netns::create(tag);
    let janus = Janus::start(
        &ns,
        &dir,
        &[RoomSpec {
            record: true,
            ..RoomSpec::new(room, "vp8")
        }],
    );
    let page = PageServer::start(&ns, &dir);
    let out = dir.join("recordings");
    let config = recorder_config(&out, "", &rooms_toml(&[room])).replacen(
        "[janus]\n",
        &format!("[janus]\n{janus_extra}"),
        1,
    );
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    let publisher = |display: &str| {
        let mut spec = PublisherSpec {
            secs: Some(16),
            media_files: Some((video.clone(), audio.clone())),
            ..PublisherSpec::new(room, display)
        };
        spec.query.push(("measure", "14".into()));
        Publisher::start(&ns, &page, &dir, spec)
    };
    let mut first = publisher("first");
    first.wait_published(1);
    std::thread::sleep(Duration::from_secs(3));
    let mut second = publisher("second");
    second.wait_published(1);
    for p in [&mut first, &mut second] {
        p.wait_ended(1, Duration::from_secs(60));
    }
    daemon
        .proc
        .wait_for_nth("recording finished", 2, Duration::from_secs(15));

    let results: Vec<Measured> = [&mut first, &mut second]
        .into_iter()
        .map(|p| measure(&out, p, &janus.rec_dir, &dir))
        .collect();
    let report: Vec<String> = results
        .iter()
        .map(|m| {
            format!(
                "{}: source A/V {:+.1} ms, recording {:+.1} ms (error {:+.1}), Janus's own \
                 recording {} (error {}), flash to room clock {:.1} ms, clocks {}/{}",
                m.display,
                m.source_av_ms,
                m.recorded_av_ms,
                m.recorded_av_ms - m.source_av_ms,
                m.janus_av_ms
                    .map_or("n/a".into(), |j| format!("{j:+.1} ms")),
                m.janus_av_ms
                    .map_or("n/a".into(), |j| format!("{:+.1} ms", j - m.source_av_ms)),
                m.room_latency_ms,
                m.clocks.0,
                m.clocks.1
            )
        })
        .collect();
    let report = report.join("\n");
    eprintln!("{report}");
    (daemon, ns, janus, results, report)
}

/// Each file's A/V offset is its source's, its video placed by `clock`, and the two feeds'
/// flashes agree on the room clock.
fn assert_in_sync(results: &[Measured], report: &str, clock: &str) {
    for m in results {
        assert!(
            (m.recorded_av_ms - m.source_av_ms).abs() <= AV_TOLERANCE_MS,
            "A/V offset off the source's:\n{report}"
        );
        assert_eq!(m.clocks.1, clock, "{report}");
    }
    assert!(
        (results[0].room_latency_ms - results[1].room_latency_ms).abs() <= ROOM_TOLERANCE_MS,
        "the two feeds' flashes disagree on the room clock:\n{report}"
    );
}

#[test]
fn lip_sync_and_the_room_clock_match_the_sources() {
    let scratch = Scratch::new("lipsync");
    let (mut daemon, _ns, _janus, results, report) =
        two_publishers_recorded(&scratch, "lipsync", 1701, "");
    assert_in_sync(&results, &report, "sender-report");
    let out = scratch.path.join("recordings");

    // The room manifest lists both recordings as their sidecars say, and the watch's end.
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let manifests: Vec<PathBuf> = files_under(&out)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".room.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "one watch: {manifests:?}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(&manifests[0]).unwrap()).unwrap();
    assert_eq!(manifest["end_reason"], "shutdown", "{manifest:#}");
    assert_eq!(manifest["janus"], "ws://127.0.0.1:8188");
    let listed = manifest["recordings"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{manifest:#}");
    for name in ["first", "second"] {
        let (_, sidecar) = &recordings_of(&out, name)[0];
        let entry = listed.iter().find(|r| r["display"] == name).unwrap();
        assert_eq!(entry, sidecar, "the manifest's entry is the sidecar");
    }
}

/// The same from RTP forwarders (`[janus] rtp_forward`): no sender reports come, so both
/// feed is placed by arrival, and lip sync and the room clock hold as well.
#[test]
fn forwarded_feeds_keep_lip_sync_on_the_arrival_clock() {
    let scratch = Scratch::new("lipsync-forward");
    let (_daemon, _ns, _janus, results, report) = two_publishers_recorded(
        &scratch,
        "lipsyncfw",
        1702,
        "rtp_forward = { listen = \"127.0.0.1:0\" }\n",
    );
    assert_in_sync(&results, &report, "arrival");
}
