use super::*;
use crate::codec::test_streams::*;

/// Splits a low-overhead OBU stream into temporal units at its temporal delimiters.
fn temporal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut units = Vec::new();
    let mut all = obus(data);
    let (mut from, mut at) = (0, 0);
    for obu in all.by_ref() {
        if obu.obu_type == OBU_TEMPORAL_DELIMITER && at > 0 {
            units.push(&data[from..at]);
            from = at;
        }
        at += obu.header_and_payload.len();
    }
    assert!(all.is_complete());
    units.push(&data[from..]);
    units
}

/// Parses AV1 streams from three encoders (4:2:0, 4:4:4 and 10-bit from libaom) temporal
/// unit by temporal unit, and compares with ffprobe and with the CodecPrivate and blocks
/// ffmpeg writes into Matroska and WebM.
#[test]
fn av1_streams_agree_with_ffmpeg() {
    let scratch = Scratch::new("av1");
    let aom = ["-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8"];
    for (name, pix_fmt, encoder) in [
        ("aom", "yuv420p", &aom[..]),
        ("aom444", "yuv444p", &aom[..]),
        ("aom10", "yuv420p10le", &aom[..]),
        (
            "svt",
            "yuv420p",
            &["-c:v", "libsvtav1", "-preset", "12"][..],
        ),
        (
            "rav1e",
            "yuv420p",
            &["-c:v", "librav1e", "-speed", "10"][..],
        ),
    ] {
        let mut args = encoder.to_vec();
        args.extend(["-pix_fmt", pix_fmt, "-g", "15", "-keyint_min", "15"]);
        let mkv = format!("{name}.mkv");
        let clip = clip(&scratch.0, &mkv, &args, &[], "obu");
        let units = temporal_units(&clip.stream);
        let mut stream = Av1Stream::default();
        let infos: Vec<FrameInfo> = units.iter().map(|u| stream.add_frame(u)).collect();
        assert_infos_match(name, &infos, &clip.probe);
        let seq = stream.sequence_header().unwrap().clone();
        assert_eq!(seq.high_bitdepth, name == "aom10", "{name}");
        assert_eq!(seq.profile, u8::from(name == "aom444"), "{name}");
        assert_eq!(!seq.subsampling_x, name == "aom444", "{name}");
        let ours = stream.codec_private().unwrap();
        assert_eq!(parse_codec_private(&ours), Some(seq.clone()));

        let webm = scratch.0.join(format!("{name}.webm"));
        remux(&scratch.0.join(&mkv), &[], &webm);
        for ffmpeg in [clip.ffmpeg, matroska_video(&webm)] {
            assert_eq!(ffmpeg.codec_id, "V_AV1");
            assert_eq!(parse_codec_private(&ffmpeg.private), Some(seq.clone()));
            assert_eq!(ours[..4], ffmpeg.private[..4], "{name}: av1C");
            // ffmpeg takes the sequence header from the encoder's global header; SVT-AV1's
            // differs from the one it sends in band in flags we do not read.
            if name != "svt" {
                assert_eq!(ours, ffmpeg.private, "{name}: av1C");
            }
            assert_eq!(ffmpeg.blocks.len(), units.len());
            for (unit, (key, block)) in units.iter().zip(&ffmpeg.blocks) {
                let mut ours = Vec::new();
                to_matroska_block(unit, &mut ours);
                assert!(ours == *block, "{name}: blocks differ");
                assert_eq!(frame_info(block, Some(&seq)).keyframe, *key, "{name}");
            }
        }
    }
}

#[test]
fn damaged_input_never_panics() {
    let scratch = Scratch::new("av1-damage");
    let args = ["-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8"];
    let mkv = encode(&scratch.0, "a.mkv", "160x120", 1, &args);
    let ffmpeg = matroska_video(&mkv);
    survives_damage(&ffmpeg.private, |d| {
        let _ = parse_codec_private(d);
        let _ = parse_sequence_header(d);
        let _ = frame_info(d, None);
        let mut stream = Av1Stream::default();
        stream.add_frame(d);
        let _ = stream.codec_private();
        let mut out = Vec::new();
        to_matroska_block(d, &mut out);
    });
    let block = &ffmpeg.blocks[0].1;
    survives_damage(&block[..block.len().min(300)], |d| {
        let seq = parse_codec_private(&ffmpeg.private);
        let _ = frame_info(d, seq.as_ref());
        Av1Stream::default().add_frame(d);
    });
}

#[test]
fn obus_without_size_fields_and_with_extensions() {
    // A frame OBU with an extension header (temporal 1, spatial 2) and a size, then a
    // padding OBU without a size field: it takes the rest.
    let data = [0x36, 0x30, 0x02, 0x10, 0x00, 0x78, 0xaa, 0xbb];
    let all: Vec<Obu> = obus(&data).collect();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].obu_type, OBU_FRAME);
    assert_eq!(all[0].layer, Some((1, 2)));
    assert_eq!(all[0].payload, [0x10, 0x00]);
    assert_eq!(all[1].obu_type, OBU_PADDING);
    assert_eq!(all[1].payload, [0xaa, 0xbb]);
    let mut out = Vec::new();
    to_matroska_block(&data, &mut out);
    assert_eq!(out, data[..5]);
    // A size past the end: stops.
    let mut cut = obus(&[0x32, 0x05, 0x00]);
    assert_eq!(cut.next(), None);
    assert!(!cut.is_complete());
}
