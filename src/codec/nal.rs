//! NAL unit framing shared by H.264 and H.265: Annex B byte streams (start codes), the
//! length-prefixed form Matroska and MP4 store, and the conversion between them.

/// The position of the next `00 00 01` start code in `data`.
fn start_code(data: &[u8]) -> Option<usize> {
    data.windows(3).position(|w| w == [0, 0, 1])
}

/// The NAL units of an Annex B byte stream (see [`annexb_nal_units`]).
pub struct AnnexB<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for AnnexB<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.rest.is_empty() {
            let (nal, rest) = match start_code(self.rest) {
                Some(at) => (
                    self.rest.get(..at).unwrap_or_default(),
                    self.rest.get(at + 3..).unwrap_or_default(),
                ),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            // Zeros before a start code belong to it (a 4-byte start code) or are
            // trailing_zero_8bits, not to the NAL unit.
            let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if end > 0 {
                return nal.get(..end);
            }
        }
        None
    }
}

/// Splits an Annex B byte stream on its `00 00 01` / `00 00 00 01` start codes; yields each
/// NAL unit with its header, without trailing zero bytes. Bytes before the first start code
/// are skipped; so are empty NAL units.
pub fn annexb_nal_units(data: &[u8]) -> AnnexB<'_> {
    let rest = start_code(data)
        .and_then(|at| data.get(at + 3..))
        .unwrap_or_default();
    AnnexB { rest }
}

/// The NAL units of a length-prefixed block (see [`length_prefixed_nal_units`]).
pub struct LengthPrefixed<'a> {
    rest: &'a [u8],
    length_size: usize,
}

impl<'a> LengthPrefixed<'a> {
    /// Whether every byte was consumed by whole NAL units (call after iterating).
    pub fn is_complete(&self) -> bool {
        self.rest.is_empty()
    }
}

impl<'a> Iterator for LengthPrefixed<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if !(1..=4).contains(&self.length_size) {
                return None;
            }
            let len_bytes = self.rest.get(..self.length_size)?;
            let len = len_bytes
                .iter()
                .fold(0usize, |n, &b| n << 8 | usize::from(b));
            let end = self.length_size.checked_add(len)?;
            let nal = self.rest.get(self.length_size..end)?;
            self.rest = self.rest.get(end..).unwrap_or_default();
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    }
}

/// Splits a Matroska/MP4 block of NAL units, each preceded by its length in `length_size`
/// (1 to 4) big-endian bytes. Stops, without panicking, at a length that runs past the end
/// (then [`LengthPrefixed::is_complete`] is false).
pub fn length_prefixed_nal_units(data: &[u8], length_size: usize) -> LengthPrefixed<'_> {
    LengthPrefixed {
        rest: data,
        length_size,
    }
}

/// Whether `data` is made of whole length-prefixed NAL units, nothing left over.
pub fn length_prefixed_is_whole(data: &[u8], length_size: usize) -> bool {
    let mut units = length_prefixed_nal_units(data, length_size);
    units.by_ref().for_each(drop);
    units.is_complete()
}

/// Appends the NAL units of `annexb` to `out`, each after its length as 4 big-endian bytes,
/// leaving out those `drop` picks.
pub(crate) fn annexb_to_length_prefixed(
    annexb: &[u8],
    out: &mut Vec<u8>,
    drop: impl Fn(&[u8]) -> bool,
) {
    for nal in annexb_nal_units(annexb).filter(|n| !drop(n)) {
        if let Ok(len) = u32::try_from(nal.len()) {
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(nal);
        }
    }
}

/// What a run of NAL units says: keyframe if `is_key` says so of one of them, size from the
/// last one `sps_size` reads a size from (it returns `None` for anything but an SPS).
pub(crate) fn frame_info<'a>(
    nals: impl Iterator<Item = &'a [u8]>,
    is_key: impl Fn(&[u8]) -> bool,
    mut sps_size: impl FnMut(&[u8]) -> Option<(u32, u32)>,
) -> super::FrameInfo {
    let mut info = super::FrameInfo::default();
    for nal in nals {
        info.keyframe |= is_key(nal);
        if let Some(size) = sps_size(nal) {
            info.size = Some(size);
        }
    }
    info
}

/// Parameter sets longer than this cannot go into a decoder configuration record (16-bit
/// lengths), so they are not kept.
pub(crate) const MAX_PARAMETER_SET: usize = u16::MAX as usize;

/// Each unit after its 16-bit big-endian length (units are at most `MAX_PARAMETER_SET`).
pub(crate) fn put_units(out: &mut Vec<u8>, units: &[&Vec<u8>]) {
    for unit in units {
        out.extend_from_slice(&(unit.len() as u16).to_be_bytes());
        out.extend_from_slice(unit);
    }
}

/// `count` units, each after a 16-bit big-endian length, from the front of `data`.
pub(crate) fn take_units(data: &mut &[u8], count: usize) -> Option<Vec<Vec<u8>>> {
    let mut units = Vec::new();
    for _ in 0..count {
        let len = usize::from(u16::from_be_bytes(data.get(..2)?.try_into().ok()?));
        units.push(data.get(2..2 + len)?.to_vec());
        *data = data.get(2 + len..)?;
    }
    Some(units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annexb_splits_on_both_start_codes() {
        let data = [
            9, 9, 0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 0, 1, 0x65, 4, 0, 0,
        ];
        let nals: Vec<&[u8]> = annexb_nal_units(&data).collect();
        assert_eq!(nals, [&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
        assert_eq!(annexb_nal_units(&[1, 2, 3]).count(), 0);
        assert_eq!(annexb_nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(annexb_nal_units(&[0, 0, 1, 0, 0, 1, 5]).count(), 1);
    }

    #[test]
    fn length_prefixed_stops_at_a_bad_length() {
        let data = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 9, 0x41];
        let mut units = length_prefixed_nal_units(&data, 4);
        assert_eq!(units.next(), Some(&[0x65, 1][..]));
        assert_eq!(units.next(), None);
        assert!(!units.is_complete());
        assert!(!length_prefixed_is_whole(&data, 4));
        assert!(length_prefixed_is_whole(&data[..6], 4));
        assert_eq!(length_prefixed_nal_units(&[1, 5], 1).count(), 1);
        assert_eq!(length_prefixed_nal_units(&data, 0).count(), 0);
        assert_eq!(length_prefixed_nal_units(&data, 5).count(), 0);
        let huge = [0xff, 0xff, 0xff, 0xff, 1];
        assert_eq!(length_prefixed_nal_units(&huge, 4).count(), 0);
    }

    #[test]
    fn conversion_drops_what_it_is_told_to() {
        let mut out = Vec::new();
        annexb_to_length_prefixed(&[0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x65, 7], &mut out, |n| {
            n[0] == 9
        });
        assert_eq!(out, [0, 0, 0, 2, 0x65, 7]);
    }
}
