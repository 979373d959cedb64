//! The journal of one multipart upload (`<state_dir>/uploads/multipart/<id>.json`): its
//! upload id and each part's ETag, rewritten atomically after every part, so that an upload
//! cut off (storage down, the daemon killed) goes on from its last part with the same upload
//! id instead of starting over.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::output::{create_private_dir, write_json_atomically};

/// What is known of one multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The queue entry's id (the journal's file name).
    pub id: String,
    pub key: String,
    /// The upload id the server gave.
    pub upload_id: String,
    /// The local file's size and SHA-256 (hex) when the upload began: a file changed since
    /// cannot be resumed.
    pub size: u64,
    pub sha256: String,
    /// Every part but the last is this long.
    pub part_size: u64,
    /// The ETags of the parts uploaded, in order (part `i` at index `i`).
    pub parts: Vec<String>,
}

impl Journal {
    /// How many parts the file takes.
    pub fn part_count(&self) -> u64 {
        self.size.div_ceil(self.part_size).max(1)
    }

    /// The byte range of part `i`.
    pub fn part_range(&self, i: u64) -> std::ops::Range<u64> {
        let start = i * self.part_size;
        start..(start + self.part_size).min(self.size)
    }
}

/// The directory of the journals.
#[derive(Debug, Clone)]
pub struct Journals {
    dir: PathBuf,
}

impl Journals {
    /// Opens (creating, 0750) `<state_dir>/uploads/multipart`.
    pub fn open(state_dir: &Path) -> std::io::Result<Journals> {
        let dir = state_dir.join("uploads").join("multipart");
        create_private_dir(&dir)?;
        Ok(Journals { dir })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// The journal of queue entry `id`, if an upload of it was begun (an unreadable journal
    /// counts as none: the upload starts over).
    pub fn load(&self, id: &str) -> Option<Journal> {
        let bytes = std::fs::read(self.path(id)).ok()?;
        serde_json::from_slice(&bytes)
            .map_err(|e| tracing::warn!(id, error = %e, "a multipart journal cannot be read; the upload starts over"))
            .ok()
    }

    /// Writes `journal` (synced, atomically).
    pub fn save(&self, journal: &Journal) -> std::io::Result<()> {
        write_json_atomically(&self.path(&journal.id), journal)
    }

    /// Removes the journal of `id` (the upload completed or was aborted).
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.path(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_is_read_back_as_written_and_ranges_cover_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let js = Journals::open(dir.path()).unwrap();
        let mut j = Journal {
            id: "0190".into(),
            key: "r/a.webm".into(),
            upload_id: "up-1".into(),
            size: 20,
            sha256: "ab".into(),
            part_size: 8,
            parts: vec![],
        };
        js.save(&j).unwrap();
        j.parts.push("\"etag-1\"".into());
        js.save(&j).unwrap();
        assert_eq!(js.load("0190"), Some(j.clone()));
        assert_eq!(j.part_count(), 3);
        assert_eq!(
            (0..3).map(|i| j.part_range(i)).collect::<Vec<_>>(),
            vec![0..8, 8..16, 16..20]
        );
        std::fs::write(dir.path().join("uploads/multipart/bad.json"), b"{").unwrap();
        assert_eq!(js.load("bad"), None);
        js.remove("0190");
        assert_eq!(js.load("0190"), None);
    }
}
