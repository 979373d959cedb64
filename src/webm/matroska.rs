//! Matroska primitives shared by the live writer (`writer`) and the room file's muxer
//! (`crate::roomfile`): element ids and size fields patched after writing, the regions a
//! header reserves and fills (SeekHead, Info, Tracks, padded with Void), and the errors of
//! writing such a file.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use webm_iterable::WebmWriter as TagWriter;
use webm_iterable::WriteOptions;
use webm_iterable::errors::TagWriterError;
use webm_iterable::matroska_spec::{Master, MatroskaSpec};

/// A failure to write a recording, naming the file and the cause.
#[derive(Debug, thiserror::Error)]
#[error("writing {}: {cause}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub cause: WriteCause,
}

/// What went wrong writing a Matroska file (the daemon's recordings, and the room file's
/// header regions). Cloneable, so the writer can keep its first failure: the `io::Error` and
/// the tag writer's error are shared.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteCause {
    /// The file could not be created, written, sought or synced (a full disk, most often).
    #[error(transparent)]
    Io(Arc<io::Error>),
    /// The tag writer refused an element.
    #[error(transparent)]
    Encode(Arc<TagWriterError>),
    /// No single Void element is exactly this long (129 bytes, under 2 or over 16385).
    #[error("no Void of exactly {0} bytes")]
    NoVoid(usize),
    /// What a reserved header region must hold came out longer than the region.
    #[error("header region overflow: {len} bytes for {room}")]
    RegionOverflow { len: usize, room: usize },
    /// An earlier failure: the writer refuses all work after its first failure.
    #[error("the file is unusable after: {0}")]
    Unusable(#[source] Box<WriteCause>),
}

impl From<io::Error> for WriteCause {
    fn from(e: io::Error) -> WriteCause {
        WriteCause::Io(Arc::new(e))
    }
}

impl From<TagWriterError> for WriteCause {
    fn from(e: TagWriterError) -> WriteCause {
        WriteCause::Encode(Arc::new(e))
    }
}

/// Matroska element ids used when patching.
pub(crate) const INFO_ID: u64 = 0x1549_A966;
pub(crate) const TRACKS_ID: u64 = 0x1654_AE6B;
pub(crate) const CUES_ID: u64 = 0x1C53_BB6B;
/// The size field of unknown-sized masters (and of their patched sizes) is 8 bytes.
pub(crate) const SIZE_FIELD_LEN: u64 = 8;
/// The header of an unknown-sized Segment or Cluster: a 4-byte id and the size field.
pub(crate) const UNKNOWN_SIZED_HEADER_LEN: u64 = 4 + SIZE_FIELD_LEN;

/// The length of an Opus packet in ms (20 ms if it cannot be told).
pub(crate) fn opus_frame_ms(packet: &[u8]) -> u64 {
    opus::packet::get_nb_samples(packet, 48_000)
        .map(|n| n as u64 / 48)
        .unwrap_or(20)
}

/// An 8-byte EBML size field holding `size` (the same width as the unknown-size marker).
pub(crate) fn sized_vint(size: u64) -> Vec<u8> {
    let mut b = size.to_be_bytes();
    b[0] = 0x01;
    b.to_vec()
}

pub(crate) fn seek(id: u64, position: u64) -> MatroskaSpec {
    let id_bytes: Vec<u8> = id
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    MatroskaSpec::Seek(Master::Full(vec![
        MatroskaSpec::SeekID(id_bytes),
        MatroskaSpec::SeekPosition(position),
    ]))
}

/// A Void element exactly `len` bytes long (at least 2): one id byte, then a 1-byte size (up
/// to 126 bytes of data) or a 2-byte size (127 to 16382 bytes of data). 129 bytes cannot be
/// one element (126 data bytes are the most a 1-byte size holds, 127 need a 2-byte size).
pub(crate) fn void_of(len: usize) -> Result<MatroskaSpec, WriteCause> {
    match len {
        2..=128 => Ok(MatroskaSpec::Void(vec![0; len - 2])),
        130..=16_385 => Ok(MatroskaSpec::Void(vec![0; len - 3])),
        _ => Err(WriteCause::NoVoid(len)),
    }
}

/// Encodes `tags` (as children of a Segment) padded with a Void to exactly `len` bytes.
pub(crate) fn fill_region(tags: &[MatroskaSpec], len: usize) -> Result<Vec<u8>, WriteCause> {
    let mut bytes = encode_in_segment(tags)?;
    let mut gap = len.saturating_sub(bytes.len());
    if gap == 129 {
        // Not one Void: two.
        bytes.extend(encode_in_segment(&[void_of(64)?])?);
        gap -= 64;
    }
    if gap > 0 {
        bytes.extend(encode_in_segment(&[void_of(gap)?])?);
    }
    if bytes.len() != len {
        return Err(WriteCause::RegionOverflow {
            len: bytes.len(),
            room: len,
        });
    }
    Ok(bytes)
}

/// The tag writer checks that elements sit under their parents, so Segment children are
/// encoded after an unknown-sized Segment start, which is then cut off.
fn encode_in_segment(tags: &[MatroskaSpec]) -> Result<Vec<u8>, WriteCause> {
    let mut w = TagWriter::new(Vec::new());
    w.write_advanced(
        &MatroskaSpec::Segment(Master::Start),
        WriteOptions::is_unknown_sized_element(),
    )?;
    for t in tags {
        w.write(t)?;
    }
    Ok(w.get_ref()[UNKNOWN_SIZED_HEADER_LEN as usize..].to_vec())
}
