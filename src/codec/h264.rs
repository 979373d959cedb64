//! H.264 (ITU-T H.264): str0m's RFC 6184 depacketizer hands us Annex B access units; Matroska's
//! `V_MPEG4/ISO/AVC` wants length-prefixed NAL units and an AVCDecoderConfigurationRecord
//! (avcC, ISO/IEC 14496-15 5.3.3) in CodecPrivate.

use std::collections::BTreeMap;

use super::FrameInfo;
use super::bits::{BitReader, rbsp};
pub use super::nal::{
    AnnexB, LengthPrefixed, annexb_nal_units, length_prefixed_is_whole, length_prefixed_nal_units,
};
use super::nal::{MAX_PARAMETER_SET, put_units, take_units};

/// NAL unit types (Table 7-1) this module cares about.
pub const NAL_IDR: u8 = 5;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;

/// The type of a NAL unit (the low 5 bits of its header byte).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Appends the NAL units of an Annex B access unit to `out` with 4-byte big-endian lengths,
/// dropping access unit delimiters (Matroska has its own framing) and keeping SPS/PPS in band
/// (a decoder that joins at a later keyframe needs them there).
pub fn annexb_to_length_prefixed(annexb: &[u8], out: &mut Vec<u8>) {
    super::nal::annexb_to_length_prefixed(annexb, out, |n| nal_type(n) == Some(NAL_AUD));
}

/// Profiles whose SPS carries chroma format, bit depths and scaling lists (7.3.2.1.1).
const HIGH_PROFILES: [u8; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// What an SPS (7.3.2.1.1) says, as far as a container needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sps {
    pub profile_idc: u8,
    /// constraint_set0..5 flags and the 2 reserved bits, as in the bitstream.
    pub constraint_flags: u8,
    pub level_idc: u8,
    pub id: u32,
    pub chroma_format_idc: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    /// Picture size after frame cropping.
    pub width: u32,
    pub height: u32,
}

/// Parses an SPS NAL unit (starting with its header byte); VUI is not read.
pub fn parse_sps(nal: &[u8]) -> Option<Sps> {
    if nal_type(nal)? != NAL_SPS {
        return None;
    }
    let data = rbsp(nal.get(1..)?);
    let mut r = BitReader::new(&data);
    let profile_idc = r.u8(8)?;
    let constraint_flags = r.u8(8)?;
    let level_idc = r.u8(8)?;
    let id = r.ue()?;
    if id > 31 {
        return None;
    }
    let (mut chroma_format_idc, mut separate_planes, mut depth_luma, mut depth_chroma) =
        (1, false, 0, 0);
    if HIGH_PROFILES.contains(&profile_idc) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return None;
        }
        if chroma_format_idc == 3 {
            separate_planes = r.flag()?;
        }
        depth_luma = r.ue()?;
        depth_chroma = r.ue()?;
        if depth_luma > 6 || depth_chroma > 6 {
            return None;
        }
        r.flag()?; // qpprime_y_zero_transform_bypass_flag
        if r.flag()? {
            // seq_scaling_matrix_present_flag: 8 lists (12 with 4:4:4), 4x4 then 8x8.
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.flag()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.flag()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?; // offset_for_ref_frame
            }
        }
        2 => {}
        _ => return None,
    }
    r.ue()?; // max_num_ref_frames
    r.flag()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.flag()?;
    if !frame_mbs_only {
        r.flag()?; // mb_adaptive_frame_field_flag
    }
    r.flag()?; // direct_8x8_inference_flag
    let crop = if r.flag()? {
        [r.ue()?, r.ue()?, r.ue()?, r.ue()?]
    } else {
        [0; 4]
    };
    // Crop units (7-19 to 7-22): in chroma samples, and in field pairs when interlaced.
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let (unit_x, unit_y) = if separate_planes || chroma_format_idc == 0 {
        (1, field_factor)
    } else {
        let sub_width = if chroma_format_idc == 3 { 1 } else { 2 };
        let sub_height = if chroma_format_idc == 1 { 2 } else { 1 };
        (sub_width, sub_height * field_factor)
    };
    let crop_x = crop[0].checked_add(crop[1])?.checked_mul(unit_x)?;
    let crop_y = crop[2].checked_add(crop[3])?.checked_mul(unit_y)?;
    let width = width_mbs.checked_mul(16)?.checked_sub(crop_x)?;
    let height = height_map_units
        .checked_mul(16)?
        .checked_mul(field_factor)?
        .checked_sub(crop_y)?;
    if width == 0 || height == 0 {
        return None;
    }
    Some(Sps {
        profile_idc,
        constraint_flags,
        level_idc,
        id,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma_minus8: depth_luma as u8,
        bit_depth_chroma_minus8: depth_chroma as u8,
        width,
        height,
    })
}

/// scaling_list() (7.3.2.1.1.1): only the delta_scale values are in the bitstream.
fn skip_scaling_list(r: &mut BitReader, size: usize) -> Option<()> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// A PPS's own id and the SPS it refers to (7.3.2.2).
fn parse_pps_ids(nal: &[u8]) -> Option<(u32, u32)> {
    let data = rbsp(nal.get(1..)?);
    let mut r = BitReader::new(&data);
    let pps_id = r.ue()?;
    let sps_id = r.ue()?;
    (pps_id <= 255 && sps_id <= 31).then_some((pps_id, sps_id))
}

/// Collects SPS and PPS from frames until a decoder configuration can be built.
#[derive(Debug, Default, Clone)]
pub struct ParameterSets {
    sps: BTreeMap<u32, Vec<u8>>,
    pps: BTreeMap<u32, Vec<u8>>,
    latest: Option<Sps>,
}

impl ParameterSets {
    /// Remembers the SPS and PPS of an Annex B access unit (the latest of each id); says
    /// whether it holds an IDR slice, and the size of an SPS it holds.
    pub fn add_frame(&mut self, annexb: &[u8]) -> FrameInfo {
        let is_idr = |n: &[u8]| nal_type(n) == Some(NAL_IDR);
        super::nal::frame_info(annexb_nal_units(annexb), is_idr, |n| self.keep(n))
    }

    /// Keeps a parameter set; returns the size an SPS gives.
    fn keep(&mut self, nal: &[u8]) -> Option<(u32, u32)> {
        if nal.len() > MAX_PARAMETER_SET {
            return None;
        }
        match nal_type(nal)? {
            NAL_SPS => {
                let sps = parse_sps(nal)?;
                self.sps.insert(sps.id, nal.to_vec());
                Some((sps.width, sps.height)).inspect(|_| self.latest = Some(sps))
            }
            NAL_PPS => {
                let (id, _) = parse_pps_ids(nal)?;
                self.pps.insert(id, nal.to_vec());
                None
            }
            _ => None,
        }
    }

    /// The latest SPS seen.
    pub fn sps(&self) -> Option<&Sps> {
        self.latest.as_ref()
    }

    /// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) for every SPS and PPS
    /// seen, with 4-byte NAL lengths; profile and level from the latest SPS, and for high
    /// profiles the chroma format and bit depth extension. `None` until an SPS and a PPS have
    /// been seen.
    pub fn decoder_config(&self) -> Option<Vec<u8>> {
        let sps = self.latest.as_ref()?;
        if self.pps.is_empty() {
            return None;
        }
        let mut out = vec![
            1, // configurationVersion
            sps.profile_idc,
            sps.constraint_flags,
            sps.level_idc,
            0xfc | 3, // reserved, lengthSizeMinusOne = 3
        ];
        // At most 32 SPS ids and 256 PPS ids exist; the counts have 5 and 8 bits.
        let sps_list: Vec<&Vec<u8>> = self.sps.values().take(31).collect();
        out.push(0xe0 | sps_list.len() as u8);
        put_units(&mut out, &sps_list);
        let pps_list: Vec<&Vec<u8>> = self.pps.values().take(255).collect();
        out.push(pps_list.len() as u8);
        put_units(&mut out, &pps_list);
        // 14496-15 lists 100, 110, 122 and 144; ffmpeg writes it for every profile whose SPS
        // has these fields (244 too), and so do we: readers skip what they do not expect.
        if HIGH_PROFILES.contains(&sps.profile_idc) || sps.profile_idc == 144 {
            out.push(0xfc | sps.chroma_format_idc);
            out.push(0xf8 | sps.bit_depth_luma_minus8);
            out.push(0xf8 | sps.bit_depth_chroma_minus8);
            out.push(0); // numOfSequenceParameterSetExt
        }
        Some(out)
    }
}

/// What a Matroska block of length-prefixed NAL units says: keyframe = it holds an IDR
/// slice; size from an SPS in it.
pub fn frame_info_length_prefixed(data: &[u8], length_size: usize) -> FrameInfo {
    super::nal::frame_info(
        length_prefixed_nal_units(data, length_size),
        |n| nal_type(n) == Some(NAL_IDR),
        |n| parse_sps(n).map(|s| (s.width, s.height)),
    )
}

/// The parts of an avcC a reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Bytes of each NAL unit's length in the blocks (1, 2 or 4).
    pub length_size: usize,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
    pub profile_idc: u8,
    pub profile_compatibility: u8,
    pub level_idc: u8,
}

/// Reads an AVCDecoderConfigurationRecord; `None` if it is not one (wrong version, cut
/// short). The high-profile extension after the PPS is not read.
pub fn parse_decoder_config(avcc: &[u8]) -> Option<DecoderConfig> {
    let head = avcc.get(..6)?;
    if head[0] != 1 {
        return None;
    }
    let length_size = usize::from(head[4] & 3) + 1;
    if length_size == 3 {
        return None; // not allowed (14496-15 5.3.3.1.2)
    }
    let mut rest = avcc.get(6..)?;
    let sps = take_units(&mut rest, usize::from(head[5] & 0x1f))?;
    let (&pps_count, mut rest) = rest.split_first()?;
    let pps = take_units(&mut rest, usize::from(pps_count))?;
    Some(DecoderConfig {
        length_size,
        sps,
        pps,
        profile_idc: head[1],
        profile_compatibility: head[2],
        level_idc: head[3],
    })
}

#[cfg(test)]
mod tests;
