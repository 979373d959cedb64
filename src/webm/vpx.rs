//! The frame size of VP8 and VP9 keyframes, read from their bitstream headers, for the
//! video track's PixelWidth/PixelHeight. (The check tool parses these headers on its own, on
//! purpose: it must not repeat the writer's mistakes.)

use crate::media::Codec;

/// Width and height of a keyframe, or None if `frame` is not a keyframe of `codec` that can
/// be read.
pub fn frame_size(codec: Codec, frame: &[u8]) -> Option<(u32, u32)> {
    match codec {
        Codec::Vp8 => vp8_size(frame),
        Codec::Vp9 => vp9_size(frame),
        _ => None,
    }
}

/// VP8 (RFC 6386 section 9.1): a 3-byte frame tag whose lowest bit is 0 on keyframes, the
/// start code 9d 01 2a, then 14-bit width and height (little-endian, top 2 bits are scaling).
fn vp8_size(f: &[u8]) -> Option<(u32, u32)> {
    if f.len() < 10 || f[0] & 1 != 0 || f[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([f[6], f[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([f[8], f[9]]) & 0x3fff);
    (w > 0 && h > 0).then_some((w, h))
}

/// Reads bits most significant first.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self.data.get(self.pos / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - self.pos % 8)) & 1);
            self.pos += 1;
        }
        Some(v)
    }
}

/// VP9 (bitstream spec section 6.2, uncompressed header): frame marker, profile,
/// show_existing_frame, frame_type (0 = key), show_frame, error_resilient_mode, sync code
/// 49 83 42, color config (depends on profile), then width-1 and height-1 in 16 bits each.
fn vp9_size(f: &[u8]) -> Option<(u32, u32)> {
    let mut b = Bits { data: f, pos: 0 };
    if b.read(2)? != 2 {
        return None;
    }
    let low = b.read(1)?;
    let high = b.read(1)?;
    let profile = (high << 1) | low;
    if profile == 3 {
        b.read(1)?;
    }
    if b.read(1)? == 1 {
        return None; // show_existing_frame: no header of its own
    }
    if b.read(1)? != 0 {
        return None; // not a keyframe
    }
    b.read(2)?; // show_frame, error_resilient_mode
    if b.read(24)? != 0x49_83_42 {
        return None;
    }
    if profile >= 2 {
        b.read(1)?; // ten_or_twelve_bit
    }
    let color_space = b.read(3)?;
    if color_space != 7 {
        b.read(1)?; // color_range
        if profile == 1 || profile == 3 {
            b.read(3)?; // subsampling_x, subsampling_y, reserved_zero
        }
    } else if profile == 1 || profile == 3 {
        b.read(1)?; // reserved_zero
    }
    let w = b.read(16)? + 1;
    let h = b.read(16)? + 1;
    Some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_header() {
        // Frame tag (keyframe, version 0, show_frame), start code, 640x480.
        let f = [
            0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 0x00,
        ];
        assert_eq!(frame_size(Codec::Vp8, &f), Some((640, 480)));
        let mut inter = f;
        inter[0] |= 1;
        assert_eq!(frame_size(Codec::Vp8, &inter), None);
        assert_eq!(frame_size(Codec::Vp8, &f[..5]), None);
    }

    #[test]
    fn vp9_keyframe_header() {
        // Profile 0 keyframe: marker 10, profile 00, show_existing 0, key 0, show 1, er 0,
        // sync code, color space 2 (BT.709) + range 0, then 319 and 239.
        let mut bits = String::from("10");
        bits += "00"; // profile
        bits += "0"; // show_existing_frame
        bits += "0"; // frame_type = key
        bits += "1"; // show_frame
        bits += "0"; // error_resilient_mode
        bits += "010010011000001101000010"; // sync code
        bits += "010"; // color_space
        bits += "0"; // color_range
        bits += &format!("{:016b}{:016b}", 319, 239);
        while bits.len() % 8 != 0 {
            bits.push('0');
        }
        let bytes: Vec<u8> = bits
            .as_bytes()
            .chunks(8)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
            .collect();
        assert_eq!(frame_size(Codec::Vp9, &bytes), Some((320, 240)));
        assert_eq!(frame_size(Codec::Vp9, &bytes[..6]), None);
        assert_eq!(frame_size(Codec::Vp9, &[0xff; 12]), None);
    }
}
