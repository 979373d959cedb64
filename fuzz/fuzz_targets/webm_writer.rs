//! The WebM/Matroska writer fed arbitrary frame sequences, as the feed would: any codec pair,
//! times equal, going back, jumping by anything up to the largest `Duration` the feed hands
//! over, keyframe flags and sizes of every kind, flushes, and split points (the next frame opens
//! a new part whose time zero it is). Every finalized file that holds a frame must read back
//! with the check tool as finalized, playable, with the frames the writer says it wrote.
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use janus_recorder::check::{CheckOptions, Status, check_bytes};
use janus_recorder::media::Codec;
use janus_recorder::webm::writer::{TrackSetup, WebmWriter};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});

const VIDEO: [Option<Codec>; 6] = [
    None,
    Some(Codec::Vp8),
    Some(Codec::Vp9),
    Some(Codec::H264),
    Some(Codec::H265),
    Some(Codec::Av1),
];

/// A fresh path in the temporary directory (the writer refuses an existing file).
fn scratch_path() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "jr-fuzz-writer-{}-{}.webm",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

fn run(u: &mut Unstructured) -> Result<()> {
    let setup = TrackSetup {
        audio: u.arbitrary::<bool>()?.then_some(Codec::Opus),
        video: *u.choose(&VIDEO)?,
    };
    if setup.audio.is_none() && setup.video.is_none() {
        return Ok(());
    }
    let mut part = Part::open(setup);
    let mut now = Duration::ZERO;
    // Where the current part starts on the feed's timeline.
    let mut offset = Duration::ZERO;
    let mut split_due = false;
    for _ in 0..u.int_in_range(0..=400)? {
        match u.int_in_range(0..=15)? {
            0 => part.writer.flush().expect("flush"),
            1 => split_due = true,
            _ => {
                now = match u.int_in_range(0..=7)? {
                    0 => now,
                    1 => now.saturating_sub(Duration::from_millis(u.int_in_range(0..=5000)?)),
                    2 => now.saturating_add(Duration::from_nanos(u.arbitrary()?)),
                    3 => Duration::from_nanos(u.arbitrary()?),
                    _ => now + Duration::from_micros(u.int_in_range(0..=100_000)?),
                };
                let video = match (setup.audio, setup.video) {
                    (Some(_), Some(_)) => u.arbitrary()?,
                    (None, _) => true,
                    (_, None) => false,
                };
                let keyframe: bool = u.arbitrary()?;
                let frame = frame(u, video.then(|| setup.video).flatten(), keyframe)?;
                // The feed splits at a video keyframe, or at any frame of a file without video.
                if split_due && (keyframe && video || setup.video.is_none()) {
                    part.finish();
                    part = Part::open(setup);
                    offset = now;
                    split_due = false;
                }
                let ts = now.saturating_sub(offset);
                if video {
                    part.writer
                        .write_video(ts, keyframe, &frame)
                        .expect("write video");
                } else {
                    part.writer.write_audio(ts, &frame).expect("write audio");
                }
            }
        }
    }
    part.finish();
    Ok(())
}

/// A frame's bytes: raw input, or (often) one shaped like the codec's so the writer's
/// bitstream readers get past their first checks.
fn frame(u: &mut Unstructured, video: Option<Codec>, keyframe: bool) -> Result<Vec<u8>> {
    let raw_len = u.int_in_range(0..=300)?;
    let raw = u.bytes(raw_len)?.to_vec();
    if u.arbitrary()? {
        return Ok(raw);
    }
    let mut f = match video {
        // Opus: a TOC byte of 20 ms CELT (any channel count and frame count code).
        None => vec![0xf8 | (u.arbitrary::<u8>()? & 0x07)],
        // VP8: frame tag, start code, 14-bit width and height.
        Some(Codec::Vp8) => {
            let mut f = vec![if keyframe { 0x50 } else { 0x51 }, 0x42, 0x00];
            if keyframe {
                f.extend_from_slice(&[0x9d, 0x01, 0x2a]);
                f.extend_from_slice(&u.arbitrary::<u16>()?.to_le_bytes());
                f.extend_from_slice(&u.arbitrary::<u16>()?.to_le_bytes());
            }
            f
        }
        // H.26x: Annex B start codes before NAL units of any type.
        Some(Codec::H264 | Codec::H265) => {
            let mut f = Vec::new();
            for _ in 0..u.int_in_range(1..=4)? {
                f.extend_from_slice(&[0, 0, 0, 1]);
                f.push(u.arbitrary()?);
                if video == Some(Codec::H265) {
                    f.push(1);
                }
                let n = u.int_in_range(0..=40)?;
                f.extend_from_slice(u.bytes(n)?);
            }
            f
        }
        // AV1: OBUs with sizes (any type).
        Some(Codec::Av1) => {
            let mut f = Vec::new();
            for _ in 0..u.int_in_range(1..=3)? {
                let n = u.int_in_range(0..=60)?;
                f.push((u.int_in_range(0..=15u8)? << 3) | 0x02);
                f.push(n as u8);
                f.extend_from_slice(u.bytes(n)?);
            }
            f
        }
        Some(_) => Vec::new(),
    };
    f.extend_from_slice(&raw);
    Ok(f)
}

/// One file being written.
struct Part {
    path: PathBuf,
    writer: WebmWriter,
}

impl Part {
    fn open(setup: TrackSetup) -> Part {
        let path = scratch_path();
        let writer = WebmWriter::create(&path, setup).expect("create");
        Part { path, writer }
    }

    /// Finalizes the file and reads it back; removes it.
    fn finish(self) {
        let summary = self.writer.finalize().expect("finalize");
        let bytes = std::fs::read(&self.path).expect("read back");
        let _ = std::fs::remove_file(&self.path);
        let written = summary.audio_frames + summary.video_frames;
        if written == 0 {
            return;
        }
        let report = check_bytes(&self.path, &bytes, &CheckOptions::default());
        assert!(
            report.playable && report.finalized && report.status != Status::Unreadable,
            "{summary:?}\n{}",
            report.human()
        );
        let checked: u64 = report.tracks.iter().map(|t| t.frames).sum();
        assert_eq!(checked, written, "{summary:?}\n{}", report.human());
    }
}
