//! VP8 and VP9 frame headers, read independently of the writer: whether a frame is a
//! keyframe by its bitstream, and a keyframe's frame size.

/// What a frame's header says (the size on keyframes only).
pub use crate::codec::FrameInfo as FrameHeader;

/// VP8, RFC 6386 section 9: frame tag bit 0 is 0 on keyframes, which continue with the start
/// code 9d 01 2a and two 16-bit little-endian fields (14 bits of size, 2 of scaling).
pub fn vp8(frame: &[u8]) -> Option<FrameHeader> {
    let tag = *frame.first()?;
    if tag & 1 == 1 {
        return (frame.len() >= 3).then_some(FrameHeader {
            keyframe: false,
            size: None,
        });
    }
    let start = frame.get(3..10)?;
    if start[..3] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = (u32::from(start[3]) | u32::from(start[4]) << 8) & 0x3fff;
    let height = (u32::from(start[5]) | u32::from(start[6]) << 8) & 0x3fff;
    Some(FrameHeader {
        keyframe: true,
        size: Some((width, height)),
    })
}

/// VP9, bitstream specification 6.2 (uncompressed header). The first frame of a superframe
/// is at the start of the block, so the block's first bytes are a frame header.
pub fn vp9(frame: &[u8]) -> Option<FrameHeader> {
    // The fields needed all lie in the first 10 bytes; read them as one big-endian number.
    let mut head = [0u8; 10];
    let n = frame.len().min(10);
    head[..n].copy_from_slice(&frame[..n]);
    let word = u128::from_be_bytes({
        let mut b = [0u8; 16];
        b[..10].copy_from_slice(&head);
        b
    });
    let avail = n * 8;
    let mut at = 0usize;
    let mut take = |bits: usize| -> Option<u32> {
        if at + bits > avail {
            return None;
        }
        let v = (word >> (128 - at - bits)) & ((1u128 << bits) - 1);
        at += bits;
        Some(v as u32)
    };
    if take(2)? != 0b10 {
        return None;
    }
    let profile = take(1)? | take(1)? << 1;
    if profile == 3 {
        take(1)?;
    }
    if take(1)? == 1 {
        // show_existing_frame: repeats a decoded frame, no header of its own.
        return Some(FrameHeader {
            keyframe: false,
            size: None,
        });
    }
    let keyframe = take(1)? == 0;
    take(2)?; // show_frame, error_resilient_mode
    if !keyframe {
        return Some(FrameHeader {
            keyframe,
            size: None,
        });
    }
    if take(24)? != 0x49_83_42 {
        return None;
    }
    if profile >= 2 {
        take(1)?; // bit depth
    }
    let rgb = take(3)? == 7;
    let extra = match (rgb, profile == 1 || profile == 3) {
        (false, true) => 4,  // color_range, subsampling x/y, reserved
        (false, false) => 1, // color_range
        (true, true) => 1,   // reserved
        (true, false) => 0,
    };
    if extra > 0 {
        take(extra)?;
    }
    let width = take(16)? + 1;
    let height = take(16)? + 1;
    Some(FrameHeader {
        keyframe,
        size: Some((width, height)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_headers() {
        let key = [0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        assert_eq!(
            vp8(&key),
            Some(FrameHeader {
                keyframe: true,
                size: Some((320, 240))
            })
        );
        assert_eq!(vp8(&[0x51, 0, 0]).map(|h| h.keyframe), Some(false));
        assert_eq!(vp8(&[0x50, 0x42, 0x00, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(vp8(&[]), None);
    }

    #[test]
    fn vp9_headers() {
        // marker 10, profile 0, not existing, key, shown, not resilient, sync code,
        // color space 1 + range 0, width-1 = 639, height-1 = 479.
        let bits = format!("10000010{:024b}0010{:016b}{:016b}", 0x49_83_42, 639, 479);
        let padded = format!("{bits:0<80}");
        let bytes: Vec<u8> = (0..10)
            .map(|i| u8::from_str_radix(&padded[i * 8..i * 8 + 8], 2).unwrap())
            .collect();
        assert_eq!(
            vp9(&bytes),
            Some(FrameHeader {
                keyframe: true,
                size: Some((640, 480))
            })
        );
        // An inter frame: frame_type 1.
        assert_eq!(vp9(&[0b1000_0110]).map(|h| h.keyframe), Some(false));
        assert_eq!(vp9(&[0xff, 0xff]), None);
    }
}
