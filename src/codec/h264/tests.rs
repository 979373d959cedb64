use super::*;
use crate::codec::test_streams::*;

/// Parses the Annex B form of x264's streams (baseline, main, high, interlaced high, high
/// 4:4:4; a height that needs cropping) frame by frame, and compares with ffprobe and with
/// the CodecPrivate and blocks ffmpeg writes into Matroska.
#[test]
fn x264_streams_agree_with_ffmpeg() {
    let scratch = Scratch::new("h264");
    for (name, profile, pix_fmt, extra) in [
        ("baseline", "baseline", "yuv420p", ""),
        ("main", "main", "yuv420p", ""),
        ("high", "high", "yuv420p", ""),
        ("interlaced", "high", "yuv420p", ":interlaced=1"),
        ("high444", "high444", "yuv444p", ""),
    ] {
        let params = format!("keyint=15:min-keyint=15:scenecut=0:aud=1{extra}");
        let encoder = [
            "-c:v",
            "libx264",
            "-profile:v",
            profile,
            "-pix_fmt",
            pix_fmt,
        ];
        let clip = clip(
            &scratch.0,
            &format!("{name}.mkv"),
            &[&encoder[..], &["-x264-params", &params]].concat(),
            &["-bsf:v", "h264_mp4toannexb"],
            "h264",
        );
        let units = split_access_units(
            &clip.stream,
            |n| (1..=5).contains(&(n[0] & 0x1f)),
            |n| n[1] & 0x80 != 0,
        );
        let mut sets = ParameterSets::default();
        let infos: Vec<FrameInfo> = units.iter().map(|u| sets.add_frame(u)).collect();
        assert_infos_match(name, &infos, &clip.probe);
        assert_eq!(infos.iter().filter(|i| i.keyframe).count(), 4, "{name}");

        let ffmpeg = &clip.ffmpeg;
        assert_eq!(ffmpeg.codec_id, "V_MPEG4/ISO/AVC");
        let ours = sets.decoder_config().expect("an avcC");
        assert_eq!(ours, ffmpeg.private, "{name}: avcC");
        let parsed = parse_decoder_config(&ffmpeg.private).expect("ffmpeg's avcC parses");
        assert_eq!(parsed.length_size, 4);
        let sps = parse_sps(&parsed.sps[0]).unwrap();
        assert_eq!((sps.width, sps.height), clip.probe.size, "{name}");
        assert_eq!(Some(&sps), sets.sps());
        assert_eq!(parse_decoder_config(&ours), Some(parsed));

        let codec = NalCodec {
            nal_type,
            to_length_prefixed: annexb_to_length_prefixed,
            frame_info: frame_info_length_prefixed,
        };
        let in_band = [NAL_SPS, NAL_PPS];
        assert_blocks_match(name, &codec, &units, &ffmpeg.blocks, &in_band, &[NAL_AUD]);
    }
}

/// A hand-made baseline SPS: 1280x720 (80x45 macroblocks, no cropping).
const SPS_720P: [u8; 10] = [0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8, 0x40];

#[test]
fn sps_fields() {
    let sps = parse_sps(&SPS_720P).unwrap();
    assert_eq!((sps.profile_idc, sps.level_idc, sps.id), (66, 31, 0));
    assert_eq!((sps.width, sps.height), (1280, 720));
    assert_eq!(parse_sps(&[0x68, 0x42]), None, "not an SPS");
}

#[test]
fn decoder_config_needs_sps_and_pps() {
    let mut sets = ParameterSets::default();
    let mut au = vec![0, 0, 0, 1];
    au.extend_from_slice(&SPS_720P);
    assert_eq!(
        sets.add_frame(&au),
        FrameInfo {
            keyframe: false,
            size: Some((1280, 720))
        }
    );
    assert_eq!(sets.decoder_config(), None);
    let info = sets.add_frame(&[0, 0, 1, 0x68, 0xce, 0x38, 0x80, 0, 0, 1, 0x65, 0x88]);
    assert_eq!(
        info,
        FrameInfo {
            keyframe: true,
            size: None
        }
    );
    let avcc = sets.decoder_config().unwrap();
    assert_eq!(&avcc[..6], [1, 0x42, 0xc0, 0x1f, 0xff, 0xe1]);
    let parsed = parse_decoder_config(&avcc).unwrap();
    assert_eq!(parsed.sps, [SPS_720P.to_vec()]);
    assert_eq!(parsed.pps, [vec![0x68, 0xce, 0x38, 0x80]]);
}

#[test]
fn damaged_input_never_panics() {
    survives_damage(&SPS_720P, |d| {
        let _ = parse_sps(d);
        let _ = frame_info_length_prefixed(d, 4);
        let _ = frame_info_length_prefixed(d, 1);
        ParameterSets::default().add_frame(d);
        let _ = parse_decoder_config(d);
        let mut out = Vec::new();
        annexb_to_length_prefixed(d, &mut out);
    });
    let mut sets = ParameterSets::default();
    let mut au = vec![0, 0, 1];
    au.extend_from_slice(&SPS_720P);
    au.extend_from_slice(&[0, 0, 1, 0x68, 0xce, 0x38, 0x80]);
    sets.add_frame(&au);
    survives_damage(&sets.decoder_config().unwrap(), |d| {
        let _ = parse_decoder_config(d);
    });
}
