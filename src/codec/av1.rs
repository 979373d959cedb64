//! AV1 (AV1 Bitstream & Decoding Process Specification): str0m's depacketizer hands us a
//! temporal unit as OBUs in the low-overhead format (every OBU with its size field);
//! Matroska's `V_AV1` mapping (IETF CELLAR, codec/av1.md) wants the same OBUs without
//! temporal delimiters, tile lists and padding, and an av1C (AV1 in ISOBMFF 2.3) with the
//! sequence header OBU in CodecPrivate.

use super::FrameInfo;
use super::bits::{BitReader, leb128};

/// OBU types (spec 6.2.2).
pub const OBU_SEQUENCE_HEADER: u8 = 1;
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
pub const OBU_FRAME_HEADER: u8 = 3;
pub const OBU_FRAME: u8 = 6;
pub const OBU_TILE_LIST: u8 = 8;
pub const OBU_PADDING: u8 = 15;

/// One OBU of a temporal unit or block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    pub obu_type: u8,
    /// temporal_id and spatial_id from the extension header, if there is one.
    pub layer: Option<(u8, u8)>,
    /// The whole OBU: header, extension, size field and payload.
    pub header_and_payload: &'a [u8],
    pub payload: &'a [u8],
}

/// The OBUs of a buffer (see [`obus`]).
pub struct Obus<'a> {
    rest: &'a [u8],
}

impl Obus<'_> {
    /// Whether every byte was consumed by whole OBUs (call after iterating).
    pub fn is_complete(&self) -> bool {
        self.rest.is_empty()
    }
}

impl<'a> Iterator for Obus<'a> {
    type Item = Obu<'a>;

    fn next(&mut self) -> Option<Obu<'a>> {
        let data = self.rest;
        let header = *data.first()?;
        if header & 0x80 != 0 {
            return None; // obu_forbidden_bit
        }
        let obu_type = header >> 3 & 0x0f;
        let has_extension = header & 0x04 != 0;
        let has_size = header & 0x02 != 0;
        let mut at = 1;
        let layer = if has_extension {
            let ext = *data.get(1)?;
            at = 2;
            Some((ext >> 5, ext >> 3 & 3))
        } else {
            None
        };
        let size = if has_size {
            let (size, len) = leb128(data.get(at..)?)?;
            at += len;
            usize::try_from(size).ok()?
        } else {
            // Only allowed for the last OBU of a Matroska block: it fills the rest.
            data.len() - at
        };
        let end = at.checked_add(size)?;
        let obu = Obu {
            obu_type,
            layer,
            header_and_payload: data.get(..end)?,
            payload: data.get(at..end)?,
        };
        self.rest = data.get(end..).unwrap_or_default();
        Some(obu)
    }
}

/// Splits a buffer of OBUs in the low-overhead format (spec 5.2). An OBU without a size
/// field takes the rest of the buffer. Stops, without panicking, at an OBU that runs past the
/// end (then [`Obus::is_complete`] is false).
pub fn obus(data: &[u8]) -> Obus<'_> {
    Obus { rest: data }
}

/// What a sequence header OBU (spec 5.5) says, as far as a container needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceHeader {
    pub profile: u8,
    pub still_picture: bool,
    pub reduced_still_picture_header: bool,
    /// seq_level_idx and seq_tier of operating point 0.
    pub level: u8,
    pub tier: u8,
    pub high_bitdepth: bool,
    pub twelve_bit: bool,
    pub monochrome: bool,
    pub subsampling_x: bool,
    pub subsampling_y: bool,
    pub chroma_sample_position: u8,
    pub max_width: u32,
    pub max_height: u32,
}

/// Parses a sequence header OBU's payload.
pub fn parse_sequence_header(payload: &[u8]) -> Option<SequenceHeader> {
    let mut r = BitReader::new(payload);
    let mut seq = SequenceHeader {
        profile: r.u8(3)?,
        still_picture: r.flag()?,
        reduced_still_picture_header: r.flag()?,
        ..SequenceHeader::default()
    };
    if seq.profile > 2 {
        return None;
    }
    if seq.reduced_still_picture_header {
        seq.level = r.u8(5)?;
    } else {
        let mut decoder_model_info = false;
        let mut buffer_delay_bits = 0;
        if r.flag()? {
            // timing_info(): num_units_in_display_tick, time_scale, equal_picture_interval.
            r.skip(64)?;
            if r.flag()? {
                r.uvlc()?; // num_ticks_per_picture_minus_1
            }
            decoder_model_info = r.flag()?;
            if decoder_model_info {
                buffer_delay_bits = r.bits(5)? + 1;
                r.skip(32 + 5 + 5)?; // num_units_in_decoding_tick, two lengths
            }
        }
        let initial_display_delay = r.flag()?;
        let operating_points = r.bits(5)? + 1;
        for i in 0..operating_points {
            r.skip(12)?; // operating_point_idc
            let level = r.u8(5)?;
            let tier = if level > 7 { r.u8(1)? } else { 0 };
            if i == 0 {
                seq.level = level;
                seq.tier = tier;
            }
            if decoder_model_info && r.flag()? {
                // operating_parameters_info(): two delays and low_delay_mode_flag.
                r.skip(2 * buffer_delay_bits as usize + 1)?;
            }
            if initial_display_delay && r.flag()? {
                r.skip(4)?; // initial_display_delay_minus_1
            }
        }
    }
    let width_bits = r.bits(4)? + 1;
    let height_bits = r.bits(4)? + 1;
    seq.max_width = r.bits(width_bits)?.checked_add(1)?;
    seq.max_height = r.bits(height_bits)?.checked_add(1)?;
    if !seq.reduced_still_picture_header && r.flag()? {
        r.skip(4 + 3)?; // frame id lengths
    }
    r.skip(3)?; // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
    if !seq.reduced_still_picture_header {
        r.skip(4)?; // interintra, masked compound, warped motion, dual filter
        let order_hint = r.flag()?;
        if order_hint {
            r.skip(2)?; // enable_jnt_comp, enable_ref_frame_mvs
        }
        let force_screen_content_tools = if r.flag()? { 2 } else { r.u8(1)? };
        if force_screen_content_tools > 0 && !r.flag()? {
            r.skip(1)?; // seq_force_integer_mv
        }
        if order_hint {
            r.skip(3)?; // order_hint_bits_minus_1
        }
    }
    r.skip(3)?; // enable_superres, enable_cdef, enable_restoration
    color_config(&mut r, &mut seq)?;
    r.flag()?; // film_grain_params_present
    Some(seq)
}

/// color_config() (spec 5.5.2): bit depth, monochrome, subsampling, chroma sample position.
fn color_config(r: &mut BitReader, seq: &mut SequenceHeader) -> Option<()> {
    seq.high_bitdepth = r.flag()?;
    seq.twelve_bit = seq.profile == 2 && seq.high_bitdepth && r.flag()?;
    seq.monochrome = seq.profile != 1 && r.flag()?;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2); // unspecified
    if r.flag()? {
        primaries = r.u8(8)?;
        transfer = r.u8(8)?;
        matrix = r.u8(8)?;
    }
    if seq.monochrome {
        r.skip(1)?; // color_range
        seq.subsampling_x = true;
        seq.subsampling_y = true;
        return Some(());
    }
    // BT.709 primaries, sRGB transfer, identity matrix: 4:4:4, full range, nothing read.
    if (primaries, transfer, matrix) != (1, 13, 0) {
        r.skip(1)?; // color_range
        (seq.subsampling_x, seq.subsampling_y) = match seq.profile {
            0 => (true, true),
            1 => (false, false),
            _ if seq.twelve_bit => {
                let x = r.flag()?;
                (x, x && r.flag()?)
            }
            _ => (true, false),
        };
        if seq.subsampling_x && seq.subsampling_y {
            seq.chroma_sample_position = r.u8(2)?;
        }
    }
    r.skip(1)?; // separate_uv_delta_q
    Some(())
}

/// Appends the OBUs of a temporal unit to `out` as a Matroska block wants them: without
/// temporal delimiters, tile lists and padding; the others unchanged.
pub fn to_matroska_block(obus_in: &[u8], out: &mut Vec<u8>) {
    for obu in obus(obus_in) {
        if !matches!(
            obu.obu_type,
            OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING
        ) {
            out.extend_from_slice(obu.header_and_payload);
        }
    }
}

/// Whether the first frame header or frame OBU of `data` starts a shown key frame
/// (uncompressed_header(), spec 5.9.2: show_existing_frame 0, frame_type KEY_FRAME,
/// show_frame 1; a hidden key frame is no random access point on its own).
fn first_frame_is_key(data: &[u8], reduced_still_picture_header: bool) -> bool {
    let Some(frame) = obus(data).find(|o| matches!(o.obu_type, OBU_FRAME_HEADER | OBU_FRAME))
    else {
        return false;
    };
    if reduced_still_picture_header {
        return true; // always a shown key frame
    }
    let mut r = BitReader::new(frame.payload);
    // show_existing_frame 0, frame_type 0 (KEY_FRAME), show_frame 1.
    r.bits(4) == Some(0b0001)
}

/// Follows a stream's sequence header and says which temporal units are keyframes.
#[derive(Debug, Default, Clone)]
pub struct Av1Stream {
    seq: Option<SequenceHeader>,
    /// The latest sequence header OBU as received (with its size field).
    seq_obu: Vec<u8>,
}

impl Av1Stream {
    /// Reads a temporal unit: keyframe = it holds a sequence header OBU and its first frame
    /// is a shown key frame; size = the sequence header's maximum frame size.
    pub fn add_frame(&mut self, data: &[u8]) -> FrameInfo {
        let mut info = FrameInfo::default();
        let mut has_seq = false;
        for obu in obus(data).filter(|o| o.obu_type == OBU_SEQUENCE_HEADER) {
            if let Some(seq) = parse_sequence_header(obu.payload) {
                has_seq = true;
                info.size = Some((seq.max_width, seq.max_height));
                self.seq_obu = with_size_field(&obu);
                self.seq = Some(seq);
            }
        }
        if let Some(seq) = &self.seq {
            info.keyframe = has_seq && first_frame_is_key(data, seq.reduced_still_picture_header);
        }
        info
    }

    /// The latest sequence header.
    pub fn sequence_header(&self) -> Option<&SequenceHeader> {
        self.seq.as_ref()
    }

    /// The av1C for CodecPrivate: the 4 fixed bytes (marker, version 1, profile, level and
    /// tier of operating point 0, bit depth, monochrome, subsampling, chroma sample position,
    /// no initial presentation delay) followed by the latest sequence header OBU. `None`
    /// until a sequence header has been seen.
    pub fn codec_private(&self) -> Option<Vec<u8>> {
        let seq = self.seq.as_ref()?;
        let mut out = vec![
            0x81, // marker 1, version 1
            seq.profile << 5 | seq.level & 0x1f,
            seq.tier << 7
                | u8::from(seq.high_bitdepth) << 6
                | u8::from(seq.twelve_bit) << 5
                | u8::from(seq.monochrome) << 4
                | u8::from(seq.subsampling_x) << 3
                | u8::from(seq.subsampling_y) << 2
                | seq.chroma_sample_position & 3,
            0, // reserved, initial_presentation_delay_present 0
        ];
        out.extend_from_slice(&self.seq_obu);
        Some(out)
    }
}

/// The OBU with its size field set (configOBUs must carry it), without an extension header
/// (a sequence header applies to every layer).
fn with_size_field(obu: &Obu) -> Vec<u8> {
    let header = obu.header_and_payload.first().copied().unwrap_or(0);
    let mut out = vec![header & !0x04 | 0x02];
    let mut size = obu.payload.len();
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(obu.payload);
    out
}

/// What a Matroska block says: keyframe = its first frame is a shown key frame (the sequence
/// header may come from CodecPrivate, `seq`); size from a sequence header in the block.
pub fn frame_info(block: &[u8], seq: Option<&SequenceHeader>) -> FrameInfo {
    let mut info = FrameInfo::default();
    let mut reduced = seq.is_some_and(|s| s.reduced_still_picture_header);
    for obu in obus(block).filter(|o| o.obu_type == OBU_SEQUENCE_HEADER) {
        if let Some(s) = parse_sequence_header(obu.payload) {
            info.size = Some((s.max_width, s.max_height));
            reduced = s.reduced_still_picture_header;
        }
    }
    info.keyframe = first_frame_is_key(block, reduced);
    info
}

/// Reads an av1C: `None` unless it has the marker and version 1 and its configOBUs hold a
/// sequence header.
pub fn parse_codec_private(av1c: &[u8]) -> Option<SequenceHeader> {
    if *av1c.first()? != 0x81 || av1c.len() < 4 {
        return None;
    }
    obus(av1c.get(4..)?)
        .filter(|o| o.obu_type == OBU_SEQUENCE_HEADER)
        .find_map(|o| parse_sequence_header(o.payload))
}

#[cfg(test)]
mod tests;
