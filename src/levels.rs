//! Audio levels of a recording, for the recordings page's speaker lanes: the loudest level
//! Janus reported (the audio-level RTP header extension, RFC 6464) in each 100 ms of the
//! file, one byte each, in `<stem>.levels` beside the sidecar, written when the file is
//! finalized. A byte is `127 - dBov` clamped to 0..=127 (127 the loudest, 0 silence or
//! nothing reported): 36 KB per hour of recording.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long each level covers.
pub const EVERY: Duration = Duration::from_millis(100);
/// The most levels kept: 48 hours.
pub const MAX_LEVELS: usize = 48 * 36_000;

/// The levels of one file, as they come.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Levels(Vec<u8>);

impl Levels {
    /// Takes a level of `dbov` (0 the loudest, -127 silence; the extension's sign either way)
    /// for audio at `at` in the file.
    pub fn record(&mut self, at: Duration, dbov: i8) {
        let i = (at.as_millis() / EVERY.as_millis()) as usize;
        if i >= MAX_LEVELS {
            return;
        }
        if self.0.len() <= i {
            self.0.resize(i + 1, 0);
        }
        let loudness = 127 - i16::from(dbov).abs().min(127);
        self.0[i] = self.0[i].max(loudness as u8);
    }

    /// The levels, one per [`EVERY`].
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Writes them beside the sidecar at `sidecar` (nothing if none came).
    pub fn write(&self, sidecar: &Path) -> std::io::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        std::fs::write(path_beside(sidecar), &self.0)
    }
}

/// The levels file of the recording whose sidecar is `sidecar`.
pub fn path_beside(sidecar: &Path) -> PathBuf {
    sidecar.with_extension("levels")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loudest_of_each_100_ms_is_kept() {
        let mut l = Levels::default();
        let ms = Duration::from_millis;
        l.record(ms(0), -127);
        l.record(ms(20), -30);
        l.record(ms(40), -90);
        l.record(ms(250), 10); // a positive value is the same level
        assert_eq!(l.bytes(), [97, 0, 117]);
        l.record(Duration::from_secs(48 * 3600), -1);
        assert_eq!(l.bytes().len(), 3, "past the cap: dropped");
        assert_eq!(
            path_beside(Path::new("/r/1/a-b.json")),
            Path::new("/r/1/a-b.levels")
        );
    }
}
