//! Frames out of RTP that arrives outside an `Rtc` session.

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use crate::format::Codec;
use crate::rtp_::{ExtensionMap, Frequency, MediaTime, RtpHeader, SeqNo};
use crate::rtp_::{extend_u16, extend_u32};

use super::{CodecDepacketizer, CodecExtra, DepacketizingBuffer, PacketError, RtpMeta};

/// str0m's depacketizer and reordering buffer for one RTP stream received without a session:
/// plain RTP packets in (a media server's RTP forwarder, a file), whole frames out, exactly as
/// an `Rtc` would assemble them from the same packets (minus NACK recovery and RTX, which
/// need a session).
#[derive(Debug)]
pub struct FrameAssembler {
    buffer: DepacketizingBuffer,
    clock_rate: Frequency,
    exts: ExtensionMap,
    reordering_timeout: Option<Duration>,
    max_seq: Option<u64>,
    max_time: Option<u64>,
}

/// A frame out of a [`FrameAssembler`].
#[derive(Debug, Clone)]
pub struct AssembledFrame {
    /// The frame's RTP time, extended over wrap-arounds.
    pub time: MediaTime,
    /// When its first packet arrived.
    pub network_time: Instant,
    /// The sequence numbers of its packets (extended).
    pub seq_range: RangeInclusive<SeqNo>,
    /// No packet is missing between the previous frame and this one.
    pub contiguous: bool,
    /// The depacketized frame.
    pub data: Vec<u8>,
    /// What the depacketizer learned of the frame (keyframe, layers).
    pub codec_extra: CodecExtra,
    /// The RTP marker bit of its last packet.
    pub marker: bool,
}

impl FrameAssembler {
    /// An assembler for a stream of `codec` at `clock_rate` that holds back at most
    /// `hold_back` packets to reorder them, and waits at most `reordering_timeout` for a
    /// missing one (none: until `hold_back` is exceeded). `None` for a codec without a
    /// depacketizer (RTX, RED, unknown).
    pub fn new(
        codec: Codec,
        clock_rate: Frequency,
        hold_back: usize,
        reordering_timeout: Option<Duration>,
    ) -> Option<Self> {
        if matches!(codec, Codec::Rtx | Codec::Red | Codec::Unknown) {
            return None;
        }
        let depack: CodecDepacketizer = codec.into();
        Some(FrameAssembler {
            buffer: DepacketizingBuffer::new(depack, hold_back),
            clock_rate,
            exts: ExtensionMap::empty(),
            reordering_timeout,
            max_seq: None,
            max_time: None,
        })
    }

    /// The header extensions to read from the packets (default: none).
    pub fn set_extension_map(&mut self, exts: ExtensionMap) {
        self.exts = exts;
    }

    /// Takes one whole RTP packet (header and payload) received at `received`. False: it is
    /// not an RTP packet (too short, not version 2, bad padding) and was dropped.
    pub fn push(&mut self, received: Instant, packet: &[u8]) -> bool {
        let Some(header) = RtpHeader::parse(packet, &self.exts) else {
            return false;
        };
        let Some(body) = packet.get(header.header_len..) else {
            return false;
        };
        let payload = if header.has_padding {
            match RtpHeader::unpad_payload(body) {
                Some(p) => p,
                None => return false,
            }
        } else {
            body
        };
        let seq = extend_u16(self.max_seq, header.sequence_number);
        self.max_seq = Some(self.max_seq.map_or(seq, |m| m.max(seq)));
        let time = extend_u32(self.max_time, header.timestamp);
        self.max_time = Some(self.max_time.map_or(time, |m| m.max(time)));
        let meta = RtpMeta {
            received,
            time: MediaTime::new(time, self.clock_rate),
            seq_no: seq.into(),
            header,
            last_sender_info: None,
        };
        if payload.is_empty() {
            self.buffer.push_padding(meta);
        } else {
            self.buffer.push(meta, payload);
        }
        true
    }

    /// The next whole frame, if one is ready at `now`. An error is a frame the depacketizer
    /// could not make sense of (it is dropped; the next one is not contiguous).
    pub fn pop(&mut self, now: Instant) -> Option<Result<AssembledFrame, PacketError>> {
        let d = match self.buffer.pop(now, self.reordering_timeout)? {
            Ok(d) => d,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(AssembledFrame {
            time: d.time,
            network_time: d.first_network_time(),
            seq_range: d.seq_range(),
            contiguous: d.contiguous,
            marker: d.meta.last().is_some_and(|m| m.header.marker),
            data: d.data,
            codec_extra: d.codec_extra,
        }))
    }
}
