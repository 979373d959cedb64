//! The recordings page in a real headless Chromium (Playwright for Python driving the system
//! Chromium, `tests/page/driver.py`), against the daemon recording a real room: two
//! publishers joining 3 s apart, one with a display name that is HTML. The live view plays
//! while they publish; then the meetings list, the meeting played on its room clock (seeked,
//! then 10 s of play, every video within 50 ms of the clock), a recording, the login page
//! without a token, and share links (a wrong or expired one is 401). Screenshots are kept in
//! `<target tmp>/page-artifacts/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const READ: &str = "read-token-0123456789abc";
const SHARE_KEY: &str = "share-key-0123456789abcdef";
const ROOM: u64 = 4321;
const HOSTILE: &str = "<img src=x onerror=\"window.__pwned=1;alert(1)\">Bob";

/// Fails unless Playwright for Python is importable, saying how to install it.
fn require_playwright() {
    let ok = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "Playwright for Python is missing: run `scripts/setup.sh` (or `pip install playwright`; \
         never `playwright install`: the tests use /usr/bin/chromium)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run `scripts/setup.sh` (or `apt-get install -y chromium`)"
    );
}

/// Where the screenshots are kept (each test its own folder).
fn artifacts(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("page-artifacts")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One test at a time: each runs Chromium publishers and a browser on two cores, and the
/// sync it measures needs them.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `[http]` with a read token and a share key.
fn http_toml() -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:9469\"\nshare_key = \"{SHARE_KEY}\"\n\
         [[http.tokens]]\ntoken = \"{READ}\"\nscope = \"read\"\n"
    )
}

/// Runs one phase of the driver inside the namespace; returns what it measured.
fn drive(ns: &Netns, dir: &Path, phase: &str, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page/driver.py");
    let out = ns
        .command("python3")
        .arg(script)
        .arg(phase)
        .args(args)
        .env("HOME", dir)
        .env("JRT_CHROMIUM_FLAGS", CHROMIUM_FLAGS.join(" "))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the page's {phase} phase failed:\n{stdout}\n{stderr}"
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("JRT-RESULT "))
        .unwrap_or_else(|| panic!("no result from the driver:\n{stdout}\n{stderr}"));
    serde_json::from_str(line).unwrap()
}

/// A share link for `what`, valid `valid_for`, printed by `janus-recorder share`.
fn share(config: &Path, what: &str, valid_for: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .args(["share", what, "--for", valid_for, "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "share: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
fn the_page_lists_plays_in_sync_and_guards_the_recordings() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_tools();
    require_playwright();
    let scratch = Scratch::new("page");
    let dir = scratch.path.clone();
    let artifacts = artifacts("room");
    let ns = Netns::create("page");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(ROOM, "vp8")]);
    let pages = PageServer::start(&ns, &dir);
    let out = dir.join("out");
    let config = recorder_config(&out, "", &format!("{}{}", http_toml(), rooms_toml(&[ROOM])));
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    let base = "http://127.0.0.1:9469";

    let mut alice = Publisher::start(&ns, &pages, &dir, PublisherSpec::new(ROOM, "Alice"));
    alice.wait_published(1);
    std::thread::sleep(Duration::from_secs(3));
    let mut bob = Publisher::start(&ns, &pages, &dir, PublisherSpec::new(ROOM, HOSTILE));
    bob.wait_published(1);
    daemon
        .proc
        .wait_for_nth("recording started", 2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(5));

    let a = artifacts.to_string_lossy().into_owned();
    let live = drive(&ns, &dir, "live", &[base, READ, &a]);
    eprintln!("live view: {live}");

    // Both publish for about 25 s in all, then leave.
    std::thread::sleep(Duration::from_secs(8));
    alice.stop();
    bob.stop();
    alice.wait_ended(1, Duration::from_secs(20));
    bob.wait_ended(1, Duration::from_secs(20));
    daemon
        .proc
        .wait_for_nth("recording finished", 2, Duration::from_secs(30));

    let ok = share(&daemon.config, &ROOM.to_string(), "1h");
    let expired = share(&daemon.config, &ROOM.to_string(), "1s");
    assert!(
        ok.starts_with(&format!("{base}/share?room={ROOM}&expires=")),
        "{ok}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let t = "8";
    let finished = drive(
        &ns,
        &dir,
        "finished",
        &[base, READ, &a, &ROOM.to_string(), t, &ok, &expired],
    );
    eprintln!("finished: {finished}");
    // The room file the page streamed: both people's audio and video, decoding cleanly.
    let room_file = PathBuf::from(finished["room_file"].as_str().unwrap());
    let (streams, secs) = probe(&room_file);
    assert_eq!(streams.len(), 4, "{streams:?}");
    assert!(secs > 20.0, "the room file lasts {secs} s");
    let errors = decode_errors(&room_file);
    assert!(
        errors.is_empty(),
        "the room file does not decode cleanly: {errors}"
    );
    eprintln!("screenshots in {}", artifacts.display());
    for name in [
        "login.png",
        "now.png",
        "meetings.png",
        "meeting-seeked.png",
        "meeting-playing.png",
        "meeting-start.png",
        "recording.png",
        "share-refused.png",
        "shared-meetings.png",
    ] {
        assert!(artifacts.join(name).exists(), "no screenshot {name}");
    }
    daemon.proc.terminate(Duration::from_secs(20));
}

/// VP9, AV1 and H.264 (Matroska) play on the meeting page too: one room per codec, one
/// Chromium publisher each; each meeting seeked and played on its clock, frames decoded.
#[test]
fn each_codec_plays_on_its_room_clock() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_tools();
    require_playwright();
    let scratch = Scratch::new("page-codecs");
    let dir = scratch.path.clone();
    let artifacts = artifacts("codecs");
    let ns = Netns::create("pagecodecs");
    let rooms = [(4331, "vp9"), (4332, "av1"), (4333, "h264")];
    let specs: Vec<RoomSpec> = rooms.iter().map(|&(r, c)| RoomSpec::new(r, c)).collect();
    let _janus = Janus::start(&ns, &dir, &specs);
    let pages = PageServer::start(&ns, &dir);
    let ids: Vec<u64> = rooms.iter().map(|&(r, _)| r).collect();
    let config = recorder_config(
        &dir.join("out"),
        "",
        &format!("{}{}", http_toml(), rooms_toml(&ids)),
    );
    let mut daemon = Daemon::watching(&ns, &dir, &config, rooms.len());
    let specs = rooms
        .iter()
        .map(|&(room, codec)| PublisherSpec {
            secs: Some(15),
            ..PublisherSpec::new(room, &format!("{codec} publisher"))
        })
        .collect();
    let _published = publish_in_turn(&ns, &pages, &dir, specs);
    daemon
        .proc
        .wait_for_nth("recording finished", rooms.len(), Duration::from_secs(30));
    // Chromium does not publish H.265: the H.264 meeting again, relabelled H.265, in a
    // room of its own.
    relabel_as_h265(&dir.join("out"), 4333, 4334);
    let a = artifacts.to_string_lossy().into_owned();
    let played = drive(&ns, &dir, "codecs", &["http://127.0.0.1:9469", READ, &a]);
    eprintln!("codecs: {played}");
    for codec in ["vp9", "av1", "h264", "h265"] {
        assert!(
            played.get(codec).is_some(),
            "{codec} was not shown: {played}"
        );
    }
    daemon.proc.terminate(Duration::from_secs(20));
}

/// Copies room `from`'s recordings into room `to` as H.265 recordings (their sidecars and a
/// manifest saying so), for the page's H.265 tile.
fn relabel_as_h265(out: &Path, from: u64, to: u64) {
    let (src, dst) = (out.join(from.to_string()), out.join(to.to_string()));
    std::fs::create_dir_all(&dst).unwrap();
    let manifest = std::fs::read_dir(&src)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".room.json"))
        .expect("a room manifest");
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let mut m = read(manifest.clone());
    m["room"] = to.into();
    for r in m["recordings"].as_array_mut().unwrap() {
        let file = r["file"].as_str().unwrap().to_owned();
        let stem = file.trim_end_matches(".mkv");
        let mut sidecar = read(src.join(format!("{stem}.json")));
        let new_file = file.replace("h264", "h265");
        for v in [&mut *r, &mut sidecar] {
            v["room"] = to.into();
            v["video_codec"] = "h265".into();
            v["display"] = "h265 publisher".into();
            v["file"] = new_file.clone().into();
        }
        std::fs::copy(src.join(&file), dst.join(&new_file)).unwrap();
        let new_stem = new_file.trim_end_matches(".mkv");
        let json = serde_json::to_vec(&sidecar).unwrap();
        std::fs::write(dst.join(format!("{new_stem}.json")), json).unwrap();
    }
    let json = serde_json::to_vec(&m).unwrap();
    std::fs::write(dst.join(manifest.file_name().unwrap()), json).unwrap();
}
