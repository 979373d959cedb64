//! Reading Matroska blocks, shared by the check tool, the synthetic publisher's clip reader
//! and the room file: the one place that decodes a block's header and frames.

use std::io::{self, Read, Seek, SeekFrom};

use ebml_iterable::error::CorruptedFileError;
use webm_iterable::WebmIterator;
use webm_iterable::errors::TagIteratorError;
use webm_iterable::matroska_spec::{EbmlSpecification, MatroskaSpec, TagDataType};

/// The largest element a reader here holds in memory (a block, CodecPrivate, a string).
/// webm-iterable holds every element it reads whole, and allocates (zero-filled, then copied)
/// its claimed size before reading it: a 256 MiB sparse file claiming one huge block cost
/// 794 MB, and a claim just under a 64 MiB cap still cost 220 MB. The largest element a
/// recording holds is a video keyframe, well under a MiB for WebRTC video and a few MiB for a
/// 4K intra frame; an element claiming more than this is corrupt. Masters (Segment, Cluster,
/// Cues) are not held: they may claim up to [`MAX_MASTER`] ([`next_element`]).
pub const MAX_ELEMENT: usize = 16 << 20;
/// The largest master element (Cluster, Cues, ...) taken. Its children are read one by one,
/// so its size costs nothing; the Segment, which spans the file, is presented as unknown-sized
/// ([`SegmentAsUnknown`]) and needs no limit.
pub const MAX_MASTER: usize = 4 << 30;
/// The largest element a reader takes from a file of `bytes`: [`MAX_ELEMENT`], or the file's
/// size if smaller (at least 64 KiB, webm-iterable's own buffer). webm-iterable allocates an
/// element's claimed size before reading it: a 4 KiB file claiming a 60 MiB block cost 190 MB.
pub fn element_limit(bytes: u64) -> usize {
    usize::try_from(bytes.max(64 << 10))
        .unwrap_or(usize::MAX)
        .min(MAX_ELEMENT)
}

/// The iterator's next item, with the element limit `limit` (from [`element_limit`]) applied
/// to what is held in memory only: a master element (a Cluster) refused for claiming more than
/// that, but not more than [`MAX_MASTER`], is taken, as its children are read one by one and
/// its size costs nothing (a cut copy's last Cluster claims more than there is).
/// webm-iterable has one limit for every element; the refused header is not consumed, so it
/// is read again under [`MAX_MASTER`].
pub fn next_element<R: Read>(
    it: &mut WebmIterator<R>,
    limit: usize,
) -> Option<Result<MatroskaSpec, TagIteratorError>> {
    let item = it.next();
    if let Some(Err(TagIteratorError::CorruptedFileData(CorruptedFileError::InvalidTagSize {
        tag_id,
        size,
        ..
    }))) = &item
        && *size <= MAX_MASTER
        && MatroskaSpec::get_tag_data_type(*tag_id) == Some(TagDataType::Master)
    {
        it.set_max_allowable_tag_size(Some(MAX_MASTER));
        let retry = it.next();
        it.set_max_allowable_tag_size(Some(limit));
        return retry;
    }
    item
}

/// How much of a file's start is looked at for the EBML header and the Segment's size.
const HEAD: usize = 4096;
const EBML_ID: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];
const SEGMENT_ID: [u8; 4] = [0x18, 0x53, 0x80, 0x67];

/// Where a file's Segment says its data is: from `data_start`, `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentExtent {
    pub data_start: u64,
    pub size: u64,
}

/// A Matroska stream with its Segment's size presented as unknown, its real extent kept
/// aside. A finalized file's Segment spans the whole file, so a reader that checks sizes
/// must allow an element as large as the file, and a copy cut short claims more than there
/// is: every element then had to be allowed the file's size (and a huge claimed block cost
/// that much memory), and a cut copy's oversized Segment made it unreadable. Presented as
/// unknown-sized, the Segment is read to the end of what there is, and every other element
/// can be held to [`MAX_ELEMENT`]. Whether the file holds its whole Segment is
/// [`SegmentExtent`] against the file's length. The size's bytes are replaced by an unknown
/// size of the same length, so offsets do not move.
pub struct SegmentAsUnknown<R> {
    inner: R,
    head: Vec<u8>,
    at: usize,
    segment: Option<SegmentExtent>,
}

impl<R: Read> SegmentAsUnknown<R> {
    pub fn new(mut inner: R) -> io::Result<SegmentAsUnknown<R>> {
        let mut head = Vec::with_capacity(HEAD);
        (&mut inner).take(HEAD as u64).read_to_end(&mut head)?;
        let segment = unknown_segment_size(&mut head);
        Ok(SegmentAsUnknown {
            inner,
            head,
            at: 0,
            segment,
        })
    }

    /// The Segment's extent as the file gives it; `None` when it was unknown-sized already
    /// (a file written live), or not found at the start.
    pub fn segment(&self) -> Option<SegmentExtent> {
        self.segment
    }
}

impl<R: Read> Read for SegmentAsUnknown<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// Absolute seeks only (what resynchronising needs): the first bytes come from the kept head,
/// with the Segment's size replaced, so a seek back into them reads the same bytes as before.
impl<R: Read + Seek> Seek for SegmentAsUnknown<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Start(to) = pos else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "only absolute seeks",
            ));
        };
        let head = self.head.len() as u64;
        // `inner` sits right after the head while the head is being read.
        self.inner.seek(SeekFrom::Start(to.max(head)))?;
        self.at = usize::try_from(to.min(head)).unwrap_or(self.head.len());
        Ok(to)
    }
}

/// A Cluster's EBML ID: where a reader starts again after damage (as ffmpeg's demuxer does).
pub const CLUSTER_ID: [u8; 4] = [0x1F, 0x43, 0xB6, 0x75];
/// A Cluster's first child: its Timestamp (RFC 9559 says it comes first), or a CRC-32 or Void.
const CLUSTER_FIRST_CHILD: [u8; 3] = [0xE7, 0xBF, 0xEC];

/// The offset of the first Cluster at or after `from`: its ID, a valid size, then a Timestamp
/// (or CRC-32 or Void) as its first child, so that the ID's four bytes turning up by chance in
/// compressed media are not taken for one. `None` if there is none before the end. Reads
/// 64 KiB at a time, whatever the size of the rest.
pub fn find_cluster<R: Read + Seek>(src: &mut R, from: u64) -> io::Result<Option<u64>> {
    /// ID, the longest size, one byte of the first child.
    const NEED: usize = 4 + 8 + 1;
    src.seek(SeekFrom::Start(from))?;
    let mut chunk = vec![0u8; 1 << 16];
    let mut window: Vec<u8> = Vec::with_capacity(chunk.len() + NEED);
    // The offset of window[0].
    let mut offset = from;
    loop {
        let n = match src.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let eof = n == 0;
        window.extend_from_slice(&chunk[..n]);
        let mut i = 0;
        while let Some(p) = window[i..].windows(4).position(|w| w == CLUSTER_ID) {
            let at = i + p;
            i = at + 1;
            let Some(&size_first) = window.get(at + 4) else {
                break;
            };
            if size_first == 0 {
                continue;
            }
            let child = at + 4 + size_first.leading_zeros() as usize + 1;
            match window.get(child) {
                Some(b) if CLUSTER_FIRST_CHILD.contains(b) => return Ok(Some(offset + at as u64)),
                Some(_) => continue,
                None if eof => continue,
                // Decided with the next chunk: kept in the window below.
                None => break,
            }
        }
        if eof {
            return Ok(None);
        }
        let keep = window.len().saturating_sub(NEED);
        window.drain(..keep);
        offset += keep as u64;
    }
}

/// An EBML element size: its value, its length in bytes, and whether it is "unknown".
fn element_size(data: &[u8]) -> Option<(u64, usize, bool)> {
    let first = *data.first()?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    let bytes = data.get(..len)?;
    let mut value = u64::from(first) & ((1u64 << (8 - len)) - 1);
    for b in &bytes[1..] {
        value = (value << 8) | u64::from(*b);
    }
    let unknown = value == (1u64 << (7 * len)) - 1;
    Some((value, len, unknown))
}

/// In a file's first bytes: after the EBML header, a Segment with a known size is given an
/// unknown one of the same length; returns where its data was said to be.
fn unknown_segment_size(head: &mut [u8]) -> Option<SegmentExtent> {
    if !head.starts_with(&EBML_ID) {
        return None;
    }
    let (header, len, unknown) = element_size(&head[4..])?;
    if unknown {
        return None;
    }
    let segment = 4usize
        .checked_add(len)?
        .checked_add(usize::try_from(header).ok()?)?;
    if head.get(segment..segment.checked_add(4)?)? != SEGMENT_ID {
        return None;
    }
    let at = segment + 4;
    let (size, len, unknown) = element_size(head.get(at..)?)?;
    if unknown {
        return None;
    }
    head[at] = 0xFF >> (len - 1);
    for b in &mut head[at + 1..at + len] {
        *b = 0xFF;
    }
    Some(SegmentExtent {
        data_start: (at + len) as u64,
        size,
    })
}

/// A block's track, relative time, keyframe flag (SimpleBlock only) and frames.
pub type DecodedBlock = (u64, i16, bool, Vec<Vec<u8>>);

/// Why a block's bytes cannot be decoded. The lacing variants are hostile or corrupt lace
/// headers (RFC 9559 10.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The element given is not a SimpleBlock or Block.
    #[error("not a block")]
    NotABlock,
    /// Too short for its track number, relative time and flags.
    #[error("a block of {len} bytes is shorter than its header")]
    Short { len: usize },
    #[error("bad lacing: no frame count")]
    NoFrameCount,
    #[error("bad lacing: a Xiph size runs past the block")]
    XiphSizePastEnd,
    #[error("bad lacing: no first EBML size")]
    NoFirstEbmlSize,
    /// The first EBML lace size does not fit in memory's address range.
    #[error("bad lacing: size")]
    EbmlSizeTooLarge,
    #[error("bad lacing: an EBML size difference runs past the block")]
    EbmlDifferencePastEnd,
    #[error("bad lacing: a negative frame size")]
    NegativeFrameSize,
    #[error("bad lacing: fixed-size frames do not divide the block")]
    FixedSizeUneven,
    #[error("bad lacing: a frame runs past the block")]
    FramePastEnd,
}

#[cfg(test)]
mod segment_tests {
    use super::*;

    /// The next Cluster is found across chunk boundaries; its ID in the middle of media data
    /// (not followed by a Timestamp) is not taken for one.
    #[test]
    fn the_next_cluster_is_found_and_lookalikes_are_not() {
        for fill in [0usize, 10, (1 << 16) - 5, (1 << 16) - 13, (1 << 16) + 3] {
            let mut data = vec![0x55u8; fill];
            // A lookalike: the ID, a size, then not a Timestamp.
            data.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75, 0x84, 0x01]);
            data.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75, 0x00]);
            let real = data.len() as u64;
            data.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75, 0x01, 0, 0, 0, 0, 0, 0, 0x10]);
            data.extend_from_slice(&[0xE7, 0x81, 0x00]);
            let mut c = io::Cursor::new(&data);
            assert_eq!(find_cluster(&mut c, 0).unwrap(), Some(real), "fill {fill}");
            assert_eq!(find_cluster(&mut c, real + 1).unwrap(), None, "fill {fill}");
            // Cut inside the header: none.
            let mut c = io::Cursor::new(&data[..real as usize + 6]);
            assert_eq!(find_cluster(&mut c, 0).unwrap(), None, "fill {fill}");
        }
    }

    /// Seeking back into the head reads the replaced Segment size, as the first read did.
    #[test]
    fn seeks_go_through_the_head() {
        let mut file = vec![
            0x1A, 0x45, 0xDF, 0xA3, 0x83, 1, 2, 3, 0x18, 0x53, 0x80, 0x67, 0x43, 0xE8,
        ];
        file.extend((0..6000u32).map(|i| i as u8));
        let mut r = SegmentAsUnknown::new(io::Cursor::new(file.clone())).unwrap();
        let mut first = Vec::new();
        r.read_to_end(&mut first).unwrap();
        for at in [0u64, 12, 13, 4095, 4096, 5000] {
            r.seek(SeekFrom::Start(at)).unwrap();
            let mut again = Vec::new();
            r.read_to_end(&mut again).unwrap();
            assert_eq!(again, first[at as usize..], "from {at}");
        }
    }

    #[test]
    fn a_known_segment_size_is_presented_unknown_and_kept() {
        // EBML header of 3 payload bytes, then a Segment of 1000 bytes (2-byte size).
        let mut file = vec![
            0x1A, 0x45, 0xDF, 0xA3, 0x83, 1, 2, 3, 0x18, 0x53, 0x80, 0x67,
        ];
        file.extend_from_slice(&[0x43, 0xE8]);
        file.extend_from_slice(&[0xEC, 0x80]);
        let mut r = SegmentAsUnknown::new(&file[..]).unwrap();
        assert_eq!(
            r.segment(),
            Some(SegmentExtent {
                data_start: 14,
                size: 1000
            })
        );
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), file.len());
        assert_eq!(&out[12..14], &[0x7F, 0xFF], "unknown, same length");
        assert_eq!(&out[..12], &file[..12]);
        assert_eq!(&out[14..], &file[14..]);
        // Already unknown (a live file), or not Matroska: untouched.
        let mut live = file.clone();
        live[12..14].copy_from_slice(&[0x7F, 0xFF]);
        let r = SegmentAsUnknown::new(&live[..]).unwrap();
        assert_eq!(r.segment(), None);
        for junk in [
            &b""[..],
            b"\x1A\x45\xDF\xA3",
            b"\x1A\x45\xDF\xA3\x00",
            b"RIFF....",
        ] {
            let mut r = SegmentAsUnknown::new(junk).unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, junk);
        }
    }
}

/// Decodes a SimpleBlock or Block without trusting its bytes (RFC 9559 10.2-10.3: track
/// number, relative time, flags, and Xiph, EBML or fixed-size lacing). Written here rather
/// than taken from webm-iterable 0.7, whose block parser indexes past the end of short blocks
/// and overflows on hostile lace sizes (found by the `webm_check` and `svg_timeline` fuzz
/// targets): every length here is checked, so nothing panics.
pub fn decode_block(tag: &MatroskaSpec) -> Result<DecodedBlock, BlockError> {
    let data = match tag {
        MatroskaSpec::SimpleBlock(d) | MatroskaSpec::Block(d) => d.as_slice(),
        _ => return Err(BlockError::NotABlock),
    };
    let short = || BlockError::Short { len: data.len() };
    let (track, n) = vint(data).ok_or_else(short)?;
    let head = data.get(n..n + 3).ok_or_else(short)?;
    let time = i16::from_be_bytes([head[0], head[1]]);
    let flags = head[2];
    // A SimpleBlock is a Block whose flags byte also carries the keyframe bit (0x80).
    let keyframe = matches!(tag, MatroskaSpec::SimpleBlock(_)) && flags & 0x80 != 0;
    let body = &data[n + 3..];
    let frames = match flags >> 1 & 3 {
        0 => vec![body.to_vec()],
        lacing => laced(lacing, body)?,
    };
    Ok((track, time, keyframe, frames))
}

/// An EBML variable-size integer: its value (length marker removed) and its length.
fn vint(data: &[u8]) -> Option<(u64, usize)> {
    let first = *data.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    let bytes = data.get(..len)?;
    let mut value = u64::from(first) & (0xff >> len);
    for &b in &bytes[1..] {
        value = value << 8 | u64::from(b);
    }
    Some((value, len))
}

/// The frames of a laced block body: 1 Xiph, 2 fixed-size, 3 EBML lacing.
fn laced(lacing: u8, body: &[u8]) -> Result<Vec<Vec<u8>>, BlockError> {
    let (&count_minus_one, mut rest) = match body.split_first() {
        Some(v) => v,
        None => return Err(BlockError::NoFrameCount),
    };
    let count = usize::from(count_minus_one) + 1;
    let mut sizes: Vec<usize> = Vec::with_capacity(count);
    match lacing {
        1 => {
            for _ in 1..count {
                let mut size = 0usize;
                loop {
                    let Some((&b, r)) = rest.split_first() else {
                        return Err(BlockError::XiphSizePastEnd);
                    };
                    rest = r;
                    size += usize::from(b);
                    if b != 255 {
                        break;
                    }
                }
                sizes.push(size);
            }
        }
        3 => {
            let Some((first, n)) = vint(rest) else {
                return Err(BlockError::NoFirstEbmlSize);
            };
            rest = &rest[n..];
            let mut size = i128::from(first);
            if count > 1 {
                sizes.push(usize::try_from(size).map_err(|_| BlockError::EbmlSizeTooLarge)?);
            }
            for _ in 2..count {
                let Some((raw, n)) = vint(rest) else {
                    return Err(BlockError::EbmlDifferencePastEnd);
                };
                rest = &rest[n..];
                // Signed: the unsigned value minus half its range.
                let bias = (1i128 << (7 * n - 1)) - 1;
                size += i128::from(raw) - bias;
                match usize::try_from(size) {
                    Ok(s) => sizes.push(s),
                    Err(_) => return Err(BlockError::NegativeFrameSize),
                }
            }
        }
        _ => {
            if rest.len() % count != 0 {
                return Err(BlockError::FixedSizeUneven);
            }
            sizes = vec![rest.len() / count; count - 1];
        }
    }
    let mut frames = Vec::with_capacity(count);
    for size in sizes {
        if size > rest.len() {
            return Err(BlockError::FramePastEnd);
        }
        let (frame, r) = rest.split_at(size);
        frames.push(frame.to_vec());
        rest = r;
    }
    // The last frame is what is left.
    frames.push(rest.to_vec());
    Ok(frames)
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
                assert_eq!(r.unwrap_err(), BlockError::NoFrameCount, "flags {flags:#x}");
            }
        }
    }

    /// Each lacing, read the way ffmpeg's Matroska demuxer lays it out.
    #[test]
    fn xiph_ebml_and_fixed_lacing() {
        let block = |flags: u8, body: &[u8]| {
            let mut d = vec![0x82, 0x00, 0x10, flags];
            d.extend_from_slice(body);
            decode_block(&MatroskaSpec::Block(d))
        };
        let frames = |sizes: &[usize]| -> Vec<Vec<u8>> {
            sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| vec![i as u8; n])
                .collect()
        };
        // Xiph: 3 frames of 300, 2 and 5 bytes: sizes 255+45, 2; the last is the rest.
        let f = frames(&[300, 2, 5]);
        let mut body = vec![2, 255, 45, 2];
        body.extend(f.concat());
        let (track, time, key, got) = block(0x02, &body).unwrap();
        assert_eq!((track, time, key), (2, 16, false));
        assert_eq!(got, f);
        // EBML: first size 300 (2-byte vint 0x412c), then 2 - 300 = -298 as a signed 2-byte
        // vint (bias 8191: 7893 = 0x5ed5).
        let mut body = vec![2, 0x41, 0x2c, 0x5e, 0xd5];
        body.extend(f.concat());
        assert_eq!(block(0x06, &body).unwrap().3, f);
        // Fixed: 4 frames of 3 bytes.
        let f = frames(&[3, 3, 3, 3]);
        let mut body = vec![3];
        body.extend(f.concat());
        assert_eq!(block(0x04, &body).unwrap().3, f);
        // Hostile: sizes past the block, a negative EBML size, an uneven fixed split.
        assert_eq!(
            block(0x02, &[1, 255, 255, 10, 0]),
            Err(BlockError::FramePastEnd)
        );
        assert_eq!(
            block(0x06, &[2, 0x81, 0x80, 0x00]),
            Err(BlockError::NegativeFrameSize)
        );
        assert_eq!(block(0x04, &[1, 1, 2, 3]), Err(BlockError::FixedSizeUneven));
        assert_eq!(
            decode_block(&MatroskaSpec::Block(vec![0x00; 3])),
            Err(BlockError::Short { len: 3 })
        );
    }
}
