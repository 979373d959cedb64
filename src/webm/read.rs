//! Reading Matroska blocks, shared by the check tool, the synthetic publisher's clip reader
//! and the room file: the one place that decodes a block's header and frames.

use webm_iterable::matroska_spec::{Block, MatroskaSpec};

/// A block's track, relative time, keyframe flag (SimpleBlock only) and frames.
pub type DecodedBlock = (u64, i16, bool, Vec<Vec<u8>>);

/// Decodes a SimpleBlock or Block without trusting its bytes: webm-iterable 0.7 indexes past
/// the end of a block shorter than its header (found by the `webm_check` fuzz target), or of
/// a laced one without its frame count, so those lengths are checked first, and the library
/// calls run under `catch_unwind` in case other such paths remain (the fuzzers abort on any
/// panic, caught or not, so they find those too).
pub fn decode_block(tag: &MatroskaSpec) -> Result<DecodedBlock, String> {
    let data = match tag {
        MatroskaSpec::SimpleBlock(d) | MatroskaSpec::Block(d) => d,
        _ => return Err("not a block".into()),
    };
    // Track number (an EBML vint: its length is the first byte's leading zeros + 1), then a
    // 2-byte timestamp and a flags byte.
    let vint_len = data.first().map_or(9, |b| b.leading_zeros() as usize + 1);
    if vint_len > 8 || data.len() < vint_len + 3 {
        return Err(format!(
            "a block of {} bytes is shorter than its header",
            data.len()
        ));
    }
    // A SimpleBlock is a Block whose flags byte also carries the keyframe bit (0x80).
    let flags = data[vint_len + 2];
    let keyframe = matches!(tag, MatroskaSpec::SimpleBlock(_)) && flags & 0x80 != 0;
    // Laced (flag bits 0x06): webm-iterable reads the frame count byte without checking it is
    // there (found by the `svg_timeline` fuzz target through the check tool).
    if flags & 0x06 != 0 && data.len() == vint_len + 3 {
        return Err("a laced block without its frame count".into());
    }
    std::panic::catch_unwind(|| {
        let b = Block::try_from(data.as_slice()).map_err(|e| e.to_string())?;
        let frames = if b.lacing.is_some() {
            b.read_frame_data()
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|f| f.data.to_vec())
                .collect()
        } else {
            vec![b.raw_frame_data().to_vec()]
        };
        Ok((b.track, b.timestamp, keyframe, frames))
    })
    .unwrap_or_else(|_| Err("the block cannot be parsed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks cut right after their header: an unlaced one is an empty frame; a laced one is
    /// refused for its missing frame count before the library's panic (which `catch_unwind`
    /// would report only as "cannot be parsed").
    #[test]
    fn blocks_with_nothing_after_the_header() {
        for flags in [0x80, 0x82, 0x84, 0x86] {
            let tag = MatroskaSpec::SimpleBlock(vec![0x81, 0x00, 0x00, flags]);
            let r = decode_block(&tag);
            if flags & 0x06 == 0 {
                let (track, time, key, frames) = r.unwrap();
                assert_eq!((track, time, key), (1, 0, true));
                assert_eq!(frames, [Vec::<u8>::new()]);
            } else {
                assert!(r.unwrap_err().contains("laced"), "flags {flags:#x}");
            }
        }
    }
}
