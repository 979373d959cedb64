//! VP9 frames and superframes (VP9 bitstream specification, section 6.2 and Annex B).
//!
//! A VP9 SVC publisher (janus.js `svc: 'L3T3_KEY'`) sends each picture as one frame per
//! spatial layer; str0m hands them over concatenated, with the layer boundaries beside the
//! data. A Matroska block must hold one decodable unit, so the layers are joined into a
//! *superframe*: the frames back to back, then an index of their sizes. Without the index a
//! decoder sees only the first frame, the base layer (a 320x180 picture from a 720p camera).

use super::bits::BitReader;

/// The most frames a superframe index can list.
pub const MAX_SUPERFRAME_FRAMES: usize = 8;

/// `frames` joined into one superframe; a single frame is returned as it is. More than
/// [`MAX_SUPERFRAME_FRAMES`] frames, or empty ones, are not joinable: `None`.
pub fn superframe(frames: &[&[u8]]) -> Option<Vec<u8>> {
    match frames {
        [] => return None,
        [one] => return Some(one.to_vec()),
        _ if frames.len() > MAX_SUPERFRAME_FRAMES || frames.iter().any(|f| f.is_empty()) => {
            return None;
        }
        _ => {}
    }
    let largest = frames.iter().map(|f| f.len()).max().unwrap_or(0);
    // Bytes per size: the fewest that hold the largest frame (at most 4).
    let size_bytes = (1..=4usize).find(|&n| largest < 1usize << (8 * n))?;
    let marker = 0b1100_0000 | ((size_bytes - 1) as u8) << 3 | (frames.len() - 1) as u8;
    let total: usize = frames.iter().map(|f| f.len()).sum();
    let mut out = Vec::with_capacity(total + 2 + size_bytes * frames.len());
    for f in frames {
        out.extend_from_slice(f);
    }
    out.push(marker);
    for f in frames {
        out.extend_from_slice(&(f.len() as u32).to_le_bytes()[..size_bytes]);
    }
    out.push(marker);
    Some(out)
}

/// The frames of a superframe, or the data itself when it has no valid index.
pub fn frames(data: &[u8]) -> Vec<&[u8]> {
    split_superframe(data).unwrap_or_else(|| vec![data])
}

fn split_superframe(data: &[u8]) -> Option<Vec<&[u8]>> {
    let marker = *data.last()?;
    if marker & 0b1110_0000 != 0b1100_0000 {
        return None;
    }
    let size_bytes = usize::from(marker >> 3 & 3) + 1;
    let count = usize::from(marker & 7) + 1;
    let index_len = 2 + size_bytes * count;
    let index_start = data.len().checked_sub(index_len)?;
    let index = data.get(index_start..)?;
    if index[0] != marker {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    let mut at = 0usize;
    for i in 0..count {
        let bytes = index.get(1 + i * size_bytes..1 + (i + 1) * size_bytes)?;
        let size = bytes
            .iter()
            .rev()
            .fold(0usize, |acc, &b| acc << 8 | usize::from(b));
        let end = at.checked_add(size)?;
        if end > index_start {
            return None;
        }
        out.push(data.get(at..end)?);
        at = end;
    }
    Some(out)
}

/// What one VP9 frame's uncompressed header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub keyframe: bool,
    pub show_frame: bool,
    /// The frame size when the header states it: keyframes, intra-only frames, and inter
    /// frames that give their size instead of taking a reference frame's (as the upper
    /// spatial layers of an SVC picture do).
    pub size: Option<(u32, u32)>,
}

/// Reads the start of a frame's uncompressed header (up to its size); `None` if it is not a
/// VP9 frame header. Needs no state, so an inter frame that takes its size from a reference
/// has `size: None`.
pub fn frame_header(frame: &[u8]) -> Option<FrameHeader> {
    let h = parse_header(frame, &[None; 8], false)?;
    Some(FrameHeader {
        keyframe: h.keyframe,
        show_frame: h.show_frame,
        size: h.size.filter(|_| !h.size_from_ref),
    })
}

/// The picture size of a frame or superframe: the largest size any of its frames states (an
/// SVC superframe's top spatial layer).
pub fn picture_size(data: &[u8]) -> Option<(u32, u32)> {
    frames(data)
        .into_iter()
        .filter_map(|f| frame_header(f)?.size)
        .max_by_key(|&(w, h)| u64::from(w) * u64::from(h))
}

/// Joins the spatial layers of VP9 SVC pictures into superframes that decode to one picture:
/// the top layer's. In WebRTC SVC every layer is a shown frame (a receiver shows the highest
/// one it decodes), so a decoder given all of them outputs three pictures of three sizes at
/// one time; here every layer but the last is marked not shown. For an inter frame that
/// means one more header bit (`intra_only`, present only in hidden frames), so the whole
/// uncompressed header is parsed to find its end, which needs the sizes of the reference
/// slots: the joiner follows them from frame to frame.
#[derive(Debug, Default, Clone)]
pub struct SvcJoiner {
    /// The size held in each of the 8 reference slots.
    refs: [Option<(u32, u32)>; 8],
}

impl SvcJoiner {
    /// One picture's layers (lowest first) as a superframe showing only the last. `None`
    /// when a header cannot be parsed (the caller keeps the layers as they came).
    pub fn join(&mut self, layers: &[&[u8]]) -> Option<Vec<u8>> {
        let mut rewritten: Vec<Vec<u8>> = Vec::with_capacity(layers.len());
        let mut refs = self.refs;
        for (i, layer) in layers.iter().enumerate() {
            let last = i + 1 == layers.len();
            let h = parse_header(layer, &refs, true)?;
            if let Some(size) = h.size {
                for (slot, r) in refs.iter_mut().enumerate() {
                    if h.refresh & (1 << slot) != 0 {
                        *r = Some(size);
                    }
                }
            }
            rewritten.push(if last || !h.show_frame {
                layer.to_vec()
            } else {
                hide(layer, &h)?
            });
        }
        self.refs = refs;
        let parts: Vec<&[u8]> = rewritten.iter().map(Vec::as_slice).collect();
        superframe(&parts)
    }
}

/// A frame's uncompressed header, as far as rewriting `show_frame` needs it.
#[derive(Debug, Clone, Copy)]
struct Header {
    keyframe: bool,
    show_frame: bool,
    /// Bit offset of `show_frame`, and of the bit after `error_resilient_mode`.
    show_frame_bit: usize,
    after_error_resilient: usize,
    /// Bits of the whole uncompressed header (0 if not parsed to the end).
    len_bits: usize,
    size: Option<(u32, u32)>,
    /// Whether `size` is a reference slot's.
    size_from_ref: bool,
    /// Which reference slots this frame refreshes.
    refresh: u8,
}

/// Parses the uncompressed header (spec 6.2); with `whole`, to its end (tile info and
/// `header_size_in_bytes`), which needs `refs`, the reference slots' sizes.
fn parse_header(frame: &[u8], refs: &[Option<(u32, u32)>; 8], whole: bool) -> Option<Header> {
    let mut r = BitReader::new(frame);
    if r.bits(2)? != 2 {
        return None; // frame_marker
    }
    let low = r.bits(1)?;
    let high = r.bits(1)?;
    let profile = high << 1 | low;
    if profile == 3 {
        r.skip(1)?;
    }
    if r.flag()? {
        // show_existing_frame: no header of its own.
        return Some(Header {
            keyframe: false,
            show_frame: true,
            show_frame_bit: 0,
            after_error_resilient: 0,
            len_bits: 0,
            size: None,
            size_from_ref: false,
            refresh: 0,
        });
    }
    let keyframe = !r.flag()?;
    let show_frame_bit = r.position();
    let show_frame = r.flag()?;
    let error_resilient = r.flag()?;
    let after_error_resilient = r.position();
    let mut size_from_ref = false;
    let (size, refresh) = if keyframe {
        sync_code(&mut r)?;
        color_config(&mut r, profile)?;
        let size = frame_size(&mut r)?;
        render_size(&mut r)?;
        (size, 0xff)
    } else {
        let intra_only = if show_frame { false } else { r.flag()? };
        if !error_resilient {
            r.skip(2)?; // reset_frame_context
        }
        if intra_only {
            sync_code(&mut r)?;
            if profile > 0 {
                color_config(&mut r, profile)?;
            }
            let refresh = r.u8(8)?;
            let size = frame_size(&mut r)?;
            render_size(&mut r)?;
            (size, refresh)
        } else {
            let refresh = r.u8(8)?;
            let mut ref_idx = [0usize; 3];
            for idx in &mut ref_idx {
                *idx = r.bits(3)? as usize;
                r.skip(1)?; // sign bias
            }
            // frame_size_with_refs
            let mut found = None;
            for idx in ref_idx {
                if r.flag()? {
                    found = Some(idx);
                    break;
                }
            }
            let size = match found {
                Some(idx) => {
                    size_from_ref = true;
                    match refs.get(idx).copied().flatten() {
                        Some(size) => size,
                        None if whole => return None,
                        None => (0, 0),
                    }
                }
                None => frame_size(&mut r)?,
            };
            render_size(&mut r)?;
            if !whole {
                return Some(Header {
                    keyframe,
                    show_frame,
                    show_frame_bit,
                    after_error_resilient,
                    len_bits: 0,
                    size: (size != (0, 0)).then_some(size),
                    size_from_ref,
                    refresh,
                });
            }
            r.skip(1)?; // allow_high_precision_mv
            if !r.flag()? {
                r.skip(2)?; // raw_interpolation_filter
            }
            (size, refresh)
        }
    };
    let mut header = Header {
        keyframe,
        show_frame,
        show_frame_bit,
        after_error_resilient,
        len_bits: 0,
        size: Some(size),
        size_from_ref,
        refresh,
    };
    if !whole {
        return Some(header);
    }
    if !error_resilient {
        r.skip(2)?; // refresh_frame_context, frame_parallel_decoding_mode
    }
    r.skip(2)?; // frame_context_idx
    loop_filter_params(&mut r)?;
    quantization_params(&mut r)?;
    segmentation_params(&mut r)?;
    tile_info(&mut r, size.0)?;
    r.skip(16)?; // header_size_in_bytes
    header.len_bits = r.position();
    Some(header)
}

fn render_size(r: &mut BitReader) -> Option<()> {
    if r.flag()? {
        r.skip(32)?;
    }
    Some(())
}

fn loop_filter_params(r: &mut BitReader) -> Option<()> {
    r.skip(6 + 3)?; // level, sharpness
    if r.flag()? && r.flag()? {
        // delta enabled and updated: 4 reference deltas and 2 mode deltas, each su(6)
        for _ in 0..6 {
            if r.flag()? {
                r.skip(7)?;
            }
        }
    }
    Some(())
}

fn quantization_params(r: &mut BitReader) -> Option<()> {
    r.skip(8)?; // base_q_idx
    for _ in 0..3 {
        if r.flag()? {
            r.skip(5)?; // su(4)
        }
    }
    Some(())
}

fn segmentation_params(r: &mut BitReader) -> Option<()> {
    if !r.flag()? {
        return Some(());
    }
    let read_prob = |r: &mut BitReader| -> Option<()> {
        if r.flag()? {
            r.skip(8)?;
        }
        Some(())
    };
    if r.flag()? {
        // update_map: tree probabilities, then the temporal ones if temporal_update.
        for _ in 0..7 {
            read_prob(r)?;
        }
        if r.flag()? {
            for _ in 0..3 {
                read_prob(r)?;
            }
        }
    }
    if r.flag()? {
        r.skip(1)?; // abs_or_delta_update
        const BITS: [usize; 4] = [8, 6, 2, 0];
        const SIGNED: [usize; 4] = [1, 1, 0, 0];
        for _ in 0..8 {
            for j in 0..4 {
                if r.flag()? {
                    r.skip(BITS[j] + SIGNED[j])?;
                }
            }
        }
    }
    Some(())
}

fn tile_info(r: &mut BitReader, width: u32) -> Option<()> {
    let mi_cols = (width + 7) >> 3;
    let sb64_cols = (mi_cols + 7) >> 3;
    let mut min_log2 = 0;
    while (64u32 << min_log2) < sb64_cols {
        min_log2 += 1;
    }
    let mut max_log2 = 1;
    while (sb64_cols >> max_log2) >= 4 {
        max_log2 += 1;
    }
    max_log2 -= 1;
    let mut log2 = min_log2;
    while log2 < max_log2 {
        if !r.flag()? {
            break;
        }
        log2 += 1;
    }
    if r.flag()? {
        r.skip(1)?; // increment_tile_rows_log2
    }
    Some(())
}

/// `frame` with `show_frame` cleared: for a keyframe one bit; for an inter frame also the
/// `intra_only = 0` bit a hidden frame has, which moves the rest of the uncompressed header
/// one bit on (and the byte-aligned data after it one byte on, if the header had no padding
/// bit to spare).
fn hide(frame: &[u8], h: &Header) -> Option<Vec<u8>> {
    if h.len_bits == 0 {
        return None;
    }
    let header_bytes = h.len_bits.div_ceil(8);
    let rest = frame.get(header_bytes..)?;
    let bit = |i: usize| frame[i / 8] >> (7 - i % 8) & 1 == 1;
    let mut bits: Vec<bool> = (0..h.len_bits).map(bit).collect();
    bits[h.show_frame_bit] = false;
    if !h.keyframe {
        bits.insert(h.after_error_resilient, false);
    }
    let mut out: Vec<u8> = bits
        .chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, &v)| b | u8::from(v) << (7 - i))
        })
        .collect();
    out.extend_from_slice(rest);
    Some(out)
}

fn sync_code(r: &mut BitReader) -> Option<()> {
    (r.bits(24)? == 0x49_83_42).then_some(())
}

fn color_config(r: &mut BitReader, profile: u32) -> Option<()> {
    if profile >= 2 {
        r.skip(1)?; // ten_or_twelve_bit
    }
    let color_space = r.bits(3)?;
    if color_space != 7 {
        r.skip(1)?; // color_range
        if profile == 1 || profile == 3 {
            r.skip(3)?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if profile == 1 || profile == 3 {
        r.skip(1)?; // reserved_zero
    }
    Some(())
}

fn frame_size(r: &mut BitReader) -> Option<(u32, u32)> {
    let w = r.bits(16)? + 1;
    let h = r.bits(16)? + 1;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyframe header: marker, profile 0, not show-existing, key, shown, not error
    /// resilient, sync code, color space BT.601 + range, then width-1 and height-1.
    fn keyframe(w: u32, h: u32) -> Vec<u8> {
        let mut bits: Vec<bool> = Vec::new();
        let mut put = |v: u32, n: u32| (0..n).rev().for_each(|i| bits.push(v >> i & 1 == 1));
        put(2, 2);
        put(0, 2);
        put(0, 1);
        put(0, 1); // key
        put(1, 1);
        put(0, 1);
        put(0x49_83_42, 24);
        put(1, 3);
        put(0, 1);
        put(w - 1, 16);
        put(h - 1, 16);
        put(0, 8); // more header, not read
        bits.chunks(8)
            .map(|c| c.iter().fold(0u8, |b, &bit| b << 1 | u8::from(bit)))
            .collect()
    }

    #[test]
    fn superframes_round_trip_and_tell_the_largest_size() {
        let base = keyframe(320, 180);
        let mid = keyframe(640, 360);
        let top = keyframe(1280, 720);
        let sf = superframe(&[&base, &mid, &top]).unwrap();
        assert_eq!(frames(&sf), vec![&base[..], &mid[..], &top[..]]);
        assert_eq!(picture_size(&sf), Some((1280, 720)));
        assert_eq!(picture_size(&base), Some((320, 180)));
        assert_eq!(superframe(&[&base]).unwrap(), base);
        assert!(superframe(&[]).is_none());
        // A large layer needs a wider size field.
        let big = vec![0x82u8; 70_000];
        let sf = superframe(&[&base, &big]).unwrap();
        assert_eq!(sf[sf.len() - 1] >> 3 & 3, 2, "3-byte sizes");
        assert_eq!(frames(&sf), vec![&base[..], &big[..]]);
    }

    /// Joins pairs of frames of an ordinary libvpx VP9 stream (keyframes included) with the
    /// first hidden, and decodes the result with ffmpeg; returns the pictures' MD5s before and
    /// after, and what ffmpeg said.
    fn join_pairs_and_decode(error_resilient: bool) -> (Vec<String>, Vec<String>, String) {
        use crate::codec::test_streams::{Scratch, encode, matroska_video, tool};
        let scratch = Scratch::new(&format!("vp9-hide-{error_resilient}"));
        let er = if error_resilient { "1" } else { "0" };
        let args = [
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-g",
            "30",
            "-auto-alt-ref",
            "0",
            "-lag-in-frames",
            "0",
            "-b:v",
            "400k",
            "-error-resilient",
            er,
        ];
        let source = encode(&scratch.0, "source.webm", "352x288", 3, &args);
        let blocks = matroska_video(&source).blocks;
        assert!(blocks.len() >= 90 && blocks[0].0);
        let mut joiner = SvcJoiner::default();
        let joined: Vec<Vec<u8>> = blocks
            .chunks(2)
            .map(|pair| {
                let layers: Vec<&[u8]> = pair.iter().map(|(_, f)| f.as_slice()).collect();
                joiner
                    .join(&layers)
                    .expect("every header of libvpx's stream parses")
            })
            .collect();
        // IVF: a 32-byte file header, then a 12-byte header (size, pts) per frame.
        let mut ivf = b"DKIF\0\0\x20\0VP90".to_vec();
        for v in [352u16, 288] {
            ivf.extend_from_slice(&v.to_le_bytes());
        }
        for v in [30u32, 1, joined.len() as u32, 0] {
            ivf.extend_from_slice(&v.to_le_bytes());
        }
        for (pts, f) in joined.iter().enumerate() {
            ivf.extend_from_slice(&(f.len() as u32).to_le_bytes());
            ivf.extend_from_slice(&(pts as u64).to_le_bytes());
            ivf.extend_from_slice(f);
        }
        let joined_path = scratch.0.join("joined.ivf");
        std::fs::write(&joined_path, &ivf).unwrap();
        let md5s = |path: &std::path::Path| -> (Vec<String>, String) {
            let out = tool("ffmpeg")
                .args(["-nostdin", "-v", "error", "-i"])
                .arg(path)
                .args(["-map", "0:v", "-f", "framemd5", "-"])
                .output()
                .unwrap();
            let sums = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.rsplit(',').next().map(|s| s.trim().to_owned()))
                .collect();
            (sums, String::from_utf8_lossy(&out.stderr).into_owned())
        };
        let (original, _) = md5s(&source);
        let (decoded, errors) = md5s(&joined_path);
        assert_eq!(
            decoded.len(),
            blocks.len() / 2,
            "one picture per superframe"
        );
        (original, decoded, errors)
    }

    /// The rewrite checked by a real decoder. In an error-resilient stream a frame's decoding
    /// does not depend on whether the one before was shown, so the pictures are exactly the
    /// shown frames'. (Otherwise a hidden frame turns off the next frame's use of its motion
    /// vectors; in SVC that never matters, as consecutive layers differ in size, which turns
    /// it off anyway.) Without error resilience the longer headers still decode cleanly.
    #[test]
    fn hidden_frames_still_decode_and_only_the_last_shows() {
        let (original, decoded, errors) = join_pairs_and_decode(true);
        assert_eq!(errors, "", "decoding the joined stream");
        let shown: Vec<String> = original.iter().skip(1).step_by(2).cloned().collect();
        assert_eq!(decoded, shown[..decoded.len()]);
        let (_, _, errors) = join_pairs_and_decode(false);
        assert_eq!(errors, "", "decoding the joined stream");
    }

    #[test]
    fn hostile_indexes_never_panic() {
        let base = keyframe(320, 180);
        let mut sf = superframe(&[&base, &base]).unwrap();
        let n = sf.len();
        sf[n - 3] = 0xff; // a size past the data
        assert_eq!(frames(&sf).len(), 1);
        for data in [&[][..], &[0xc0], &[0xc1, 0xc1], &[0xff; 40]] {
            let _ = frames(data);
            let _ = picture_size(data);
            let _ = frame_header(data);
        }
    }
}
