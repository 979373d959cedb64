//! The frame size of VP8 and VP9 keyframes, read from their bitstream headers, for the
//! video track's PixelWidth/PixelHeight. VP9 is read by [`crate::codec::vp9`], which knows
//! SVC superframes. (The check tool parses VP8 headers on its own, on purpose: it must not
//! repeat the writer's mistakes.)

use crate::media::Codec;

/// Width and height of a keyframe, or None if `frame` is not a keyframe of `codec` that can
/// be read.
pub fn frame_size(codec: Codec, frame: &[u8]) -> Option<(u32, u32)> {
    match codec {
        Codec::Vp8 => vp8_size(frame),
        // The size the picture decodes at: an SVC superframe's top spatial layer.
        Codec::Vp9 => crate::codec::vp9::frame_header(crate::codec::vp9::frames(frame)[0])
            .filter(|h| h.keyframe)
            .and_then(|_| crate::codec::vp9::picture_size(frame)),
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
