//! `janus-recorder-decode`: the video decoder behind `check --decode`, a program of its own so
//! that only it links libavcodec (with it, every `janus-recorder` process, the daemon too,
//! would map about a hundred shared libraries and start at 33 MiB RSS instead of 17).
//!
//! Every video frame goes through a real decoder, libavcodec (through ffmpeg-next): VP8, VP9,
//! H.264 and H.265 by its own decoders, AV1 by libdav1d (libavcodec's native AV1 decoder needs
//! hardware). Decoders are told to fail on errors they would otherwise conceal
//! (`AV_EF_EXPLODE`), and run on one thread, so an error belongs to the frame just sent.
//!
//! It speaks [`janus_recorder::check::decoder`]'s protocol on stdin and stdout: one track per
//! process.

use std::io::{self, BufReader, BufWriter};
use std::process::ExitCode;

use ff::codec::Id;
use ffmpeg_next as ff;

use janus_recorder::check::decoder::{Reply, Request, read_request, write_reply};
use janus_recorder::codec::VideoCodec;

fn main() -> ExitCode {
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    match serve(&mut input, &mut output) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("janus-recorder-decode: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Answers one track's requests: `Open` first, then `Frame`s, then `Finish`.
fn serve(input: &mut impl io::BufRead, output: &mut impl io::Write) -> io::Result<()> {
    let mut decoder = None;
    while let Some(request) = read_request(input)? {
        let reply = match (request, &mut decoder) {
            (Request::Open { codec, private }, None) => {
                match FrameDecoder::new(codec, private.as_deref()) {
                    Ok(d) => {
                        decoder = Some(d);
                        Reply::Opened
                    }
                    Err(e) => Reply::Refused(e),
                }
            }
            (Request::Frame(data), Some(d)) => Reply::Decoded {
                errors: d.decode(&data),
                decoded: d.decoded(),
            },
            (Request::Finish, Some(d)) => {
                let errors = d.finish();
                let decoded = d.decoded();
                return write_reply(output, &Reply::Decoded { errors, decoded });
            }
            _ => return Err(io::Error::other("request out of order")),
        };
        write_reply(output, &reply)?;
    }
    Ok(())
}

/// One video track's decoder.
struct FrameDecoder {
    decoder: ff::decoder::Video,
    frame: ff::frame::Video,
    /// Pictures that came out of the decoder.
    decoded: u64,
}

impl FrameDecoder {
    /// A decoder for `codec`, given the track's CodecPrivate (avcC, hvcC, av1C) as its
    /// extradata. `Err`: why there is none.
    fn new(codec: VideoCodec, private: Option<&[u8]>) -> Result<FrameDecoder, String> {
        // Fills ffmpeg-next's table of error messages (empty before).
        let _ = ff::init();
        // Its errors are reported by `check`, with their times; its log would only repeat them.
        ff::util::log::set_level(ff::util::log::Level::Quiet);
        let found = match codec {
            VideoCodec::Vp8 => ff::decoder::find(Id::VP8),
            VideoCodec::Vp9 => ff::decoder::find(Id::VP9),
            VideoCodec::H264 => ff::decoder::find(Id::H264),
            VideoCodec::H265 => ff::decoder::find(Id::HEVC),
            VideoCodec::Av1 => ff::decoder::find_by_name("libdav1d")
                .or_else(|| ff::decoder::find_by_name("libaom-av1")),
        };
        let Some(found) = found else {
            return Err(format!("libavcodec has no {} decoder", codec.codec_id()));
        };
        let mut context = ff::codec::Context::new_with_codec(found);
        if let Some(private) = private.filter(|p| !p.is_empty()) {
            set_extradata(&mut context, private)?;
        }
        let mut decoder = context.decoder();
        decoder.check(ff::decoder::Check::EXPLODE);
        let decoder = decoder
            .open_as(found)
            .and_then(|d| d.video())
            .map_err(|e| format!("cannot open the {} decoder: {e}", found.name()))?;
        Ok(FrameDecoder {
            decoder,
            frame: ff::frame::Video::empty(),
            decoded: 0,
        })
    }

    /// Pictures that came out of the decoder so far.
    fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Decodes one frame; returns what the decoder said was wrong.
    fn decode(&mut self, data: &[u8]) -> Vec<String> {
        let mut errors = Vec::new();
        let packet = ff::Packet::copy(data);
        let mut sent = self.decoder.send_packet(&packet);
        if matches!(sent, Err(ff::Error::Other { errno }) if errno == libc::EAGAIN) {
            // Full: take what it has, then it takes the frame.
            self.drain(&mut errors);
            sent = self.decoder.send_packet(&packet);
        }
        if let Err(e) = sent {
            errors.push(e.to_string());
        }
        self.drain(&mut errors);
        errors
    }

    /// Takes the last pictures out at the end of the track; returns the errors.
    fn finish(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        if self.decoder.send_eof().is_ok() {
            self.drain(&mut errors);
        }
        errors
    }

    fn drain(&mut self, errors: &mut Vec<String>) {
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {
                    self.decoded += 1;
                    if self.frame.is_corrupt() {
                        errors.push("the decoder marked the picture corrupt".into());
                    }
                }
                Err(ff::Error::Eof) => break,
                Err(ff::Error::Other { errno }) if errno == libc::EAGAIN => break,
                Err(e) => {
                    errors.push(e.to_string());
                    break;
                }
            }
        }
    }
}

/// Gives the decoder `data` as its extradata (ffmpeg-next has no setter for it): a copy in
/// memory from `av_malloc`, padded as libavcodec requires, which the context frees.
fn set_extradata(context: &mut ff::codec::Context, data: &[u8]) -> Result<(), String> {
    let size = i32::try_from(data.len()).map_err(|_| "CodecPrivate too large".to_string())?;
    let padded = data.len() + ff::ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: the buffer is allocated with av_mallocz (zeroed padding included) and filled
    // within its length; the context owns it from here and frees it with av_free when dropped
    // (avcodec_free_context). The context has no extradata yet (new_with_codec).
    unsafe {
        let buf = ff::ffi::av_mallocz(padded).cast::<u8>();
        if buf.is_null() {
            return Err("out of memory for CodecPrivate".into());
        }
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        let ctx = context.as_mut_ptr();
        (*ctx).extradata = buf;
        (*ctx).extradata_size = size;
    }
    Ok(())
}
