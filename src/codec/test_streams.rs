//! Test streams encoded by ffmpeg at test time, what ffprobe says about them, and the video
//! track of a Matroska file ffmpeg wrote (its CodecPrivate and blocks) to compare with.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::FrameInfo;

use webm_iterable::WebmIterator;
use webm_iterable::matroska_spec::{Master, MatroskaSpec};

/// A tool from ffmpeg's package; fails the test (never skips it) when it is missing.
pub(crate) fn tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    assert!(
        found,
        "{name} not found: run `scripts/setup.sh` (or `apt-get install -y ffmpeg`)"
    );
    Command::new(name)
}

/// A scratch directory, removed when dropped.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub(crate) fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("jr-codec-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Encodes `secs` seconds of a test pattern of `size` at 30 fps with `args` (codec options
/// and output format) into `dir/name`.
pub(crate) fn encode(dir: &Path, name: &str, size: &str, secs: u32, args: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let status = tool("ffmpeg")
        .env("SVT_LOG", "1") // SVT-AV1: errors only
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size={size}:rate=30"))
        .args(["-t", &secs.to_string(), "-pix_fmt", "yuv420p"])
        .args(args)
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make {name}");
    out
}

/// Copies the stream of `src` into `dst` without re-encoding; `output_args` (bitstream
/// filters, format) go before the output name.
pub(crate) fn remux(src: &Path, output_args: &[&str], dst: &Path) {
    let status = tool("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(src)
        .args(["-c", "copy"])
        .args(output_args)
        .arg(dst)
        .status()
        .expect("ffmpeg runs");
    assert!(
        status.success(),
        "ffmpeg could not remux into {}",
        dst.display()
    );
}

/// ffprobe's view of the first video stream: size, packets and keyframe packets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    pub size: (u32, u32),
    pub packets: usize,
    pub keyframes: usize,
}

pub(crate) fn probe(path: &Path) -> Probe {
    let out = tool("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-of", "json"])
        .args(["-show_entries", "stream=width,height:packet=flags"])
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe {}", path.display());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stream = &v["streams"][0];
    let packets = v["packets"].as_array().cloned().unwrap_or_default();
    Probe {
        size: (
            stream["width"].as_u64().unwrap() as u32,
            stream["height"].as_u64().unwrap() as u32,
        ),
        packets: packets.len(),
        keyframes: packets
            .iter()
            .filter(|p| p["flags"].as_str().is_some_and(|f| f.starts_with('K')))
            .count(),
    }
}

/// The video track of a Matroska file: CodecID, CodecPrivate and (keyframe flag, data) of
/// every SimpleBlock.
pub(crate) struct MatroskaTrack {
    pub codec_id: String,
    pub private: Vec<u8>,
    pub blocks: Vec<(bool, Vec<u8>)>,
}

pub(crate) fn matroska_video(path: &Path) -> MatroskaTrack {
    let file = std::fs::File::open(path).unwrap();
    let mut track = MatroskaTrack {
        codec_id: String::new(),
        private: Vec::new(),
        blocks: Vec::new(),
    };
    for tag in WebmIterator::new(file, &[MatroskaSpec::TrackEntry(Master::Start)]) {
        match tag.unwrap() {
            MatroskaSpec::TrackEntry(Master::Full(children)) => {
                for c in children {
                    match c {
                        MatroskaSpec::CodecID(id) => track.codec_id = id,
                        MatroskaSpec::CodecPrivate(p) => track.private = p,
                        _ => {}
                    }
                }
            }
            tag @ MatroskaSpec::SimpleBlock(_) => {
                let (_, _, key, frames) = crate::webm::read::decode_block(&tag).unwrap();
                for f in frames {
                    track.blocks.push((key, f));
                }
            }
            _ => {}
        }
    }
    track
}

/// Splits an Annex B stream into access units (H.264 7.4.1.2.3, H.265 7.4.2.4.4): a unit
/// ends before a non-VCL NAL unit, or the first slice of a picture, that follows a VCL one.
/// `vcl` and `first_slice` look at a NAL unit from its header on. (Suffix SEI, end of
/// sequence and the like, which belong to the unit before them, are not in the test streams.)
pub(crate) fn split_access_units(
    data: &[u8],
    vcl: impl Fn(&[u8]) -> bool,
    first_slice: impl Fn(&[u8]) -> bool,
) -> Vec<&[u8]> {
    let starts: Vec<usize> = data
        .windows(3)
        .enumerate()
        .filter(|(_, w)| *w == [0, 0, 1])
        .map(|(i, _)| i)
        .collect();
    let mut units = Vec::new();
    let (mut from, mut seen_vcl) = (0, false);
    for &at in &starts {
        let nal = &data[at + 3..];
        let is_vcl = vcl(nal);
        if seen_vcl && (!is_vcl || first_slice(nal)) {
            units.push(&data[from..at]);
            from = at;
            seen_vcl = false;
        }
        seen_vcl |= is_vcl;
    }
    units.push(&data[from..]);
    units
}

/// A reproducible stream of bytes that look random.
pub(crate) fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// Runs `parse` on every prefix of `good`, on copies with one byte changed, and on noise:
/// it must return, whatever it returns.
pub(crate) fn survives_damage(good: &[u8], parse: impl Fn(&[u8])) {
    for end in 0..=good.len() {
        parse(&good[..end]);
    }
    for at in 0..good.len() {
        for value in [0x00, 0xff, 0x80, 0x01, 0x03] {
            let mut bad = good.to_vec();
            bad[at] = value;
            parse(&bad);
        }
    }
    for seed in 1..200 {
        parse(&noise(seed as usize * 3, seed));
    }
}

/// A clip ffmpeg encoded into Matroska, its video converted by `bsf` to the elementary
/// stream format `format`, and what ffprobe says about the Matroska file.
pub(crate) struct Clip {
    pub probe: Probe,
    pub stream: Vec<u8>,
    pub ffmpeg: MatroskaTrack,
}

/// Encodes 2 s at 320x180 (a height that is no multiple of 16) into `dir/name` and converts
/// it to an elementary stream.
pub(crate) fn clip(dir: &Path, name: &str, encoder: &[&str], bsf: &[&str], format: &str) -> Clip {
    let path = encode(dir, name, "320x180", 2, encoder);
    let raw = dir.join(format!("{name}.{format}"));
    let mut output = bsf.to_vec();
    output.extend(["-f", format]);
    remux(&path, &output, &raw);
    Clip {
        probe: probe(&path),
        stream: std::fs::read(&raw).unwrap(),
        ffmpeg: matroska_video(&path),
    }
}

/// Checks the frame infos of a stream's access units against ffprobe: as many units as
/// packets, the same keyframes, the first one a keyframe with the size, no other size.
pub(crate) fn assert_infos_match(name: &str, infos: &[FrameInfo], probe: &Probe) {
    assert_eq!(infos.len(), probe.packets, "{name}: access units");
    let keyframes = infos.iter().filter(|i| i.keyframe).count();
    assert_eq!(keyframes, probe.keyframes, "{name}: keyframes");
    assert!(keyframes >= 2, "{name}: {keyframes} keyframes");
    assert!(
        infos[0].keyframe && infos[0].size == Some(probe.size),
        "{name}: first {:?}",
        infos[0]
    );
    assert!(infos.iter().all(|i| i.size.is_none_or(|s| s == probe.size)));
}

/// The functions of `h264` or `h265` the block comparison needs.
pub(crate) struct NalCodec {
    pub nal_type: fn(&[u8]) -> Option<u8>,
    pub to_length_prefixed: fn(&[u8], &mut Vec<u8>),
    pub frame_info: fn(&[u8], usize) -> FrameInfo,
}

/// Converts each Annex B access unit and compares it with ffmpeg's block: the same NAL units
/// but for the types in `ours_only` (parameter sets the Annex B form repeats before each
/// keyframe) and `theirs_only` (delimiters, which we drop); the same keyframes by the
/// bitstream and by the block flag; a size where there is an SPS, on keyframes.
pub(crate) fn assert_blocks_match(
    name: &str,
    codec: &NalCodec,
    units: &[&[u8]],
    blocks: &[(bool, Vec<u8>)],
    ours_only: &[u8],
    theirs_only: &[u8],
) {
    use super::nal::{length_prefixed_is_whole, length_prefixed_nal_units};
    assert_eq!(blocks.len(), units.len(), "{name}");
    let without = |data: &[u8], types: &[u8]| -> Vec<Vec<u8>> {
        length_prefixed_nal_units(data, 4)
            .filter(|n| !(codec.nal_type)(n).is_some_and(|t| types.contains(&t)))
            .map(<[u8]>::to_vec)
            .collect()
    };
    for (unit, (key, block)) in units.iter().zip(blocks) {
        let mut converted = Vec::new();
        (codec.to_length_prefixed)(unit, &mut converted);
        assert!(length_prefixed_is_whole(&converted, 4));
        assert!(
            without(&converted, ours_only) == without(block, theirs_only),
            "{name}: NAL units differ"
        );
        assert_eq!((codec.frame_info)(block, 4).keyframe, *key, "{name}");
        let info = (codec.frame_info)(&converted, 4);
        assert_eq!(info.keyframe, *key, "{name}");
        assert_eq!(info.size.is_some(), *key, "{name}");
    }
}
