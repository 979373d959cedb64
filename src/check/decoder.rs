//! `check --decode`'s video decoder, run as a program of its own (`janus-recorder-decode`,
//! installed beside `janus-recorder`): only that program links libavcodec, so the daemon and
//! every other command stay at a dozen shared libraries, and a decoder crashing on a hostile
//! file is a problem in the report, not a crashed check.
//!
//! One process per video track. The protocol on its stdin and stdout is a request, then its
//! reply, each a tag byte and length-prefixed fields (little-endian `u32` lengths):
//! `Open` (codec id, CodecPrivate) -> `Opened` or `Refused`; `Frame` -> `Decoded`;
//! `Finish` -> `Decoded`, and the process exits.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::codec::VideoCodec;

/// The decoder program's name; `JANUS_RECORDER_DECODER` names another path.
pub const PROGRAM: &str = "janus-recorder-decode";

/// The largest field read: a frame far larger than check's own 16 MiB element cap is damage.
const MAX_FIELD: usize = 64 << 20;

/// What `check` asks of the decoder.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// The track's codec and its CodecPrivate (avcC, hvcC, av1C) as extradata.
    Open {
        codec: VideoCodec,
        private: Option<Vec<u8>>,
    },
    /// One frame, in the track's order.
    Frame(Vec<u8>),
    /// The end of the track: the last pictures out.
    Finish,
}

/// What the decoder answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Opened,
    /// No decoder for this track, and why.
    Refused(String),
    /// What the decoder said was wrong with the frame (or the end), and the pictures that came
    /// out of it so far.
    Decoded {
        errors: Vec<String>,
        decoded: u64,
    },
}

/// Writes one request.
pub fn write_request(out: &mut impl Write, request: &Request) -> io::Result<()> {
    match request {
        Request::Open { codec, private } => {
            out.write_all(b"O")?;
            write_field(out, codec.codec_id().as_bytes())?;
            write_field(out, private.as_deref().unwrap_or_default())?;
        }
        Request::Frame(data) => {
            out.write_all(b"F")?;
            write_field(out, data)?;
        }
        Request::Finish => out.write_all(b"E")?,
    }
    out.flush()
}

/// Reads one request; `None` at the end of the input.
pub fn read_request(input: &mut impl BufRead) -> io::Result<Option<Request>> {
    if input.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let request = match read_tag(input)? {
        b'O' => {
            let id = String::from_utf8_lossy(&read_field(input)?).into_owned();
            let codec = VideoCodec::from_codec_id(&id)
                .ok_or_else(|| invalid(format!("unknown codec {id:?}")))?;
            let private = read_field(input)?;
            Request::Open {
                codec,
                private: (!private.is_empty()).then_some(private),
            }
        }
        b'F' => Request::Frame(read_field(input)?),
        b'E' => Request::Finish,
        tag => return Err(invalid(format!("unknown request {tag}"))),
    };
    Ok(Some(request))
}

/// Writes one reply.
pub fn write_reply(out: &mut impl Write, reply: &Reply) -> io::Result<()> {
    match reply {
        Reply::Opened => out.write_all(b"O")?,
        Reply::Refused(why) => {
            out.write_all(b"R")?;
            write_field(out, why.as_bytes())?;
        }
        Reply::Decoded { errors, decoded } => {
            out.write_all(b"D")?;
            out.write_all(&decoded.to_le_bytes())?;
            out.write_all(&len32(errors.len())?.to_le_bytes())?;
            for e in errors {
                write_field(out, e.as_bytes())?;
            }
        }
    }
    out.flush()
}

/// Reads one reply.
pub fn read_reply(input: &mut impl Read) -> io::Result<Reply> {
    Ok(match read_tag(input)? {
        b'O' => Reply::Opened,
        b'R' => Reply::Refused(read_text(input)?),
        b'D' => {
            let mut decoded = [0; 8];
            input.read_exact(&mut decoded)?;
            let count = read_len(input)?;
            // Each error is at least its length; the count cannot claim memory by itself.
            let mut errors = Vec::with_capacity(count.min(64));
            for _ in 0..count {
                errors.push(read_text(input)?);
            }
            Reply::Decoded {
                errors,
                decoded: u64::from_le_bytes(decoded),
            }
        }
        tag => return Err(invalid(format!("unknown reply {tag}"))),
    })
}

/// One video track's decoder: the program, running.
pub(crate) struct FrameDecoder {
    child: Child,
    to: BufWriter<ChildStdin>,
    from: BufReader<ChildStdout>,
    /// Pictures that came out of the decoder so far.
    decoded: u64,
    /// Set once the program failed (reported once; the track's remaining frames are not
    /// decoded).
    failed: bool,
}

impl FrameDecoder {
    /// A decoder for `codec` with the track's CodecPrivate, run as `program`. `Err`: why there
    /// is none.
    pub(crate) fn new(
        program: &Path,
        codec: VideoCodec,
        private: Option<&[u8]>,
    ) -> Result<FrameDecoder, String> {
        let mut child = Command::new(program)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run the video decoder {}: {e} (it is installed beside \
                     janus-recorder; JANUS_RECORDER_DECODER names another path)",
                    program.display()
                )
            })?;
        let (Some(to), Some(from)) = (child.stdin.take(), child.stdout.take()) else {
            return Err("the video decoder has no pipes".into());
        };
        let mut decoder = FrameDecoder {
            child,
            to: BufWriter::new(to),
            from: BufReader::new(from),
            decoded: 0,
            failed: false,
        };
        let open = Request::Open {
            codec,
            private: private.map(<[u8]>::to_vec),
        };
        match decoder.ask(&open) {
            Ok(Reply::Opened) => Ok(decoder),
            Ok(Reply::Refused(why)) => Err(why),
            Ok(other) => Err(format!("the video decoder answered {other:?} to open")),
            Err(e) => Err(decoder.stopped(e)),
        }
    }

    /// Pictures that came out of the decoder so far.
    pub(crate) fn decoded(&self) -> u64 {
        self.decoded
    }

    /// Decodes one frame; returns what the decoder said was wrong.
    pub(crate) fn decode(&mut self, data: &[u8]) -> Vec<String> {
        self.exchange(&Request::Frame(data.to_vec()))
    }

    /// Takes the last pictures out at the end of the track; returns the errors.
    pub(crate) fn finish(&mut self) -> Vec<String> {
        let errors = self.exchange(&Request::Finish);
        let _ = self.child.wait();
        errors
    }

    fn exchange(&mut self, request: &Request) -> Vec<String> {
        if self.failed {
            return Vec::new();
        }
        match self.ask(request) {
            Ok(Reply::Decoded { errors, decoded }) => {
                self.decoded = decoded;
                errors
            }
            Ok(other) => {
                self.failed = true;
                vec![format!("the video decoder answered {other:?}")]
            }
            Err(e) => vec![self.stopped(e)],
        }
    }

    fn ask(&mut self, request: &Request) -> io::Result<Reply> {
        write_request(&mut self.to, request)?;
        read_reply(&mut self.from)
    }

    /// The program failed: how it ended (a crash on this frame shows as its signal).
    fn stopped(&mut self, e: io::Error) -> String {
        self.failed = true;
        let _ = self.child.kill();
        match self.child.wait() {
            Ok(status) if !status.success() => {
                format!(
                    "the video decoder stopped ({status}); the rest of the track is not decoded"
                )
            }
            _ => format!("the video decoder failed: {e}; the rest of the track is not decoded"),
        }
    }
}

impl Drop for FrameDecoder {
    fn drop(&mut self) {
        if !self.failed && self.child.try_wait().is_ok_and(|s| s.is_none()) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where the decoder program is: `JANUS_RECORDER_DECODER`, or beside this executable.
pub fn program() -> PathBuf {
    if let Some(path) = std::env::var_os("JANUS_RECORDER_DECODER") {
        return path.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(PROGRAM)))
        .unwrap_or_else(|| PROGRAM.into())
}

fn write_field(out: &mut impl Write, data: &[u8]) -> io::Result<()> {
    out.write_all(&len32(data.len())?.to_le_bytes())?;
    out.write_all(data)
}

fn len32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| invalid("field over 4 GiB".into()))
}

fn read_tag(input: &mut impl Read) -> io::Result<u8> {
    let mut tag = [0];
    input.read_exact(&mut tag)?;
    Ok(tag[0])
}

fn read_len(input: &mut impl Read) -> io::Result<usize> {
    let mut len = [0; 4];
    input.read_exact(&mut len)?;
    Ok(u32::from_le_bytes(len) as usize)
}

fn read_field(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let len = read_len(input)?;
    if len > MAX_FIELD {
        return Err(invalid(format!("a field of {len} bytes")));
    }
    let mut data = vec![0; len];
    input.read_exact(&mut data)?;
    Ok(data)
}

fn read_text(input: &mut impl Read) -> io::Result<String> {
    Ok(String::from_utf8_lossy(&read_field(input)?).into_owned())
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request and reply reads back as written, one after another on one stream.
    #[test]
    fn messages_read_back_as_written() {
        let requests = [
            Request::Open {
                codec: VideoCodec::H264,
                private: Some(vec![1, 100, 0, 31]),
            },
            Request::Open {
                codec: VideoCodec::Vp8,
                private: None,
            },
            Request::Frame(vec![7; 1000]),
            Request::Frame(Vec::new()),
            Request::Finish,
        ];
        let mut wire = Vec::new();
        for r in &requests {
            write_request(&mut wire, r).unwrap();
        }
        let mut input = &wire[..];
        for r in requests {
            assert_eq!(read_request(&mut input).unwrap(), Some(r));
        }
        assert_eq!(read_request(&mut input).unwrap(), None);

        let replies = [
            Reply::Opened,
            Reply::Refused("no AV1 decoder".into()),
            Reply::Decoded {
                errors: vec!["Invalid data".into(), "corrupt".into()],
                decoded: 41,
            },
            Reply::Decoded {
                errors: vec![],
                decoded: u64::MAX,
            },
        ];
        let mut wire = Vec::new();
        for r in &replies {
            write_reply(&mut wire, r).unwrap();
        }
        let mut input = &wire[..];
        for r in replies {
            assert_eq!(read_reply(&mut input).unwrap(), r);
        }
    }

    /// A field claiming more than the cap is refused before anything is allocated; an unknown
    /// tag or codec is an error, not a guess.
    #[test]
    fn damage_is_an_error() {
        let mut huge = b"F".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(read_request(&mut &huge[..]).is_err());
        assert!(read_request(&mut &b"X"[..]).is_err());
        let mut unknown = b"O".to_vec();
        write_field(&mut unknown, b"V_XY8").unwrap();
        write_field(&mut unknown, b"").unwrap();
        let e = read_request(&mut &unknown[..]).unwrap_err();
        assert!(e.to_string().contains("V_XY8"), "{e}");
        assert!(read_reply(&mut &b"Z"[..]).is_err());
    }
}
