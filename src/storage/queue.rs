//! The durable upload queue: one JSON file per file to upload in `<state_dir>/uploads/queue/`,
//! named by a time-ordered id (a listing is the upload order), written atomically before the
//! upload starts and removed once it is verified; and the ledger of files uploaded
//! (`uploads/done/`), which retention asks before it deletes anything.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::output::{create_private_dir, write_json_atomically};

/// What a queued file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A recording's `.webm`/`.mkv`.
    Media,
    /// A recording's sidecar `.json`.
    Sidecar,
    /// A room manifest `.room.json`.
    Manifest,
}

/// One file waiting to be uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Time-ordered (UUIDv7): the queue file's name, the multipart journal's too.
    pub id: String,
    pub path: PathBuf,
    /// The object key (rendered when it was queued).
    pub key: String,
    pub kind: FileKind,
    /// The file's size when it was queued.
    pub bytes: u64,
    /// When it was queued (seconds since the Unix epoch).
    pub queued_at: u64,
}

impl Pending {
    /// A new entry for `path`, queued now.
    pub fn new(path: PathBuf, key: String, kind: FileKind, bytes: u64) -> Pending {
        Pending {
            id: uuid::Uuid::now_v7().to_string(),
            path,
            key,
            kind,
            bytes,
            queued_at: unix_now(),
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The queue's and the ledger's directories.
#[derive(Debug, Clone)]
pub struct Queue {
    queue: PathBuf,
    done: PathBuf,
}

impl Queue {
    /// Opens (creating, 0750) `<state_dir>/uploads/queue` and `uploads/done`.
    pub fn open(state_dir: &Path) -> std::io::Result<Queue> {
        let base = state_dir.join("uploads");
        let q = Queue {
            queue: base.join("queue"),
            done: base.join("done"),
        };
        create_private_dir(&q.queue)?;
        create_private_dir(&q.done)?;
        Ok(q)
    }

    /// Adds `item` (synced to disk before it returns).
    pub fn add(&self, item: &Pending) -> std::io::Result<()> {
        write_json_atomically(&self.queue.join(format!("{}.json", item.id)), item)
    }

    /// Every queued file, oldest first. Entries that cannot be read are logged and skipped.
    pub fn list(&self) -> Vec<Pending> {
        let Ok(dir) = std::fs::read_dir(&self.queue) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = dir
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|p| {
                let read = std::fs::read(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
                read.map_err(|e| {
                    tracing::error!(entry = %p.display(), error = %e, "an upload queue entry cannot be read; left in place");
                })
                .ok()
            })
            .collect()
    }

    /// Removes `item` from the queue (uploaded, or its file is gone).
    pub fn remove(&self, item: &Pending) -> std::io::Result<()> {
        match std::fs::remove_file(self.queue.join(format!("{}.json", item.id))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Notes `path` as uploaded (and verified) under `key`.
    pub fn mark_uploaded(&self, path: &Path, key: &str) -> std::io::Result<()> {
        write_json_atomically(
            &self.done.join(ledger_name(path)),
            &serde_json::json!({ "path": path, "key": key }),
        )
    }

    /// Whether `path` was uploaded and verified.
    pub fn is_uploaded(&self, path: &Path) -> bool {
        self.done.join(ledger_name(path)).is_file()
    }

    /// The key `path` was uploaded under, if it was.
    pub fn uploaded_key(&self, path: &Path) -> Option<String> {
        let entry = std::fs::read(self.done.join(ledger_name(path))).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&entry).ok()?;
        Some(v.get("key")?.as_str()?.to_owned())
    }

    /// Every file in the ledger: its path and key.
    pub fn uploaded(&self) -> Vec<(PathBuf, String)> {
        let Ok(dir) = std::fs::read_dir(&self.done) else {
            return Vec::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some((
                    PathBuf::from(v.get("path")?.as_str()?),
                    v.get("key")?.as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// Forgets `path` (its local file was deleted).
    pub fn forget(&self, path: &Path) {
        let _ = std::fs::remove_file(self.done.join(ledger_name(path)));
    }
}

/// A ledger entry's name: a digest of the path (which may hold any character).
fn ledger_name(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let digest = sha2::Sha256::digest(path.as_os_str().as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_in_order_and_go_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let a = Pending::new("/r/a.webm".into(), "k/a.webm".into(), FileKind::Media, 10);
        let b = Pending::new("/r/a.json".into(), "k/a.json".into(), FileKind::Sidecar, 2);
        q.add(&a).unwrap();
        q.add(&b).unwrap();
        std::fs::write(dir.path().join("uploads/queue/zz.json"), b"{").unwrap();
        let again = Queue::open(dir.path()).unwrap();
        assert_eq!(again.list(), vec![a.clone(), b.clone()]);
        again.remove(&a).unwrap();
        again.remove(&a).unwrap();
        assert_eq!(again.list(), vec![b]);
    }

    #[test]
    fn the_ledger_remembers_uploaded_paths() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path()).unwrap();
        let p = Path::new("/r/a b\n.webm");
        assert!(!q.is_uploaded(p));
        q.mark_uploaded(p, "k").unwrap();
        assert!(q.is_uploaded(p));
        assert_eq!(q.uploaded(), vec![(p.to_owned(), "k".to_owned())]);
        assert_eq!(q.uploaded_key(p).as_deref(), Some("k"));
        assert_eq!(q.uploaded_key(Path::new("/r/other.webm")), None);
        assert!(!q.is_uploaded(Path::new("/r/other.webm")));
        q.forget(p);
        assert!(!q.is_uploaded(p));
    }
}
