use super::*;
use crate::codec::test_streams::*;

/// Parses the Annex B form of x265's streams (4:2:0 8-bit with a height that needs a
/// conformance window, 4:2:2 10-bit, and one with temporal sub-layers) frame by frame, and
/// compares with ffprobe and with the CodecPrivate and blocks ffmpeg writes into Matroska.
#[test]
fn x265_streams_agree_with_ffmpeg() {
    let scratch = Scratch::new("h265");
    for (name, pix_fmt, extra) in [
        ("main", "yuv420p", ""),
        ("main422-10", "yuv422p10le", ""),
        ("layers", "yuv420p", ":temporal-layers=1:b-pyramid=1"),
    ] {
        let params = format!("keyint=15:min-keyint=15:scenecut=0:aud=1:log-level=error{extra}");
        let clip = clip(
            &scratch.0,
            &format!("{name}.mkv"),
            &[
                "-c:v",
                "libx265",
                "-pix_fmt",
                pix_fmt,
                "-x265-params",
                &params,
            ],
            &["-bsf:v", "hevc_mp4toannexb"],
            "hevc",
        );
        let units = split_access_units(&clip.stream, |n| n[0] >> 1 < 32, |n| n[2] & 0x80 != 0);
        let mut sets = ParameterSets::default();
        let infos: Vec<FrameInfo> = units.iter().map(|u| sets.add_frame(u)).collect();
        assert_infos_match(name, &infos, &clip.probe);

        let ffmpeg = &clip.ffmpeg;
        assert_eq!(ffmpeg.codec_id, "V_MPEGH/ISO/HEVC");
        let ours = sets.decoder_config().expect("an hvcC");
        let theirs = parse_decoder_config(&ffmpeg.private).expect("ffmpeg's hvcC parses");
        let parsed = parse_decoder_config(&ours).expect("ours parses");
        assert_eq!(parsed, theirs, "{name}: hvcC");
        // The fixed part byte for byte (x265 leaves min_spatial_segmentation_idc and
        // parallelismType at 0 too); the arrays differ only by x265's SEI, which ffmpeg adds.
        assert_eq!(ours[..22], ffmpeg.private[..22], "{name}: hvcC header");
        let sps = parse_sps(&theirs.sps[0]).unwrap();
        assert_eq!((sps.width, sps.height), clip.probe.size, "{name}");
        assert_eq!(Some(&sps), sets.sps());
        let layered = sps.max_sub_layers_minus1 > 0;
        assert_eq!(layered, name == "layers", "{name}: sub-layers");

        let codec = NalCodec {
            nal_type,
            to_length_prefixed: annexb_to_length_prefixed,
            frame_info: frame_info_length_prefixed,
        };
        // x265's version SEI: ffmpeg puts it in the hvcC, so the Annex B form repeats it.
        let in_band = [NAL_VPS, NAL_SPS, NAL_PPS, 39];
        assert_blocks_match(
            name,
            &codec,
            &units,
            &ffmpeg.blocks,
            &in_band,
            &[NAL_AUD, 39],
        );
    }
}

#[test]
fn damaged_input_never_panics() {
    let scratch = Scratch::new("h265-damage");
    let mkv = encode(
        &scratch.0,
        "a.mkv",
        "160x120",
        1,
        &["-c:v", "libx265", "-x265-params", "log-level=error"],
    );
    let ffmpeg = matroska_video(&mkv);
    let config = parse_decoder_config(&ffmpeg.private).unwrap();
    survives_damage(&ffmpeg.private, |d| {
        let _ = parse_decoder_config(d);
    });
    for unit in [&config.vps[0], &config.sps[0], &config.pps[0]] {
        survives_damage(unit, |d| {
            let _ = parse_sps(d);
            let _ = frame_info_length_prefixed(d, 2);
            let mut annexb = vec![0, 0, 1];
            annexb.extend_from_slice(d);
            ParameterSets::default().add_frame(&annexb);
            let mut out = Vec::new();
            annexb_to_length_prefixed(&annexb, &mut out);
        });
    }
    survives_damage(
        &ffmpeg.blocks[0].1[..200.min(ffmpeg.blocks[0].1.len())],
        |d| {
            let _ = frame_info_length_prefixed(d, 4);
        },
    );
}
