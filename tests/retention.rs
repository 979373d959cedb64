//! `[output] keep_days` in the running daemon: at start it deletes finished recordings (and
//! their sidecars, and ended room manifests) whose files are older than that, logging each,
//! and leaves an open recording (sidecar without `ended_at`) of the same age beside them, a
//! recent one, a media file no sidecar describes and a recording dated 1970 (a wrong clock);
//! a sidecar a crash left half-written (`.*.tmp`) goes too. Janus is unreachable here: the sweep
//! does not wait for it.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use support::Scratch;

const DAY: Duration = Duration::from_secs(86_400);

fn file(path: &Path, text: &str, age: Duration) {
    file_at(path, text, SystemTime::now() - age);
}

fn file_at(path: &Path, text: &str, mtime: SystemTime) {
    std::fs::write(path, text).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(mtime).unwrap();
}

#[test]
fn old_finished_recordings_are_deleted_and_open_ones_kept() {
    let scratch = Scratch::new("retention");
    let rec = scratch.path.join("rec");
    let room = rec.join("1234");
    std::fs::create_dir_all(&room).unwrap();
    let ended = r#"{"room": 1234, "ended_at": "2026-01-01T10:00:00Z"}"#;
    let open = r#"{"room": 1234, "ended_at": null}"#;
    let old = 3 * DAY;
    file(&room.join("1-Alice-old.webm"), "media", old);
    file(&room.join("1-Alice-old.json"), ended, old);
    file(&room.join("2-Bob-old.mkv"), "media", old);
    file(&room.join("2-Bob-old.json"), ended, old);
    file(&room.join("3-Carol-open.webm"), "media", old);
    file(&room.join("3-Carol-open.json"), open, old);
    file(&room.join("4-Dan-today.webm"), "media", DAY / 4);
    file(&room.join("4-Dan-today.json"), ended, DAY / 4);
    file(&room.join("no-sidecar.webm"), "media", old);
    file(&room.join("meeting.room.json"), ended, old);
    // Written while the clock said 1970 (no battery-backed clock, before time sync): its age
    // means nothing, it stays.
    file_at(
        &room.join("5-Eve-1970.webm"),
        "media",
        SystemTime::UNIX_EPOCH,
    );
    file_at(&room.join("5-Eve-1970.json"), ended, SystemTime::UNIX_EPOCH);
    // A sidecar a crash left half-written.
    file(
        &room.join(".6-Fay.json.0123456789abcdef.tmp"),
        "{\"room\"",
        old,
    );

    let config = scratch.path.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[janus]\nurl = \"ws://127.0.0.1:1\"\n[output]\ndir = \"{}\"\nkeep_days = 2\n[[rooms]]\nroom = 1234\n",
            rec.display()
        ),
    )
    .unwrap();
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log on a thread that drains it to the end, so the daemon never writes into a
    // closed pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = daemon.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        let done = line.contains("retention sweep done");
        log.push(line);
        if done {
            break;
        }
    }
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let status = daemon.wait().unwrap();
    reader.join().unwrap();
    log.extend(rx.try_iter());
    assert!(status.success(), "{status}: {}", log.join("\n"));
    let log = log.join("\n");

    let mut left: Vec<String> = std::fs::read_dir(&room)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "3-Carol-open.json",
            "3-Carol-open.webm",
            "4-Dan-today.json",
            "4-Dan-today.webm",
            "5-Eve-1970.json",
            "5-Eve-1970.webm",
            "no-sidecar.webm"
        ],
        "{log}"
    );
    for gone in [
        "1-Alice-old.webm",
        "1-Alice-old.json",
        "2-Bob-old.mkv",
        "2-Bob-old.json",
        "meeting.room.json",
        ".6-Fay.json.0123456789abcdef.tmp",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("retention: deleted") && l.contains(gone)),
            "{gone} not logged:\n{log}"
        );
    }
    assert!(log.contains("files=6"), "{log}");
    assert!(
        log.contains("dated before this version existed") && log.contains("5-Eve-1970"),
        "{log}"
    );
}

/// Ages are only as good as the clock: both units start after time-sync.target, ordered but
/// not pulled in (systemd.special(7): services that need an accurate clock order themselves
/// after it; only the clock-synchronizing services pull it in).
#[test]
fn the_units_start_after_the_clock_is_synchronized() {
    for unit in ["janus-recorder.service", "janus-recorder@.service"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(unit);
        let text = std::fs::read_to_string(&path).unwrap();
        let values = |key: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| l.strip_prefix(key))
                .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .collect()
        };
        assert!(
            values("After=").iter().any(|u| u == "time-sync.target"),
            "{unit}"
        );
        assert!(
            !values("Wants=").iter().any(|u| u == "time-sync.target"),
            "{unit}"
        );
    }
}
