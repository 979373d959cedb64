//! A bit reader for the parameter sets and headers in `h264`, `h265` and `av1`: fixed-width
//! fields, exp-Golomb codes (H.264/H.265 `ue(v)`/`se(v)`), AV1's `uvlc()`; and the removal of
//! emulation-prevention bytes that turns a NAL unit's payload into its RBSP.
//!
//! Every read returns `None` past the end of the data instead of panicking.

/// Reads bits MSB-first from a byte slice.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> BitReader<'a> {
        BitReader { data, pos: 0 }
    }

    /// How many bits have been read.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// One bit.
    pub(crate) fn bit(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    /// One bit as a flag (`u(1)`/`f(1)`).
    pub(crate) fn flag(&mut self) -> Option<bool> {
        self.bit()
    }

    /// `n` bits (at most 32) as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> Option<u32> {
        if n > 32 {
            return None;
        }
        let mut v: u64 = 0;
        for _ in 0..n {
            v = v << 1 | u64::from(self.bit()?);
        }
        u32::try_from(v).ok()
    }

    /// `n` bits (at most 8) as a byte.
    pub(crate) fn u8(&mut self, n: u32) -> Option<u8> {
        if n > 8 {
            return None;
        }
        self.bits(n).and_then(|v| u8::try_from(v).ok())
    }

    /// Skips `n` bits; `None` if fewer remain.
    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        let end = self.pos.checked_add(n)?;
        if end > self.data.len().checked_mul(8)? {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// Leading zero bits before a one bit, at most `max`.
    fn leading_zeros(&mut self, max: u32) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > max {
                return None;
            }
        }
        Some(zeros)
    }

    /// Unsigned exp-Golomb `ue(v)` (H.264 9.1); `None` beyond 32 bits.
    pub(crate) fn ue(&mut self) -> Option<u32> {
        let zeros = self.leading_zeros(31)?;
        let rest = self.bits(zeros)?;
        ((1u32 << zeros) - 1).checked_add(rest)
    }

    /// Signed exp-Golomb `se(v)` (H.264 9.1.1).
    pub(crate) fn se(&mut self) -> Option<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).ok()
    }

    /// AV1 `uvlc()` (AV1 spec 4.10.3): 32 or more leading zeros mean 2^32 - 1.
    pub(crate) fn uvlc(&mut self) -> Option<u32> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                // The spec reads no value bits here; the bits read so far are bounded by the
                // data, so this loop ends.
                return Some(u32::MAX);
            }
        }
        let rest = self.bits(zeros)?;
        ((1u32 << zeros) - 1).checked_add(rest)
    }
}

/// The RBSP of a NAL unit's payload: every `00 00 03` becomes `00 00` (H.264 7.4.1,
/// H.265 7.4.2).
pub(crate) fn rbsp(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &b in payload {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A LEB128 number (AV1 spec 4.10.5) at the start of `data`: its value and length in bytes.
/// At most 8 bytes are read, and the value must fit in 32 bits (as the spec requires).
pub(crate) fn leb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for i in 0..8 {
        let byte = *data.get(i)?;
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value <= u64::from(u32::MAX)).then_some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3, 4
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0010, 0b1000_0000]);
        assert_eq!(
            (r.ue(), r.ue(), r.ue(), r.ue(), r.ue()),
            (Some(0), Some(1), Some(2), Some(3), Some(4))
        );
        // se: 1 -> 0, 010 -> 1, 011 -> -1, 00100 -> 2
        let mut r = BitReader::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(
            (r.se(), r.se(), r.se(), r.se()),
            (Some(0), Some(1), Some(-1), Some(2))
        );
        // Too many leading zeros, or the data ends: None, no panic.
        assert_eq!(BitReader::new(&[0; 8]).ue(), None);
        assert_eq!(BitReader::new(&[0x00, 0x01]).ue(), None);
        assert_eq!(BitReader::new(&[]).bit(), None);
        // The largest ue(v): 31 zeros, a one, 31 ones.
        let mut r = BitReader::new(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.ue(), Some(u32::MAX - 1));
        assert_eq!(BitReader::new(&[0; 8]).uvlc(), Some(u32::MAX));
    }

    #[test]
    fn fields_and_skips() {
        let mut r = BitReader::new(&[0xa5, 0xff]);
        assert_eq!(r.bits(4), Some(0xa));
        assert_eq!(r.u8(8), Some(0x5f));
        assert_eq!(r.skip(4), Some(()));
        assert_eq!(r.bit(), None);
        assert_eq!(r.skip(1), None);
        assert_eq!(BitReader::new(&[0; 8]).bits(33), None);
    }

    #[test]
    fn emulation_prevention_and_leb128() {
        assert_eq!(
            rbsp(&[1, 0, 0, 3, 0, 0, 0, 3, 3, 0, 3]),
            [1, 0, 0, 0, 0, 0, 3, 0, 3]
        );
        assert_eq!(leb128(&[0x05]), Some((5, 1)));
        assert_eq!(leb128(&[0x80, 0x01]), Some((128, 2)));
        assert_eq!(leb128(&[0x80]), None);
        assert_eq!(leb128(&[0xff; 9]), None);
    }
}
