//! The writer fed with real VP8, VP9 and Opus frames (encoded by ffmpeg at test time), its
//! output read back with webm-iterable and checked with ffprobe and ffmpeg.

use super::*;
use crate::webm::vpx;
use std::process::Command;
use webm_iterable::WebmIterator;

#[derive(Debug, Clone)]
struct Frame {
    kind: MediaKind,
    ms: u64,
    key: bool,
    data: Vec<u8>,
}

fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    assert!(found, "{name} not found: run `apt-get install -y ffmpeg`");
    Command::new(name)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("jr-writer-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Encodes a test clip with ffmpeg and returns its frames in file order, as str0m would
/// hand them over (H.26x in Annex B, read back through the synthetic publisher's clip reader).
fn source(dir: &Path, video: Option<&str>, audio: bool, secs: u32) -> Vec<Frame> {
    let matroska = matches!(video, Some("h264" | "h265"));
    let out = dir.join(if matroska {
        "source.mkv"
    } else {
        "source.webm"
    });
    let mut cmd = tool("ffmpeg");
    cmd.args(["-nostdin", "-v", "error", "-y"]);
    if video.is_some() {
        cmd.args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=30"]);
    }
    if audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    cmd.args(["-t", &secs.to_string()]);
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
            "-b:v",
            "300k",
        ]),
        Some("h264") => cmd.args([
            "-c:v",
            "libx264",
            "-profile:v",
            "high",
            "-bf",
            "0",
            "-g",
            "30",
            "-keyint_min",
            "30",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "300k",
        ]),
        Some("h265") => cmd.args([
            "-c:v",
            "libx265",
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            "300k",
            "-x265-params",
            "log-level=error:bframes=0:keyint=30:min-keyint=30:scenecut=0",
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
            "-b:v",
            "300k",
        ]),
        Some(_) => cmd.args(["-c:v", "libvpx", "-g", "30", "-b:v", "300k"]),
        None => cmd.arg("-vn"),
    };
    if audio {
        cmd.args(["-c:a", "libopus", "-ac", "2"]);
    }
    let status = cmd.arg(&out).status().expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make the test clip");
    if matches!(video, Some("h264" | "h265" | "av1")) {
        frames_from_clip(&out)
    } else {
        frames_of(&out)
    }
}

/// The frames of a clip as the synthetic publisher sends them (str0m's form), in time order.
fn frames_from_clip(path: &Path) -> Vec<Frame> {
    let clip = crate::publish::clip::Clip::load(path).unwrap();
    let mut frames: Vec<Frame> = [
        (&clip.audio, MediaKind::Audio),
        (&clip.video, MediaKind::Video),
    ]
    .into_iter()
    .filter_map(|(t, kind)| t.as_ref().map(|t| (t, kind)))
    .flat_map(|(t, kind)| {
        t.frames.iter().map(move |f| Frame {
            kind,
            ms: f.at.as_millis() as u64,
            key: f.keyframe,
            data: f.data.clone(),
        })
    })
    .collect();
    frames.sort_by_key(|f| (f.ms, f.kind == MediaKind::Audio));
    frames
}

/// The frames of a WebM file, in file order.
fn frames_of(path: &Path) -> Vec<Frame> {
    let parsed = read_back(path);
    parsed
        .blocks
        .into_iter()
        .map(|b| Frame {
            kind: parsed.kinds[&b.track],
            ms: b.ms,
            key: b.key,
            data: b.data,
        })
        .collect()
}

struct Block {
    track: u64,
    ms: u64,
    key: bool,
    data: Vec<u8>,
}

#[derive(Default)]
struct Parsed {
    kinds: std::collections::HashMap<u64, MediaKind>,
    codecs: Vec<String>,
    /// Each track's CodecPrivate, in track order.
    codec_private: Vec<Vec<u8>>,
    size: Option<(u64, u64)>,
    duration: Option<f64>,
    clusters: Vec<u64>,
    /// Each cluster's first block: (track, keyframe).
    cluster_first: Vec<(u64, bool)>,
    codec_delay: Option<u64>,
    seek_pre_roll: Option<u64>,
    cue_points: usize,
    blocks: Vec<Block>,
}

/// Reads a WebM file with webm-iterable; panics on a block before its cluster's timestamp.
fn read_back(path: &Path) -> Parsed {
    let file = std::fs::File::open(path).unwrap();
    let mut p = Parsed::default();
    let mut cluster_ms = 0;
    let mut entry: Option<(u64, u64)> = None; // (number, type)
    for tag in WebmIterator::new(file, &[]) {
        match tag.unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            MatroskaSpec::TrackNumber(n) => entry = Some((n, entry.map_or(0, |e| e.1))),
            MatroskaSpec::TrackType(t) => entry = Some((entry.map_or(0, |e| e.0), t)),
            MatroskaSpec::TrackEntry(Master::End) => {
                let (n, t) = entry.take().unwrap();
                p.kinds.insert(
                    n,
                    if t == 2 {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    },
                );
            }
            MatroskaSpec::CodecID(c) => p.codecs.push(c),
            MatroskaSpec::CodecPrivate(c) => p.codec_private.push(c),
            MatroskaSpec::PixelWidth(w) => p.size = Some((w, p.size.map_or(0, |s| s.1))),
            MatroskaSpec::PixelHeight(h) => p.size = Some((p.size.map_or(0, |s| s.0), h)),
            MatroskaSpec::Duration(d) => p.duration = Some(d),
            MatroskaSpec::CodecDelay(d) => p.codec_delay = Some(d),
            MatroskaSpec::SeekPreRoll(d) => p.seek_pre_roll = Some(d),
            MatroskaSpec::Timestamp(t) => {
                cluster_ms = t;
                p.clusters.push(t);
            }
            MatroskaSpec::CuePoint(Master::Start) => p.cue_points += 1,
            tag @ MatroskaSpec::SimpleBlock(_) => {
                let b = SimpleBlock::try_from(&tag).unwrap();
                assert!(
                    b.timestamp >= 0,
                    "{}: block offset {} before its cluster at {cluster_ms}",
                    path.display(),
                    b.timestamp
                );
                if p.cluster_first.len() < p.clusters.len() {
                    p.cluster_first.push((b.track, b.keyframe));
                }
                p.blocks.push(Block {
                    track: b.track,
                    ms: (cluster_ms as i64 + i64::from(b.timestamp)) as u64,
                    key: b.keyframe,
                    data: b.raw_frame_data().to_vec(),
                });
            }
            _ => {}
        }
    }
    p
}

fn setup_of(video: Option<Codec>, audio: bool) -> TrackSetup {
    TrackSetup {
        audio: audio.then_some(Codec::Opus),
        video,
    }
}

/// Writes one frame; every 50th frame (about once a second, as the feed does) flushes too.
fn put(w: &mut WebmWriter, i: usize, f: &Frame) -> Result<(), WriteError> {
    let ts = Duration::from_millis(f.ms);
    match f.kind {
        MediaKind::Audio => w.write_audio(ts, &f.data)?,
        MediaKind::Video => w.write_video(ts, f.key, &f.data)?,
    }
    if i % 50 == 49 { w.flush() } else { Ok(()) }
}

/// Creates a writer and writes `frames` in the given order, flushing now and then and at the
/// end.
fn writer_with(path: &Path, setup: TrackSetup, frames: &[Frame]) -> WebmWriter {
    let mut w = WebmWriter::create(path, setup).unwrap();
    for (i, f) in frames.iter().enumerate() {
        put(&mut w, i, f).unwrap();
    }
    w.flush().unwrap();
    w
}

/// Writes `frames` in the given order, finalizes, returns the summary.
fn write(path: &Path, setup: TrackSetup, frames: &[Frame]) -> WriteSummary {
    writer_with(path, setup, frames).finalize().unwrap()
}

/// What ffprobe sees in a file.
#[derive(Debug)]
struct Probe {
    duration: f64,
    /// (codec name, packets read, width, height) per stream.
    streams: Vec<(String, u64, u64, u64)>,
}

impl Probe {
    fn packets(&self, codecs: &[&str]) -> u64 {
        self.streams
            .iter()
            .filter(|s| codecs.contains(&s.0.as_str()))
            .map(|s| s.1)
            .sum()
    }
}

fn probe(path: &Path) -> Probe {
    let out = tool("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_name,nb_read_packets,width,height:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap().to_string(),
                // Absent for a track without packets.
                s["nb_read_packets"]
                    .as_str()
                    .map_or(0, |n| n.parse().unwrap()),
                s["width"].as_u64().unwrap_or(0),
                s["height"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let duration = v["format"]["duration"]
        .as_str()
        .map_or(f64::NAN, |d| d.parse().unwrap());
    Probe { duration, streams }
}

/// ffprobe's packet times (ms) of the first stream of `kind` ("a" or "v"), in file order.
fn packet_times(path: &Path, kind: &str) -> Vec<u64> {
    let out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", kind])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "ffprobe failed on {}", path.display());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| (l.trim().parse::<f64>().unwrap() * 1000.0).round() as u64)
        .collect()
}

/// What ffmpeg prints at level `error` while decoding every frame (empty = clean).
fn decode_errors(path: &Path) -> String {
    let out = tool("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        // Keep the file's 1 ms time base: at the nominal frame rate's time base, two frames
        // with capture jitter can round to one tick and the null muxer reports that as an error.
        .args(["-enc_time_base:v", "-1", "-f", "null", "-"])
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str("ffmpeg failed");
    }
    text
}

/// The crate's own check tool (`janus-recorder check`) finds nothing wrong.
fn assert_checks_clean(path: &Path) {
    let report = crate::check::check_file(path, &Default::default());
    assert_eq!(
        report.status,
        crate::check::Status::Ok,
        "{}",
        report.human()
    );
}

/// ffmpeg decodes a file that ends inside a block, and says no more than that it ended early
/// (nothing at all if the cut falls between blocks).
fn assert_only_cut_short(path: &Path) {
    let errors = decode_errors(path);
    assert!(
        errors.lines().all(|l| l.contains("File ended prematurely")),
        "{}: {errors}",
        path.display()
    );
}

fn kind_of(ffprobe_kind: &str) -> MediaKind {
    match ffprobe_kind {
        "a" => MediaKind::Audio,
        _ => MediaKind::Video,
    }
}

fn count(frames: &[Frame], kind: MediaKind) -> u64 {
    frames.iter().filter(|f| f.kind == kind).count() as u64
}

/// The full round trip for one codec combination.
fn round_trip(name: &str, video: Option<Codec>, audio: bool) {
    let dir = scratch(name);
    let vname = video.map(|c| c.to_string());
    let frames = source(&dir, vname.as_deref(), audio, 4);
    let setup = setup_of(video, audio);
    let out = dir.join(format!("out.{}", setup.container().extension()));
    let summary = write(&out, setup, &frames);
    assert_eq!(summary.audio_frames, count(&frames, MediaKind::Audio));
    assert_eq!(summary.video_frames, count(&frames, MediaKind::Video));
    assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());

    let back = read_back(&out);
    let mut want_codecs = Vec::new();
    if audio {
        want_codecs.push("A_OPUS".to_string());
        assert_eq!(back.codec_private[0], opus_head());
    }
    if let Some(v) = video {
        want_codecs.push(v.matroska_id().to_string());
        assert_eq!(back.size, Some((320, 240)));
    }
    assert_eq!(back.codecs, want_codecs);
    assert_eq!(back.blocks.len(), frames.len());
    if video.is_some() {
        let first_video = back
            .blocks
            .iter()
            .find(|b| back.kinds[&b.track] == MediaKind::Video)
            .unwrap();
        assert!(first_video.key, "first video block is not a keyframe");
    }
    // Blocks in time order, clusters no longer than about 2 s.
    assert!(back.blocks.windows(2).all(|w| w[0].ms <= w[1].ms));
    for pair in back.clusters.windows(2) {
        assert!(
            pair[1] - pair[0] <= MAX_CLUSTER_MS + 40,
            "{:?}",
            back.clusters
        );
    }
    let keyframes = back
        .blocks
        .iter()
        .filter(|b| back.kinds[&b.track] == MediaKind::Video && b.key)
        .count();
    if video.is_some() {
        // The clip has a keyframe every second: each one opens a cluster (but the first,
        // which audio may open a few ms earlier), and only they do; each has a cue.
        assert_eq!(keyframes, 4);
        assert!(
            back.cluster_first[1..]
                .iter()
                .all(|&(t, key)| key && back.kinds[&t] == MediaKind::Video),
            "{:?}",
            back.cluster_first
        );
        assert_eq!(back.clusters.len(), keyframes);
        assert_eq!(back.cue_points, keyframes);
    } else {
        assert_eq!(back.cue_points, back.clusters.len());
    }
    if audio {
        assert_eq!(back.codec_delay, Some(0));
        assert_eq!(back.seek_pre_roll, Some(80_000_000));
    }
    let duration = back.duration.expect("Duration written");
    assert!(
        (duration - summary.duration.as_millis() as f64).abs() < 1.0,
        "{duration} vs {summary:?}"
    );
    // One frame: 20 ms of Opus, 33 ms of video.
    assert!((duration - 4000.0).abs() <= 34.0, "duration {duration} ms");

    let probed = probe(&out);
    assert!(
        (probed.duration - 4.0).abs() <= 0.034,
        "ffprobe duration {}",
        probed.duration
    );
    let mut want_streams = Vec::new();
    if audio {
        want_streams.push(("opus".to_string(), count(&frames, MediaKind::Audio), 0, 0));
    }
    if let Some(v) = video {
        // ffprobe's names; ours follow Janus's.
        let name = if v == Codec::H265 {
            "hevc".into()
        } else {
            v.to_string()
        };
        want_streams.push((name, count(&frames, MediaKind::Video), 320, 240));
    }
    assert_eq!(probed.streams, want_streams);
    assert_eq!(decode_errors(&out), "");
    assert_checks_clean(&out);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn h264_and_opus_into_matroska() {
    round_trip("h264", Some(Codec::H264), true);
}

#[test]
fn h265_and_opus_into_matroska() {
    round_trip("h265", Some(Codec::H265), true);
}

#[test]
fn av1_and_opus() {
    round_trip("av1", Some(Codec::Av1), true);
}

#[test]
fn vp8_and_opus() {
    round_trip("vp8", Some(Codec::Vp8), true);
}

#[test]
fn vp9_and_opus() {
    round_trip("vp9", Some(Codec::Vp9), true);
}

#[test]
fn audio_only() {
    round_trip("audio", None, true);
}

#[test]
fn video_only() {
    round_trip("video", Some(Codec::Vp8), false);
}

#[test]
fn frames_out_of_order_across_tracks_come_out_in_order() {
    let dir = scratch("order");
    let mut frames = source(&dir, Some("vp8"), true, 3);
    // Video arrives up to 80 ms ahead of audio with earlier timestamps.
    frames.sort_by_key(|f| match f.kind {
        MediaKind::Video => f.ms.saturating_sub(80),
        MediaKind::Audio => f.ms,
    });
    let out = dir.join("out.webm");
    write(&out, setup_of(Some(Codec::Vp8), true), &frames);
    let back = read_back(&out);
    assert_eq!(back.blocks.len(), frames.len());
    assert!(back.blocks.windows(2).all(|w| w[0].ms <= w[1].ms));
    // Every frame kept its own time (none had to be moved).
    let mut want: Vec<u64> = frames.iter().map(|f| f.ms).collect();
    want.sort();
    let got: Vec<u64> = back.blocks.iter().map(|b| b.ms).collect();
    assert_eq!(got, want);
    assert_eq!(decode_errors(&out), "");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_lagging_track_keeps_its_own_times() {
    let dir = scratch("lag");
    let mut frames = source(&dir, Some("vp8"), true, 6);
    // Audio arrives 400 ms behind video (an overloaded sender), then 1.5 s, then 4 s behind:
    // the first fits the muxing queue, the others do not (and flushes drain it); either way
    // no timestamp is altered, and no block lies before its cluster (read_back checks).
    frames.sort_by_key(|f| match f.kind {
        MediaKind::Video => f.ms,
        MediaKind::Audio if f.ms < 2_000 => f.ms + 400,
        MediaKind::Audio if f.ms < 4_000 => f.ms + 1_500,
        MediaKind::Audio => f.ms + 4_000,
    });
    let out = dir.join("out.webm");
    write(&out, setup_of(Some(Codec::Vp8), true), &frames);
    let back = read_back(&out);
    for kind in [MediaKind::Audio, MediaKind::Video] {
        let mut want: Vec<u64> = frames
            .iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.ms)
            .collect();
        want.sort();
        let got: Vec<u64> = back
            .blocks
            .iter()
            .filter(|b| back.kinds[&b.track] == kind)
            .map(|b| b.ms)
            .collect();
        assert_eq!(got, want, "{kind:?} times changed");
    }
    assert_eq!(decode_errors(&out), "");
    assert_checks_clean(&out);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_pause_stays_on_the_timeline() {
    let dir = scratch("pause");
    let clip = source(&dir, Some("vp8"), true, 2);
    // 2 s of media, 10 s of nothing, the same 2 s again (starting with its keyframe).
    let mut frames = clip.clone();
    frames.extend(clip.iter().map(|f| Frame {
        ms: f.ms + 12_000,
        ..f.clone()
    }));
    let out = dir.join("out.webm");
    let summary = write(&out, setup_of(Some(Codec::Vp8), true), &frames);
    assert!(
        (summary.duration.as_secs_f64() - 14.0).abs() < 0.05,
        "{summary:?}"
    );
    let probed = probe(&out).duration;
    assert!((probed - 14.0).abs() < 0.05, "ffprobe duration {probed}");
    // ffmpeg sees the jump in both tracks' packet times.
    for kind in ["a", "v"] {
        let times = packet_times(&out, kind);
        assert_eq!(
            times.len(),
            2 * clip.iter().filter(|f| f.kind == kind_of(kind)).count()
        );
        let jump = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(
            (9_900..=10_100).contains(&jump),
            "{kind}: largest step {jump} ms"
        );
    }
    let back = read_back(&out);
    let gap = back
        .blocks
        .windows(2)
        .map(|w| w[1].ms - w[0].ms)
        .max()
        .unwrap();
    assert!(gap >= 9_900, "the pause was squeezed: largest gap {gap} ms");
    assert_eq!(decode_errors(&out), "");
    std::fs::remove_dir_all(dir).unwrap();
}

/// 5 s of VP8 and Opus written to `out.webm` in a new scratch directory, then the process
/// "dies": nothing after the last flush happens (no finalize, no Drop).
fn crashed(name: &str) -> (PathBuf, Vec<Frame>, PathBuf) {
    let dir = scratch(name);
    let frames = source(&dir, Some("vp8"), true, 5);
    let out = dir.join("out.webm");
    std::mem::forget(writer_with(&out, setup_of(Some(Codec::Vp8), true), &frames));
    (dir, frames, out)
}

#[test]
fn a_crash_leaves_a_playable_file() {
    let (dir, frames, out) = crashed("crash");

    // flush() kept only the last FLUSH_HOLD_MS in the muxing queue: all else is in the file
    // (4.8 s of 5), and it all decodes.
    let end = frames.iter().map(|f| f.ms).max().unwrap();
    let before = |kind| {
        frames
            .iter()
            .filter(|f| f.kind == kind && f.ms + FLUSH_HOLD_MS < end)
            .count() as u64
    };
    let probed = probe(&out);
    assert!(
        probed.packets(&["opus"]) >= before(MediaKind::Audio),
        "{probed:?}"
    );
    assert!(
        probed.packets(&["vp8"]) >= before(MediaKind::Video),
        "{probed:?}"
    );
    for kind in ["a", "v"] {
        let last = packet_times(&out, kind).last().copied();
        assert!(
            last.is_some_and(|t| t >= 4_700),
            "{kind}: last packet at {last:?}"
        );
    }
    assert_eq!(decode_errors(&out), "");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_file_cut_anywhere_still_plays_up_to_the_cut() {
    let (dir, _, out) = crashed("cut");
    let whole = std::fs::read(&out).unwrap();
    // A crash that got part of a write to disk: the file ends inside a block.
    for fraction in [0.3, 0.55, 0.9] {
        let cut = dir.join(format!("cut-{fraction}.webm"));
        std::fs::write(&cut, &whole[..(whole.len() as f64 * fraction) as usize]).unwrap();
        let probed = probe(&cut);
        let want = (5_000.0 * fraction * 0.8) as u64;
        assert!(
            packet_times(&cut, "a").last().is_some_and(|&t| t >= want),
            "{fraction}: {probed:?}"
        );
        assert_only_cut_short(&cut);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn dropping_the_writer_finalizes_the_file() {
    let dir = scratch("drop");
    let frames = source(&dir, None, true, 2);
    let out = dir.join("out.webm");
    drop(writer_with(&out, setup_of(None, true), &frames));
    let back = read_back(&out);
    assert_eq!(back.blocks.len(), frames.len());
    assert!(back.duration.is_some_and(|d| (d - 2000.0).abs() <= 20.0));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_late_first_keyframe_still_gets_the_right_frame_size() {
    let dir = scratch("late");
    let clip = source(&dir, Some("vp8"), true, 4);
    // Video starts 3 s after audio: the header goes out with a placeholder size first.
    let frames: Vec<Frame> = clip
        .iter()
        .filter(|f| f.kind == MediaKind::Audio || f.ms >= 3_000)
        .cloned()
        .collect();
    let first_video = frames
        .iter()
        .position(|f| f.kind == MediaKind::Video)
        .unwrap();
    let mut frames = frames;
    frames[first_video].key = true; // the clip has a keyframe every second (-g 30)
    assert!(vpx::frame_size(Codec::Vp8, &frames[first_video].data).is_some());
    let out = dir.join("out.webm");
    let w = writer_with(&out, setup_of(Some(Codec::Vp8), true), &frames);
    // Had the process died now, the file would have the placeholder size, and still decode.
    let crashed = dir.join("crashed.webm");
    std::fs::copy(&out, &crashed).unwrap();
    assert_eq!(read_back(&crashed).size, Some(PLACEHOLDER_SIZE_U64));
    assert_eq!(
        probe(&crashed).packets(&["vp8"]),
        count(&frames, MediaKind::Video)
    );
    assert_eq!(decode_errors(&crashed), "");

    w.finalize().unwrap();
    assert_eq!(read_back(&out).size, Some((320, 240)));
    assert_eq!(decode_errors(&out), "");
    std::fs::remove_dir_all(dir).unwrap();
}

const PLACEHOLDER_SIZE_U64: (u64, u64) = (PLACEHOLDER_SIZE.0 as u64, PLACEHOLDER_SIZE.1 as u64);

#[test]
fn an_existing_file_is_never_overwritten() {
    let dir = scratch("exists");
    let out = dir.join("out.webm");
    std::fs::write(&out, b"keep me").unwrap();
    let err = WebmWriter::create(&out, setup_of(None, true))
        .err()
        .unwrap();
    assert!(err.to_string().contains(&*out.to_string_lossy()), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_frame_before_its_tracks_previous_one_keeps_its_place_in_the_track() {
    let dir = scratch("backwards");
    let mut frames = source(&dir, Some("vp8"), true, 2);
    // One video frame (not a keyframe) claims a time 50 ms before the previous video frame.
    let videos: Vec<usize> = (0..frames.len())
        .filter(|&i| frames[i].kind == MediaKind::Video)
        .collect();
    let (prev, odd) = (videos[9], videos[10]);
    assert!(!frames[odd].key);
    frames[odd].ms = frames[prev].ms - 50;
    let out = dir.join("out.webm");
    write(&out, setup_of(Some(Codec::Vp8), true), &frames);
    let back = read_back(&out);
    let got: Vec<(&[u8], u64)> = back
        .blocks
        .iter()
        .filter(|b| back.kinds[&b.track] == MediaKind::Video)
        .map(|b| (&b.data[..], b.ms))
        .collect();
    // The same frames in the same order (a decoder needs that order); the odd one 1 ms after
    // the previous frame.
    let want: Vec<(&[u8], u64)> = videos
        .iter()
        .map(|&i| {
            let ms = if i == odd {
                frames[prev].ms + 1
            } else {
                frames[i].ms
            };
            (&frames[i].data[..], ms)
        })
        .collect();
    assert!(got == want, "video frames reordered or retimed");
    assert_eq!(decode_errors(&out), "");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Size of the filesystem the write-error test fills.
const SMALL_DISK: u64 = 64 * 1024;

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A real full disk: the file goes onto a 64 KiB tmpfs (the tests run as root, as the
/// end-to-end ones do). The error names the file and the cause, the writer refuses further
/// work, and what was written before the error plays.
#[test]
fn a_write_error_names_the_file_and_the_cause() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test mounts a small tmpfs and must run as root"
    );
    let dir = scratch("write-error");
    let frames = source(&dir, Some("vp8"), true, 5);
    assert!(frames.iter().map(|f| f.data.len() as u64).sum::<u64>() > 2 * SMALL_DISK);
    let disk = dir.join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={SMALL_DISK}"), "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap();
    assert!(status.success(), "cannot mount a tmpfs");
    let mount = Mount(disk.clone());

    let out = disk.join("out.webm");
    let mut w = WebmWriter::create(&out, setup_of(Some(Codec::Vp8), true)).unwrap();
    let mut first_error = None;
    for (i, f) in frames.iter().enumerate() {
        if let Err(e) = put(&mut w, i, f) {
            first_error.get_or_insert(e.to_string());
        }
    }
    let first = first_error.expect("no write error on a full disk");
    assert_eq!(
        first,
        format!(
            "writing {}: No space left on device (os error 28)",
            out.display()
        )
    );
    // The writer refuses further work, with the path and the original cause.
    let again = w.write_audio(Duration::from_secs(9), &frames[0].data);
    let again = again.unwrap_err().to_string();
    assert!(again.contains(&*out.to_string_lossy()) && again.contains("No space left"));
    assert!(w.finalize().is_err());

    // What was written before the error plays.
    let kept = dir.join("kept.webm");
    std::fs::copy(&out, &kept).unwrap();
    drop(mount);
    assert!(std::fs::metadata(&kept).unwrap().len() <= SMALL_DISK);
    assert!(probe(&kept).packets(&["opus"]) > 25, "{:?}", probe(&kept));
    assert_only_cut_short(&kept);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A small seeded generator (xorshift64*), so a failing sequence can be made again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One file of a random sequence: where it is and what the writer says it holds.
struct Written {
    path: PathBuf,
    summary: WriteSummary,
}

/// Real frames of `source` in a random sequence, as a feed could hand them over: some dropped,
/// VP8/VP9 keyframe flags flipped, times equal to the previous frame's, going back, or jumping
/// ahead by up to a month, flushes, and split points (the next video keyframe, or any frame
/// without video, opens a new part whose time zero it is, as `split_after` does). Video starts
/// on a keyframe, as the feed's gate makes it.
fn random_sequence(
    rng: &mut Rng,
    dir: &Path,
    name: &str,
    setup: TrackSetup,
    source: &[Frame],
) -> Vec<Written> {
    let ext = setup.container().extension();
    let mut parts = Vec::new();
    let open = |parts: &Vec<Written>| {
        let path = dir.join(format!("{name}-{}.{ext}", parts.len() + 1));
        (WebmWriter::create(&path, setup).unwrap(), path)
    };
    let (mut writer, mut path) = open(&parts);
    let (mut shift, mut previous, mut offset) = (0i64, 0u64, 0u64);
    let (mut split_due, mut seen_key) = (false, false);
    for f in source {
        if rng.chance(5) {
            continue;
        }
        match rng.below(100) {
            0..=1 => shift += rng.below(3_600_000) as i64,
            2 => shift += rng.below(30 * 86_400_000) as i64,
            3..=5 => shift -= rng.below(500) as i64,
            _ => {}
        }
        let mut ms = (f.ms as i64 + shift).max(0) as u64;
        if rng.chance(5) {
            ms = previous;
        }
        previous = ms;
        let mut key = f.key;
        if f.kind == MediaKind::Video
            && matches!(setup.video, Some(Codec::Vp8 | Codec::Vp9))
            && rng.chance(5)
        {
            key = !key;
        }
        split_due |= rng.chance(3);
        let video = f.kind == MediaKind::Video;
        if split_due && (video && key || setup.video.is_none()) {
            let summary = writer.finalize().unwrap();
            parts.push(Written { path, summary });
            (writer, path) = open(&parts);
            offset = ms;
            split_due = false;
        }
        // The feed's video gate: a file's video starts on a keyframe.
        seen_key |= video && key;
        if video && !seen_key {
            continue;
        }
        let ts = Duration::from_millis(ms.saturating_sub(offset));
        match f.kind {
            MediaKind::Audio => writer.write_audio(ts, &f.data).unwrap(),
            MediaKind::Video => writer.write_video(ts, key, &f.data).unwrap(),
        }
        if rng.chance(2) {
            writer.flush().unwrap();
        }
    }
    let summary = writer.finalize().unwrap();
    parts.push(Written { path, summary });
    parts
}

/// 200 random sequences of real frames (every codec, with and without audio) give files that
/// ffprobe reads and the check tool finds finalized and playable, both counting the frames
/// the writer says it wrote.
#[test]
fn random_frame_sequences_read_back_with_ffprobe_and_check() {
    let dir = scratch("random");
    let setups = [
        setup_of(None, true),
        setup_of(Some(Codec::Vp8), true),
        setup_of(Some(Codec::Vp8), false),
        setup_of(Some(Codec::Vp9), true),
        setup_of(Some(Codec::H264), true),
        setup_of(Some(Codec::H265), true),
        setup_of(Some(Codec::Av1), false),
    ];
    let sources: Vec<Vec<Frame>> = setups
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let sub = dir.join(format!("source{i}"));
            std::fs::create_dir_all(&sub).unwrap();
            let video = s.video.map(|c| c.to_string());
            source(&sub, video.as_deref(), s.audio.is_some(), 3)
        })
        .collect();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut files = 0;
    for n in 0..200 {
        let which = n % setups.len();
        let parts = random_sequence(
            &mut rng,
            &dir,
            &format!("seq{n}"),
            setups[which],
            &sources[which],
        );
        for Written { path, summary } in parts {
            if summary.audio_frames + summary.video_frames == 0 {
                continue;
            }
            let probed = probe(&path);
            let context = format!("{}: {summary:?}, ffprobe {probed:?}", path.display());
            assert_eq!(probed.packets(&["opus"]), summary.audio_frames, "{context}");
            assert_eq!(
                probed.packets(&["vp8", "vp9", "h264", "hevc", "av1"]),
                summary.video_frames,
                "{context}"
            );
            let report = crate::check::check_file(&path, &Default::default());
            assert!(
                report.playable
                    && report.finalized
                    && report.status != crate::check::Status::Unreadable,
                "{context}\n{}",
                report.human()
            );
            let checked: u64 = report.tracks.iter().map(|t| t.frames).sum();
            assert_eq!(
                checked,
                summary.audio_frames + summary.video_frames,
                "{context}\n{}",
                report.human()
            );
            files += 1;
        }
    }
    assert!(files >= 200, "only {files} files");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Blocks encoded by the writer itself are byte for byte what webm-iterable encodes, across
/// the widths of the size field (1, 2 and 3 bytes, and at each width's edge).
#[test]
fn blocks_encode_as_webm_iterable_does() {
    for len in [
        0usize, 1, 122, 123, 124, 125, 16_378, 16_379, 16_380, 16_381, 70_000,
    ] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        for (track, offset, key) in [(1u8, 0i16, true), (2, -5, false), (2, i16::MAX, true)] {
            let mut ours = Vec::new();
            encode_simple_block(&mut ours, track, offset, key, &data);
            let block =
                SimpleBlock::new_uncheked(&data, track.into(), offset, false, None, false, key);
            // Blocks are written inside a Segment and a Cluster, both of unknown size.
            let mut theirs = TagWriter::new(Vec::new());
            for master in [
                MatroskaSpec::Segment(Master::Start),
                MatroskaSpec::Cluster(Master::Start),
            ] {
                theirs
                    .write_advanced(&master, WriteOptions::is_unknown_sized_element())
                    .unwrap();
            }
            theirs.write(&MatroskaSpec::from(block)).unwrap();
            let theirs = theirs.into_inner().unwrap();
            let starts = 2 * UNKNOWN_SIZED_HEADER_LEN as usize;
            assert_eq!(ours, theirs[starts..], "{len} bytes, track {track}");
        }
    }
}
