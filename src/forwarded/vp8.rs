//! VP8 frames from forwarded RTP packets (RFC 7741), assembled here rather than by str0m's
//! [`FrameAssembler`](str0m::rtp::FrameAssembler): the same frames, with a copy of each
//! payload into the frame being built instead of str0m's copy into its reordering buffer,
//! its copy into the frame and ours into the shared buffer the feed takes, and without its
//! per-packet allocations and segment bookkeeping. VP8 is Janus's default video codec and
//! most of a video feed's bytes; the other video codecs stay on str0m's depacketizers.
//!
//! Packets are put in order by str0m's rules ([`super::reorder`]): those that arrive in order
//! (nearly all of them, from Janus on this host or a private network) go straight into the
//! frame being built, one after a gap is held (a copy) until the gap fills or is given up;
//! then the frame it broke is dropped and the next whole frame is marked not contiguous,
//! which makes the feed wait for a keyframe, as with str0m. A frame
//! starts with the packet that has the S bit and partition 0, and ends with the marker bit
//! (or, without one, where the next frame's RTP time begins).

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Vp8CodecExtra;

use super::reorder::{Arrival, Reorder};

/// A frame larger than this is dropped (a stream that never ends its frame must not grow
/// without bound): several times a 4K keyframe.
const MAX_FRAME: usize = 16 << 20;
/// The frame buffer's room kept between frames; one a larger keyframe grew is given back, so
/// a feed does not hold its largest keyframe's size for good.
const KEPT_ROOM: usize = 256 << 10;

/// One RTP packet of the stream, its payload borrowed from the socket's buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packet<'a> {
    /// Extended sequence number and RTP time.
    pub seq: u64,
    pub time: u64,
    pub marker: bool,
    pub received: Instant,
    /// The RTP payload: the VP8 payload descriptor and what follows it. Empty: padding.
    pub payload: &'a [u8],
}

/// A whole frame.
#[derive(Debug, Clone)]
pub(super) struct Frame {
    pub time: u64,
    /// When its first packet arrived.
    pub received: Instant,
    pub seqs: RangeInclusive<u64>,
    /// No packet is missing between the previous frame released and this one.
    pub contiguous: bool,
    pub data: Arc<[u8]>,
    pub extra: Vp8CodecExtra,
}

/// A packet after a gap, a copy kept until the gap is filled or given up.
#[derive(Debug)]
struct Held {
    time: u64,
    marker: bool,
    received: Instant,
    payload: Box<[u8]>,
}

/// The frame whose packets are coming in.
#[derive(Debug)]
struct Building {
    time: u64,
    received: Instant,
    first_seq: u64,
    last_seq: u64,
    extra: Vp8CodecExtra,
}

/// One VP8 stream's packets on their way to frames.
#[derive(Debug)]
pub(super) struct Vp8Frames {
    order: Reorder<Held>,
    building: Option<Building>,
    /// The frame being built's bytes; its capacity is kept from frame to frame.
    data: Vec<u8>,
    /// A packet went missing (or did not parse) since the last frame released.
    gap: bool,
    ready: VecDeque<Frame>,
}

impl Vp8Frames {
    /// Holds at most `hold_back` packets behind a gap, each at most `wait`.
    pub(super) fn new(hold_back: usize, wait: Duration) -> Vp8Frames {
        Vp8Frames {
            order: Reorder::new(hold_back, wait),
            building: None,
            data: Vec::new(),
            gap: false,
            ready: VecDeque::new(),
        }
    }

    /// Takes a packet; a late one (at or before the last taken) or a duplicate is dropped.
    pub(super) fn push(&mut self, packet: Packet<'_>) {
        match self.order.arrive(packet.seq) {
            Arrival::Next => {
                self.take(packet);
                self.take_held();
            }
            Arrival::Early => {
                let held = Held {
                    time: packet.time,
                    marker: packet.marker,
                    received: packet.received,
                    payload: packet.payload.into(),
                };
                self.order.hold(packet.seq, packet.received, held);
            }
            Arrival::Late => {}
        }
    }

    /// The next whole frame at `now`: a gap that has waited long enough is given up first
    /// (the frame it broke is dropped).
    pub(super) fn pop(&mut self, now: Instant) -> Option<Frame> {
        while self.order.give_up(now) {
            self.drop_building();
            self.take_held();
        }
        self.ready.pop_front()
    }

    fn take_held(&mut self) {
        while let Some((seq, h)) = self.order.next_held() {
            self.take(Packet {
                seq,
                time: h.time,
                marker: h.marker,
                received: h.received,
                payload: &h.payload,
            });
        }
    }

    fn drop_building(&mut self) {
        self.building = None;
        self.clear_data();
        self.gap = true;
    }

    fn clear_data(&mut self) {
        self.data.clear();
        if self.data.capacity() > KEPT_ROOM {
            self.data.shrink_to(KEPT_ROOM / 4);
        }
    }

    /// The packet that follows the last one taken.
    fn take(&mut self, p: Packet<'_>) {
        if p.payload.is_empty() {
            return; // padding: it keeps the sequence, and nothing else
        }
        let Some(d) = Descriptor::parse(p.payload) else {
            self.drop_building();
            return;
        };
        if self.building.as_ref().is_some_and(|b| b.time != p.time) {
            // The previous frame ended without a marker: every packet of it came.
            self.finish();
        }
        let body = &p.payload[d.len..];
        if d.starts_frame {
            if self.building.is_some() {
                // A second first packet at the same time: the frame makes no sense.
                self.drop_building();
            }
            self.building = Some(Building {
                time: p.time,
                received: p.received,
                first_seq: p.seq,
                last_seq: p.seq,
                extra: Vp8CodecExtra {
                    discardable: d.discardable,
                    sync: d.sync,
                    layer_index: d.layer_index,
                    picture_id: None,
                    tl0_picture_id: None,
                    // The VP8 payload header's P bit: 0 for a key frame (RFC 6386 9.1).
                    is_keyframe: body[0] & 0x01 == 0,
                },
            });
        }
        let Some(b) = &mut self.building else {
            // The rest of a frame whose first packet was lost.
            self.gap = true;
            return;
        };
        b.last_seq = p.seq;
        if self.data.len() + body.len() > MAX_FRAME {
            self.drop_building();
            return;
        }
        self.data.extend_from_slice(body);
        if p.marker {
            self.finish();
        }
    }

    /// The frame being built is whole: ready to be released.
    fn finish(&mut self) {
        let Some(b) = self.building.take() else {
            return;
        };
        let data = Arc::from(&self.data[..]);
        self.clear_data();
        self.ready.push_back(Frame {
            time: b.time,
            received: b.received,
            seqs: b.first_seq..=b.last_seq,
            contiguous: !std::mem::take(&mut self.gap),
            data,
            extra: b.extra,
        });
    }
}

/// What the VP8 payload descriptor (RFC 7741 4.2) of a packet says.
#[derive(Debug, PartialEq, Eq)]
struct Descriptor {
    /// Its length: the VP8 payload starts after it.
    len: usize,
    /// S set and partition index 0: the frame's first packet.
    starts_frame: bool,
    discardable: bool,
    sync: bool,
    layer_index: u8,
}

impl Descriptor {
    /// `None` if the descriptor runs past the packet or nothing follows it.
    fn parse(payload: &[u8]) -> Option<Descriptor> {
        let first = *payload.first()?;
        let mut len = 1;
        let (mut sync, mut layer_index) = (false, 0);
        if first & 0x80 != 0 {
            let x = *payload.get(len)?;
            len += 1;
            if x & 0x80 != 0 {
                // PictureID: 15 bits when its first bit (M) is set, else 7.
                let pid = *payload.get(len)?;
                len += if pid & 0x80 != 0 { 2 } else { 1 };
            }
            if x & 0x40 != 0 {
                len += 1; // TL0PICIDX
            }
            if x & 0x30 != 0 {
                // TID, Y, KEYIDX.
                let t = *payload.get(len)?;
                len += 1;
                if x & 0x20 != 0 {
                    layer_index = t >> 6;
                    sync = t & 0x20 != 0;
                }
            }
        }
        (payload.len() > len).then_some(Descriptor {
            len,
            starts_frame: first & 0x10 != 0 && first & 0x07 == 0,
            discardable: first & 0x20 != 0,
            sync,
            layer_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(100);

    /// The packets of a frame: its bytes cut in `parts`, each behind a descriptor with a
    /// 15-bit PictureID (as browsers send), the last with the marker.
    fn packets(seq: u64, time: u64, frame: &[u8], parts: usize) -> Vec<(u64, u64, bool, Vec<u8>)> {
        let chunk = frame.len().div_ceil(parts);
        frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                let s = if i == 0 { 0x10 } else { 0 };
                let mut p = vec![0x80 | s, 0x80, 0x80 | 0x12, 0x34];
                p.extend_from_slice(c);
                (seq + i as u64, time, i + 1 == parts, p)
            })
            .collect()
    }

    fn push(f: &mut Vp8Frames, p: &(u64, u64, bool, Vec<u8>), received: Instant) {
        f.push(Packet {
            seq: p.0,
            time: p.1,
            marker: p.2,
            received,
            payload: &p.3,
        });
    }

    fn drain(f: &mut Vp8Frames, now: Instant) -> Vec<Frame> {
        std::iter::from_fn(|| f.pop(now)).collect()
    }

    /// A key frame's first bytes (P bit 0), then an inter frame's (P bit 1).
    const KEY: [u8; 6] = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
    const INTER: [u8; 4] = [0x31, 0x01, 0x00, 0x55];

    #[test]
    fn packets_in_order_become_frames_with_their_payloads_joined() {
        let t0 = Instant::now();
        let mut f = Vp8Frames::new(1024, WAIT);
        for p in packets(10, 0, &KEY, 3)
            .iter()
            .chain(&packets(13, 3000, &INTER, 2))
        {
            push(&mut f, p, t0);
        }
        let frames = drain(&mut f, t0);
        assert_eq!(frames.len(), 2);
        assert_eq!(&*frames[0].data, &KEY);
        assert!(frames[0].extra.is_keyframe);
        assert_eq!(frames[0].seqs, 10..=12);
        assert_eq!(&*frames[1].data, &INTER);
        assert!(!frames[1].extra.is_keyframe);
        assert_eq!((frames[1].time, frames[1].seqs.clone()), (3000, 13..=14));
        assert!(frames.iter().all(|f| f.contiguous));
    }

    #[test]
    fn reordered_packets_wait_for_the_gap_to_fill() {
        let t0 = Instant::now();
        let mut f = Vp8Frames::new(1024, WAIT);
        let p = packets(10, 0, &KEY, 3);
        for i in [0, 2, 1, 2] {
            push(&mut f, &p[i], t0);
        }
        let frames = drain(&mut f, t0);
        assert_eq!(frames.len(), 1, "the duplicate is dropped");
        assert_eq!(&*frames[0].data, &KEY);
        assert!(frames[0].contiguous);
    }

    #[test]
    fn a_lost_packet_drops_its_frame_and_the_next_is_not_contiguous() {
        let t0 = Instant::now();
        let mut f = Vp8Frames::new(1024, WAIT);
        let key = packets(10, 0, &KEY, 3);
        let inter = packets(13, 3000, &INTER, 2);
        for p in [&key[0], &key[2], &inter[0], &inter[1]] {
            push(&mut f, p, t0);
        }
        assert!(drain(&mut f, t0).is_empty(), "waiting for 11");
        let frames = drain(&mut f, t0 + WAIT);
        assert_eq!(frames.len(), 1);
        assert_eq!(&*frames[0].data, &INTER);
        assert!(!frames[0].contiguous);
        // 11 comes too late.
        push(&mut f, &key[1], t0 + WAIT);
        assert!(drain(&mut f, t0 + WAIT).is_empty());
    }

    #[test]
    fn hold_back_packets_give_a_gap_up_before_the_wait() {
        let t0 = Instant::now();
        let mut f = Vp8Frames::new(2, WAIT);
        let inter = packets(13, 3000, &INTER, 2);
        push(&mut f, &packets(10, 0, &KEY, 1)[0], t0);
        push(&mut f, &inter[0], t0);
        push(&mut f, &inter[1], t0);
        let frames = drain(&mut f, t0);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].contiguous && !frames[1].contiguous);
    }

    #[test]
    fn a_frame_without_its_first_packet_is_not_made() {
        let t0 = Instant::now();
        let mut f = Vp8Frames::new(1024, WAIT);
        let key = packets(10, 0, &KEY, 3);
        // The stream seen from its second packet on (a forwarder started mid-frame).
        push(&mut f, &key[1], t0);
        push(&mut f, &key[2], t0);
        for p in &packets(13, 3000, &INTER, 1) {
            push(&mut f, p, t0);
        }
        let frames = drain(&mut f, t0);
        assert_eq!(frames.len(), 1);
        assert_eq!(&*frames[0].data, &INTER);
        assert!(!frames[0].contiguous);
    }

    #[test]
    fn a_frame_without_a_marker_ends_where_the_next_begins() {
        let t0 = Instant::now();
        let mut f = Vp8Frames::new(1024, WAIT);
        let mut key = packets(10, 0, &KEY, 2);
        key[1].2 = false;
        for p in key.iter().chain(&packets(12, 3000, &INTER, 1)) {
            push(&mut f, p, t0);
        }
        let frames = drain(&mut f, t0);
        assert_eq!(frames.len(), 2);
        assert_eq!(&*frames[0].data, &KEY);
        assert!(frames[1].contiguous);
    }

    #[test]
    fn padding_keeps_the_sequence() {
        let t0 = Instant::now();
        let mut f = Vp8Frames::new(1024, WAIT);
        push(&mut f, &packets(10, 0, &KEY, 1)[0], t0);
        push(&mut f, &(11, 0, false, Vec::new()), t0);
        push(&mut f, &packets(12, 3000, &INTER, 1)[0], t0);
        let frames = drain(&mut f, t0);
        assert_eq!(frames.len(), 2);
        assert!(frames[1].contiguous);
    }

    #[test]
    fn frames_are_those_str0m_assembles_from_the_same_packets() {
        for shape in 0..3 {
            same_frames_as_str0m(shape);
        }
    }

    /// Our frames and str0m's of one stream whose descriptors are of `shape`: 0 the
    /// required byte only, 1 a 15-bit PictureID, TL0PICIDX and TID (every frame of layer 0),
    /// 2 a 15-bit PictureID.
    fn same_frames_as_str0m(shape: u64) {
        use str0m::media::Frequency;
        use str0m::rtp::FrameAssembler;
        let t0 = Instant::now();
        let mut ours = Vp8Frames::new(1024, WAIT);
        let mut str0m = FrameAssembler::new(
            str0m::format::Codec::Vp8,
            Frequency::NINETY_KHZ,
            30,
            Some(WAIT),
        )
        .unwrap();
        // 60 frames of 1 to 7 packets, a key frame every 20 (PictureID and TL0PICIDX the
        // frame's number); adjacent packets swapped now and then, one lost in frame 30.
        let mut stream = Vec::new();
        let mut seq = 65_530u64;
        for n in 0..60u64 {
            let mut frame = if n % 20 == 0 {
                KEY.to_vec()
            } else {
                INTER.to_vec()
            };
            frame.extend((0..n * 37 % 900).map(|i| (i * n) as u8));
            let parts = 1 + (n as usize % 7);
            let mut ps = packets(seq, n * 3000, &frame, parts);
            for (i, p) in ps.iter_mut().enumerate() {
                match shape {
                    0 => {
                        p.3[0] &= !0x80;
                        p.3.splice(1..4, []).for_each(drop);
                    }
                    1 => {
                        p.3.splice(1..4, [0xe0, 0x80, n as u8, n as u8, 0x20])
                            .for_each(drop)
                    }
                    _ => p.3[3] = n as u8,
                }
                if i == 0 && n == 30 {
                    p.3.clear();
                }
            }
            seq += ps.len() as u64;
            stream.extend(ps.into_iter().filter(|p| !p.3.is_empty()));
        }
        for i in (3..stream.len() - 1).step_by(11) {
            stream.swap(i, i + 1);
        }
        let mut got = (Vec::new(), Vec::new());
        for (i, p) in stream.iter().enumerate() {
            let at = t0 + Duration::from_millis(i as u64);
            push(&mut ours, p, at);
            let mut rtp = vec![0x80, 96 | if p.2 { 0x80 } else { 0 }];
            rtp.extend_from_slice(&(p.0 as u16).to_be_bytes());
            rtp.extend_from_slice(&(p.1 as u32).to_be_bytes());
            rtp.extend_from_slice(&[0, 0, 0, 7]);
            rtp.extend_from_slice(&p.3);
            assert!(str0m.push(at, &rtp));
            got.0.extend(std::iter::from_fn(|| ours.pop(at)));
            got.1.extend(std::iter::from_fn(|| str0m.pop(at)).flatten());
        }
        let end = t0 + Duration::from_secs(1);
        got.0.extend(std::iter::from_fn(|| ours.pop(end)));
        got.1
            .extend(std::iter::from_fn(|| str0m.pop(end)).flatten());
        let summary = |f: Vec<(u64, bool, bool, Vec<u8>)>| {
            let t0 = f.first().map_or(0, |x| x.0);
            f.into_iter()
                .map(|(t, k, c, d)| (t - t0, k, c, d))
                .collect::<Vec<_>>()
        };
        let ours = summary(
            got.0
                .into_iter()
                .map(|f| (f.time, f.extra.is_keyframe, f.contiguous, f.data.to_vec()))
                .collect(),
        );
        let theirs = summary(
            got.1
                .into_iter()
                .map(|f| {
                    let str0m::format::CodecExtra::Vp8(e) = f.codec_extra else {
                        panic!("not VP8");
                    };
                    (f.time.numer(), e.is_keyframe, f.contiguous, f.data)
                })
                .collect(),
        );
        let brief = |f: &[(u64, bool, bool, Vec<u8>)]| {
            f.iter()
                .map(|(t, k, c, d)| (*t, *k, *c, d.len()))
                .collect::<Vec<_>>()
        };
        assert_eq!(brief(&ours), brief(&theirs), "shape {shape}");
        assert_eq!(ours.len(), 59, "every frame but the broken one");
        assert!(ours == theirs, "the same bytes, shape {shape}");
    }

    #[test]
    fn descriptors_of_every_shape_are_read_and_hostile_ones_refused() {
        // Only the required byte.
        let d = Descriptor::parse(&[0x10, 0xaa]).unwrap();
        assert_eq!((d.len, d.starts_frame), (1, true));
        // X with a 7-bit PictureID, TL0PICIDX and TID 2 with Y.
        let d = Descriptor::parse(&[0x90, 0xe0, 0x05, 0x07, 0xa0, 0xaa]).unwrap();
        assert_eq!((d.len, d.layer_index, d.sync), (5, 2, true));
        // Not the first partition, discardable.
        let d = Descriptor::parse(&[0x31, 0xaa]).unwrap();
        assert!(!d.starts_frame && d.discardable);
        // Nothing after the descriptor, or a descriptor cut short.
        assert_eq!(Descriptor::parse(&[0x10]), None);
        assert_eq!(Descriptor::parse(&[0x90, 0x80, 0x80]), None);
        assert_eq!(Descriptor::parse(&[0x80]), None);
        assert_eq!(Descriptor::parse(&[]), None);
    }

    #[test]
    fn a_frame_that_never_ends_is_dropped_at_its_bound() {
        let t0 = Instant::now();
        let mut f = Vp8Frames::new(1024, WAIT);
        let chunk = vec![0x55u8; 60_000];
        let first = [&[0x10u8][..], &KEY, &chunk].concat();
        push(&mut f, &(0, 0, false, first), t0);
        let mut seq = 1;
        while seq * 60_000 <= MAX_FRAME as u64 {
            push(
                &mut f,
                &(seq, 0, false, [&[0x00u8][..], &chunk].concat()),
                t0,
            );
            seq += 1;
        }
        assert!(f.building.is_none() && f.data.capacity() <= KEPT_ROOM);
        for p in &packets(seq, 3000, &INTER, 1) {
            push(&mut f, p, t0);
        }
        let frames = drain(&mut f, t0);
        assert_eq!(frames.len(), 1);
        assert!(!frames[0].contiguous);
    }

    #[test]
    fn a_malformed_packet_breaks_its_frame() {
        let t0 = Instant::now();
        let mut f = Vp8Frames::new(1024, WAIT);
        let key = packets(10, 0, &KEY, 3);
        push(&mut f, &key[0], t0);
        push(&mut f, &(11, 0, false, vec![0x80]), t0);
        push(&mut f, &key[2], t0);
        for p in &packets(13, 3000, &INTER, 1) {
            push(&mut f, p, t0);
        }
        let frames = drain(&mut f, t0);
        assert_eq!(frames.len(), 1);
        assert!(!frames[0].contiguous);
    }
}
