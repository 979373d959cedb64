//! Opus packets decoded with libopus: errors, decoded length and how much is near-silent.

/// Decoded 20 ms pieces quieter than this RMS (full scale = 1.0) count as silent (-60 dBFS).
const SILENCE_RMS: f64 = 0.001;
/// The largest Opus packet: 120 ms at 48 kHz, two channels.
const MAX_SAMPLES: usize = 5760 * 2;

/// Why libopus did not decode a packet.
#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    /// No decoder: libopus refused to create one.
    #[error("libopus could not be initialised")]
    NoDecoder,
    /// libopus refused the packet.
    #[error(transparent)]
    Decode(#[from] opus::Error),
}

/// Decodes one track's packets in order.
pub struct OpusCheck {
    decoder: Option<opus::Decoder>,
    pcm: Vec<f32>,
    pub decoded_samples: u64,
    pub silent_samples: u64,
    pub errors: u64,
}

impl OpusCheck {
    pub fn new() -> OpusCheck {
        OpusCheck {
            decoder: opus::Decoder::new(48_000, opus::Channels::Stereo).ok(),
            pcm: vec![0.0; MAX_SAMPLES],
            decoded_samples: 0,
            silent_samples: 0,
            errors: 0,
        }
    }

    /// Decodes a packet; returns libopus's complaint if it refused it.
    pub fn decode(&mut self, packet: &[u8]) -> Result<(), OpusError> {
        let Some(decoder) = &mut self.decoder else {
            return Err(OpusError::NoDecoder);
        };
        match decoder.decode_float(packet, &mut self.pcm, false) {
            Ok(samples) => {
                self.decoded_samples += samples as u64;
                let pcm = &self.pcm[..samples * 2];
                let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
                let rms = (energy / pcm.len().max(1) as f64).sqrt();
                if rms < SILENCE_RMS {
                    self.silent_samples += samples as u64;
                }
                Ok(())
            }
            Err(e) => {
                self.errors += 1;
                Err(e.into())
            }
        }
    }

    /// The decoded length in ms.
    pub fn decoded_ms(&self) -> u64 {
        self.decoded_samples / 48
    }

    /// The share of decoded audio that is near-silent.
    pub fn silent_share(&self) -> Option<f64> {
        (self.decoded_samples > 0).then(|| self.silent_samples as f64 / self.decoded_samples as f64)
    }
}

/// A packet's length in ms by its TOC, without decoding (None if the TOC is invalid).
pub fn packet_ms(packet: &[u8]) -> Option<u64> {
    opus::packet::get_nb_samples(packet, 48_000)
        .ok()
        .map(|n| n as u64 / 48)
}
