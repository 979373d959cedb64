//! H.265 (ITU-T H.265): str0m's RFC 7798 depacketizer hands us Annex B access units;
//! Matroska's `V_MPEGH/ISO/HEVC` wants length-prefixed NAL units and an
//! HEVCDecoderConfigurationRecord (hvcC, ISO/IEC 14496-15 8.3.3) in CodecPrivate.

use std::collections::BTreeMap;

use super::FrameInfo;
use super::bits::{BitReader, rbsp};
pub use super::nal::{
    AnnexB, LengthPrefixed, annexb_nal_units, length_prefixed_is_whole, length_prefixed_nal_units,
};
use super::nal::{MAX_PARAMETER_SET, put_units, take_units};

/// NAL unit types (Table 7-1) this module cares about.
pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
pub const NAL_AUD: u8 = 35;
/// Intra random access point pictures: BLA, IDR and CRA (16..=21; 22 and 23 are reserved).
pub const NAL_IRAP: std::ops::RangeInclusive<u8> = 16..=21;

/// The type of a NAL unit (bits 1..7 of its 2-byte header).
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b >> 1 & 0x3f)
}

/// Appends the NAL units of an Annex B access unit to `out` with 4-byte big-endian lengths,
/// dropping access unit delimiters and keeping VPS/SPS/PPS in band.
pub fn annexb_to_length_prefixed(annexb: &[u8], out: &mut Vec<u8>) {
    super::nal::annexb_to_length_prefixed(annexb, out, |n| nal_type(n) == Some(NAL_AUD));
}

/// The general part of profile_tier_level() (7.3.3), as the 12 bytes hvcC copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileTierLevel {
    /// general_profile_space (2 bits), general_tier_flag, general_profile_idc (5 bits).
    pub profile_byte: u8,
    pub compatibility_flags: u32,
    /// The 48 bits from general_progressive_source_flag to general_inbld_flag.
    pub constraint_flags: [u8; 6],
    pub level_idc: u8,
}

impl ProfileTierLevel {
    pub fn profile_idc(&self) -> u8 {
        self.profile_byte & 0x1f
    }

    pub fn tier(&self) -> u8 {
        self.profile_byte >> 5 & 1
    }
}

/// Reads profile_tier_level(1, max_sub_layers_minus1); the sub-layers' parts are read past.
fn profile_tier_level(r: &mut BitReader, max_sub_layers_minus1: u32) -> Option<ProfileTierLevel> {
    let profile_byte = r.u8(8)?;
    let compatibility_flags = r.bits(32)?;
    let mut constraint_flags = [0u8; 6];
    for b in &mut constraint_flags {
        *b = r.u8(8)?;
    }
    let level_idc = r.u8(8)?;
    let mut present = Vec::new();
    for _ in 0..max_sub_layers_minus1 {
        present.push((r.flag()?, r.flag()?));
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.skip(2)?; // reserved_zero_2bits
        }
    }
    for (profile, level) in present {
        if profile {
            r.skip(88)?;
        }
        if level {
            r.skip(8)?;
        }
    }
    Some(ProfileTierLevel {
        profile_byte,
        compatibility_flags,
        constraint_flags,
        level_idc,
    })
}

/// What an SPS (7.3.2.2) says, as far as a container needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sps {
    pub id: u32,
    pub max_sub_layers_minus1: u8,
    pub temporal_id_nesting: bool,
    pub ptl: ProfileTierLevel,
    pub chroma_format_idc: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    /// Picture size inside the conformance window.
    pub width: u32,
    pub height: u32,
}

/// Parses an SPS NAL unit (starting with its 2-byte header).
pub fn parse_sps(nal: &[u8]) -> Option<Sps> {
    if nal_type(nal)? != NAL_SPS {
        return None;
    }
    let data = rbsp(nal.get(2..)?);
    let mut r = BitReader::new(&data);
    r.skip(4)?; // sps_video_parameter_set_id
    let max_sub_layers_minus1 = r.u8(3)?;
    if max_sub_layers_minus1 > 6 {
        return None;
    }
    let temporal_id_nesting = r.flag()?;
    let ptl = profile_tier_level(&mut r, u32::from(max_sub_layers_minus1))?;
    let id = r.ue()?;
    let chroma_format_idc = r.ue()?;
    if id > 15 || chroma_format_idc > 3 {
        return None;
    }
    let separate_planes = chroma_format_idc == 3 && r.flag()?;
    let pic_width = r.ue()?;
    let pic_height = r.ue()?;
    let window = if r.flag()? {
        [r.ue()?, r.ue()?, r.ue()?, r.ue()?]
    } else {
        [0; 4]
    };
    let depth_luma = r.ue()?;
    let depth_chroma = r.ue()?;
    if depth_luma > 8 || depth_chroma > 8 {
        return None;
    }
    // The window offsets are in chroma samples (7-4, 7-5; Table 6-1).
    let chroma = if separate_planes {
        0
    } else {
        chroma_format_idc
    };
    let sub_width = if chroma == 1 || chroma == 2 { 2 } else { 1 };
    let sub_height = if chroma == 1 { 2 } else { 1 };
    let width = pic_width.checked_sub(window[0].checked_add(window[1])?.checked_mul(sub_width)?)?;
    let height =
        pic_height.checked_sub(window[2].checked_add(window[3])?.checked_mul(sub_height)?)?;
    if width == 0 || height == 0 {
        return None;
    }
    Some(Sps {
        id,
        max_sub_layers_minus1,
        temporal_id_nesting,
        ptl,
        chroma_format_idc: chroma_format_idc as u8,
        bit_depth_luma_minus8: depth_luma as u8,
        bit_depth_chroma_minus8: depth_chroma as u8,
        width,
        height,
    })
}

/// The id of a VPS (4 bits) or PPS (`ue(v)`, at most 63).
fn parameter_set_id(nal: &[u8], kind: u8) -> Option<u32> {
    let data = rbsp(nal.get(2..)?);
    let mut r = BitReader::new(&data);
    if kind == NAL_VPS {
        r.bits(4)
    } else {
        r.ue().filter(|&id| id <= 63)
    }
}

/// Collects VPS, SPS and PPS from frames until a decoder configuration can be built.
#[derive(Debug, Default, Clone)]
pub struct ParameterSets {
    vps: BTreeMap<u32, Vec<u8>>,
    sps: BTreeMap<u32, Vec<u8>>,
    pps: BTreeMap<u32, Vec<u8>>,
    latest: Option<Sps>,
}

impl ParameterSets {
    /// Remembers the parameter sets of an Annex B access unit (the latest of each id); says
    /// whether it holds an IRAP picture, and the size of an SPS it holds.
    pub fn add_frame(&mut self, annexb: &[u8]) -> FrameInfo {
        let is_irap = |n: &[u8]| nal_type(n).is_some_and(|t| NAL_IRAP.contains(&t));
        super::nal::frame_info(annexb_nal_units(annexb), is_irap, |n| self.keep(n))
    }

    /// Keeps a parameter set; returns the size an SPS gives.
    fn keep(&mut self, nal: &[u8]) -> Option<(u32, u32)> {
        if nal.len() > MAX_PARAMETER_SET {
            return None;
        }
        let kind = nal_type(nal)?;
        if kind == NAL_SPS {
            let sps = parse_sps(nal)?;
            self.sps.insert(sps.id, nal.to_vec());
            return Some((sps.width, sps.height)).inspect(|_| self.latest = Some(sps));
        }
        let map = match kind {
            NAL_VPS => &mut self.vps,
            NAL_PPS => &mut self.pps,
            _ => return None,
        };
        map.insert(parameter_set_id(nal, kind)?, nal.to_vec());
        None
    }

    /// The latest SPS seen.
    pub fn sps(&self) -> Option<&Sps> {
        self.latest.as_ref()
    }

    /// The HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1) with arrays of every
    /// VPS, SPS and PPS seen, 4-byte NAL lengths, profile/tier/level from the latest SPS.
    /// `array_completeness` is 0 (they stay in band too); min_spatial_segmentation_idc and
    /// parallelismType are 0 (unknown), as the record allows. `None` until a VPS, an SPS and
    /// a PPS have been seen.
    pub fn decoder_config(&self) -> Option<Vec<u8>> {
        let sps = self.latest.as_ref()?;
        if self.vps.is_empty() || self.pps.is_empty() {
            return None;
        }
        let ptl = &sps.ptl;
        let mut out = vec![1, ptl.profile_byte];
        out.extend_from_slice(&ptl.compatibility_flags.to_be_bytes());
        out.extend_from_slice(&ptl.constraint_flags);
        out.push(ptl.level_idc);
        out.extend_from_slice(&[
            0xf0,
            0x00, // reserved, min_spatial_segmentation_idc = 0
            0xfc, // reserved, parallelismType = 0
            0xfc | sps.chroma_format_idc,
            // 3-bit fields: a 16-bit stream (minus8 = 8) cannot be described, only not
            // spill into the reserved bits.
            0xf8 | sps.bit_depth_luma_minus8 & 7,
            0xf8 | sps.bit_depth_chroma_minus8 & 7,
            0x00,
            0x00, // avgFrameRate: unknown
            // constantFrameRate 0, numTemporalLayers, temporalIdNested, lengthSizeMinusOne 3
            (sps.max_sub_layers_minus1 + 1) << 3 | u8::from(sps.temporal_id_nesting) << 2 | 3,
            3, // numOfArrays
        ]);
        for (kind, map) in [
            (NAL_VPS, &self.vps),
            (NAL_SPS, &self.sps),
            (NAL_PPS, &self.pps),
        ] {
            let units: Vec<&Vec<u8>> = map.values().collect();
            out.push(kind); // array_completeness 0, reserved 0, NAL_unit_type
            out.extend_from_slice(&(units.len() as u16).to_be_bytes());
            put_units(&mut out, &units);
        }
        Some(out)
    }
}

/// What a Matroska block of length-prefixed NAL units says: keyframe = it holds an IRAP
/// picture; size from an SPS in it.
pub fn frame_info_length_prefixed(data: &[u8], length_size: usize) -> FrameInfo {
    super::nal::frame_info(
        length_prefixed_nal_units(data, length_size),
        |n| nal_type(n).is_some_and(|t| NAL_IRAP.contains(&t)),
        |n| parse_sps(n).map(|s| (s.width, s.height)),
    )
}

/// The parts of an hvcC a reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Bytes of each NAL unit's length in the blocks (1, 2 or 4).
    pub length_size: usize,
    pub vps: Vec<Vec<u8>>,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
    pub profile_idc: u8,
    pub tier: u8,
    pub level_idc: u8,
    pub chroma_format_idc: u8,
    pub bit_depth_luma_minus8: u8,
    pub bit_depth_chroma_minus8: u8,
    pub num_temporal_layers: u8,
    pub temporal_id_nested: bool,
}

/// Reads an HEVCDecoderConfigurationRecord; `None` if it is not one (wrong version, cut
/// short). NAL units of other types in its arrays (SEI) are skipped.
pub fn parse_decoder_config(hvcc: &[u8]) -> Option<DecoderConfig> {
    let head = hvcc.get(..23)?;
    if head[0] != 1 {
        return None;
    }
    let length_size = usize::from(head[21] & 3) + 1;
    if length_size == 3 {
        return None;
    }
    let mut config = DecoderConfig {
        length_size,
        vps: Vec::new(),
        sps: Vec::new(),
        pps: Vec::new(),
        profile_idc: head[1] & 0x1f,
        tier: head[1] >> 5 & 1,
        level_idc: head[12],
        chroma_format_idc: head[16] & 3,
        bit_depth_luma_minus8: head[17] & 7,
        bit_depth_chroma_minus8: head[18] & 7,
        num_temporal_layers: head[21] >> 3 & 7,
        temporal_id_nested: head[21] & 4 != 0,
    };
    let mut rest = hvcc.get(23..)?;
    for _ in 0..head[22] {
        let kind = rest.first()? & 0x3f;
        let count = usize::from(u16::from_be_bytes(rest.get(1..3)?.try_into().ok()?));
        rest = rest.get(3..)?;
        let units = take_units(&mut rest, count)?;
        match kind {
            NAL_VPS => config.vps.extend(units),
            NAL_SPS => config.sps.extend(units),
            NAL_PPS => config.pps.extend(units),
            _ => {}
        }
    }
    Some(config)
}

#[cfg(test)]
mod tests;
