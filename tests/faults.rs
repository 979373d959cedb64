//! Faults caused for real, and reloading: SIGHUP with changed rooms, SIGKILL while recording,
//! a full disk, Janus crashing and coming back, and Janus timing our session out. Each test
//! runs Janus 1.1.2 and Chromium publishers in its own network namespace.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use janus_recorder::check::{CheckOptions, FileReport, Status, check_file};
use support::*;

/// These tests each run Janus and browsers; one at a time keeps timings honest on 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn config_text(out: &Path, rooms: &[u64]) -> String {
    let mut text = format!(
        "[janus]\nurl = \"ws://127.0.0.1:8188\"\n[output]\ndir = \"{}\"\n[network]\nadvertise = [\"{ADDR_B}\"]\n",
        out.display()
    );
    for r in rooms {
        text.push_str(&format!("[[rooms]]\nroom = {r}\n"));
    }
    text
}

fn check(path: &Path) -> FileReport {
    check_file(path, &CheckOptions::default())
}

fn signal(daemon: &Daemon, sig: i32) {
    unsafe { libc::kill(daemon.proc.child.id() as i32, sig) };
}

struct Rig {
    _scratch: Scratch,
    dir: PathBuf,
    ns: Netns,
    janus: Janus,
    page: PageServer,
    out: PathBuf,
}

impl Rig {
    fn new(tag: &str, rooms: &[u64], session_timeout: Option<u32>) -> Rig {
        require_tools();
        let scratch = Scratch::new(tag);
        let dir = scratch.path.clone();
        let ns = Netns::create(tag);
        let specs: Vec<RoomSpec> = rooms.iter().map(|r| RoomSpec::new(*r, "vp8")).collect();
        let janus = Janus::start_with(&ns, &dir, &specs, session_timeout);
        let page = PageServer::start(&ns, &dir);
        let out = dir.join("recordings");
        Rig {
            _scratch: scratch,
            dir,
            ns,
            janus,
            page,
            out,
        }
    }

    fn publisher(&self, spec: PublisherSpec) -> Publisher {
        let mut p = Publisher::start(&self.ns, &self.page, &self.dir, spec);
        p.wait_published(1);
        p
    }

    fn daemon(&self, rooms: &[u64]) -> Daemon {
        Daemon::start(&self.ns, &self.dir, &config_text(&self.out, rooms))
    }
}

#[test]
fn sighup_applies_room_changes_and_refuses_a_broken_config() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("reload", &[1234, 1235], None);
    let _alice = rig.publisher(PublisherSpec::new(1234, "Alice"));
    let _bob = rig.publisher(PublisherSpec::new(1235, "Bob"));
    let mut daemon = rig.daemon(&[1234]);
    let long = Duration::from_secs(20);
    daemon.proc.wait_for_nth("recording started", 1, long);
    std::thread::sleep(Duration::from_secs(2));

    // 1234 out, 1235 in.
    fs::write(&daemon.config, config_text(&rig.out, &[1235])).unwrap();
    signal(&daemon, libc::SIGHUP);
    daemon.proc.wait_for("room removed from the config", long);
    daemon.proc.wait_for_nth("recording started", 2, long);
    std::thread::sleep(Duration::from_secs(2));

    // 1234 back; 1235 unchanged keeps its file.
    fs::write(&daemon.config, config_text(&rig.out, &[1235, 1234])).unwrap();
    signal(&daemon, libc::SIGHUP);
    daemon.proc.wait_for_nth("recording started", 3, long);
    std::thread::sleep(Duration::from_secs(2));

    // A broken config is refused; everything goes on.
    fs::write(&daemon.config, "[janus]\nurl = 5\n").unwrap();
    signal(&daemon, libc::SIGHUP);
    let refused = daemon.proc.wait_for("the new config is refused", long);
    assert!(refused.contains("janus.url"), "{refused}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        daemon.proc.child.try_wait().unwrap().is_none(),
        "the daemon died"
    );

    let (status, took) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(
        status.success() && took < Duration::from_secs(5),
        "{status} after {took:?}"
    );
    let alice = recordings_of(&rig.out, "Alice");
    let bob = recordings_of(&rig.out, "Bob");
    assert_eq!(
        alice.len(),
        2,
        "Alice: removed, then added again: {alice:?}"
    );
    assert_eq!(bob.len(), 1, "Bob's room stayed in the config: {bob:?}");
    assert_eq!(
        alice[0].1["end_reason"], "reconfigured",
        "removed by the reload"
    );
    for (_, sidecar) in alice.iter().skip(1).chain(&bob) {
        assert_eq!(sidecar["end_reason"], "shutdown");
    }
    for (file, _) in alice.iter().chain(&bob) {
        let r = check(file);
        assert_eq!(r.status, Status::Ok, "{}", r.human());
    }
    assert!(check(&bob[0].0).duration_ms.unwrap() >= 5_000);
}

#[test]
fn sigkill_leaves_files_playable_up_to_two_seconds_before() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("sigkill", &[1234], None);
    let _alice = rig.publisher(PublisherSpec::new(1234, "Alice"));
    let mut daemon = rig.daemon(&[1234]);
    daemon
        .proc
        .wait_for("recording started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(6));
    let killed_at = SystemTime::now();
    signal(&daemon, libc::SIGKILL);
    let _ = daemon.proc.child.wait();

    let files = recordings_of(&rig.out, "Alice");
    assert_eq!(files.len(), 1);
    let (file, sidecar) = &files[0];
    let started: SystemTime = time::OffsetDateTime::parse(
        sidecar["started_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .into();
    let recorded = killed_at.duration_since(started).unwrap().as_millis() as u64;
    let r = check(file);
    assert!(r.playable && !r.finalized, "{}", r.human());
    assert_eq!(r.status, Status::Problems, "truncated, not unreadable");
    let playable = r.playable_ms.unwrap();
    assert!(
        playable + 2_000 >= recorded,
        "{playable} ms playable of {recorded} ms recorded"
    );
    let errors = decode_errors(file);
    assert!(errors.trim().is_empty(), "ffmpeg: {errors}");

    // The room manifest is whole JSON and lists the recording, still open.
    let manifests: Vec<PathBuf> = files_under(&rig.out)
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with(".room.json"))
        .collect();
    assert_eq!(manifests.len(), 1, "{manifests:?}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifests[0]).unwrap())
            .expect("the manifest is valid JSON after SIGKILL");
    assert_eq!(manifest["room"], 1234);
    assert!(manifest["ended_at"].is_null(), "{manifest:#}");
    let listed = &manifest["recordings"][0];
    assert_eq!(listed["file"], sidecar["file"], "{manifest:#}");
    assert_eq!(listed["started_at"], sidecar["started_at"]);
    assert!(listed["ended_at"].is_null(), "{manifest:#}");
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_closes_that_file_with_a_clear_error_and_the_rest_goes_on() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("diskfull", &[1234, 1235], None);
    // Room 1234 records onto a 160 KiB filesystem; 1235 onto the real disk.
    let small = rig.out.join("1234");
    fs::create_dir_all(&small).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=160k", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cannot mount a tmpfs (the tests run as root)"
    );
    let _mount = Mount(small.clone());

    let _alice = rig.publisher(PublisherSpec::new(1234, "Alice"));
    let _bob = rig.publisher(PublisherSpec::new(1235, "Bob"));
    let mut daemon = rig.daemon(&[1234, 1235]);
    // Whichever write hits the limit (a block, or the periodic flush) reports it.
    let line = daemon
        .proc
        .wait_for("No space left on device", Duration::from_secs(40));
    assert!(
        line.contains(&small.display().to_string()) && line.contains("ERROR"),
        "the error names the path and the cause: {line}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        daemon.proc.child.try_wait().unwrap().is_none(),
        "the daemon died"
    );
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());

    let alice = files_under(&small)
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "webm"))
        .expect("Alice's file");
    let r = check(&alice);
    assert!(r.playable, "what was written stays playable: {}", r.human());
    assert!(r.playable_ms.unwrap() >= 2_000, "{}", r.human());
    let bob = recordings_of(&rig.out, "Bob");
    assert_eq!(bob.len(), 1);
    let r = check(&bob[0].0);
    assert_eq!(r.status, Status::Ok, "Bob went on: {}", r.human());
    assert_eq!(bob[0].1["end_reason"], "shutdown");
}

/// A disk that stalls for 20 s under one room (a FUSE file system whose writes, syncs and
/// creates wait meanwhile, as on a stuck NFS server or a device with a frozen queue): each
/// file is written on a thread of its own, so the runtime never waits for it. The watchdog
/// is fed throughout (it stopped with the first flush when files were written on the runtime
/// thread), the other room's feed records on without a gap, and once the disk answers again
/// the stalled feed's file holds every second (its frames waited in memory).
#[test]
fn a_stalled_disk_stalls_only_its_own_files() {
    use std::os::unix::net::UnixDatagram;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("stall", &[1234, 1235], None);
    let slow = rig.out.join("1234");
    let backing = rig.dir.join("backing");
    let flag = rig.dir.join("stall-now");
    fs::create_dir_all(&slow).unwrap();
    fs::create_dir_all(&backing).unwrap();
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/stallfs.py"))
        .args([&backing, &slow, &flag]);
    let mut stallfs = Proc::spawn("stallfs.py", cmd, rig.dir.join("stallfs.log"));
    let mounted = || {
        fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(&format!(" {} fuse", slow.display()))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !mounted() {
        assert!(
            stallfs.child.try_wait().unwrap().is_none() && Instant::now() < deadline,
            "the stalling file system did not mount: {}",
            stallfs.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _mount = Mount(slow.clone());

    let socket_path = rig.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let _alice = rig.publisher(PublisherSpec::new(1234, "Alice"));
    let _bob = rig.publisher(PublisherSpec::new(1235, "Bob"));
    let mut daemon = Daemon::start_env(
        &rig.ns,
        &rig.dir,
        &config_text(&rig.out, &[1234, 1235]),
        &[
            ("NOTIFY_SOCKET", socket_path.as_os_str()),
            ("WATCHDOG_USEC", "2000000".as_ref()),
        ],
    );
    daemon
        .proc
        .wait_for_nth("recording started", 2, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(4));

    // The disk stalls for 20 s; the watchdog must keep coming (every second: half of 2 s).
    fs::write(&flag, "").unwrap();
    let stalled_at = Instant::now();
    let mut last_ping = Instant::now();
    let mut longest = Duration::ZERO;
    let mut buf = [0u8; 4096];
    while stalled_at.elapsed() < Duration::from_secs(20) {
        if let Ok(n) = socket.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "WATCHDOG=1")
        {
            longest = longest.max(last_ping.elapsed());
            last_ping = Instant::now();
        }
    }
    longest = longest.max(last_ping.elapsed());
    fs::remove_file(&flag).unwrap();
    assert!(
        stallfs.log_text().contains("stalled"),
        "the disk was written to during the stall: {}",
        stallfs.log_text()
    );
    println!("longest time without WATCHDOG=1 during a 20 s disk stall: {longest:?}");
    assert!(
        longest < Duration::from_millis(1800),
        "the watchdog went {longest:?} without a ping while the disk stalled: {}",
        daemon.proc.log_text()
    );
    std::thread::sleep(Duration::from_secs(4));
    let (status, _) = daemon.proc.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}");

    let mut durations = Vec::new();
    for name in ["Alice", "Bob"] {
        let recs = recordings_of(&rig.out, name);
        assert_eq!(recs.len(), 1, "{name}: {recs:#?}");
        let r = check(&recs[0].0);
        assert_eq!(r.status, Status::Ok, "{name}: {}", r.human());
        assert_eq!(recs[0].1["end_reason"], "shutdown", "{name}");
        durations.push(r.playable_ms.unwrap());
    }
    println!(
        "Alice (stalled disk) {} ms, Bob {} ms",
        durations[0], durations[1]
    );
    assert!(durations[1] >= 27_000, "Bob: {} ms", durations[1]);
    assert!(
        durations[0].abs_diff(durations[1]) < 2_000,
        "Alice's file lost time to the stall: {durations:?}"
    );
}

#[test]
fn janus_crashing_and_coming_back_is_survived_and_counted() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rig = Rig::new("restart", &[1234], None);
    let _alice = rig.publisher(PublisherSpec {
        rejoin: true,
        ..PublisherSpec::new(1234, "Alice")
    });
    let config = config_text(&rig.out, &[1234]) + "[metrics]\nlisten = \"127.0.0.1:9469\"\n";
    let mut daemon = Daemon::start(&rig.ns, &rig.dir, &config);
    let long = Duration::from_secs(40);
    daemon.proc.wait_for("recording started", long);
    std::thread::sleep(Duration::from_secs(3));
    rig.janus.crash_and_restart(&rig.ns);
    daemon.proc.wait_for("lost the connection to Janus", long);
    daemon.proc.wait_for_nth("connected to Janus", 2, long);
    daemon.proc.wait_for_nth("recording started", 2, long);
    std::thread::sleep(Duration::from_secs(3));

    // The Prometheus endpoint counts what happened.
    let text = http_get(&rig.ns, "127.0.0.1:9469", "/metrics");
    assert_eq!(
        metric(&text, "janus_recorder_reconnects_total"),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "janus_recorder_feeds_recording"),
        1.0,
        "{text}"
    );
    for kind in ["audio", "video"] {
        let frames = metric(
            &text,
            &format!("janus_recorder_frames_written_total{{kind=\"{kind}\"}}"),
        );
        let bytes = metric(
            &text,
            &format!("janus_recorder_bytes_written_total{{kind=\"{kind}\"}}"),
        );
        assert!(frames > 50.0 && bytes > frames, "{kind}: {text}");
    }
    assert!(
        metric(&text, "janus_recorder_keyframe_requests_total") >= 1.0,
        "{text}"
    );
    assert!(text.contains("janus_recorder_file_errors_total") || !text.contains("file_errors"));

    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());

    let files = recordings_of(&rig.out, "Alice");
    assert_eq!(files.len(), 2, "one file per Janus session: {files:?}");
    assert_eq!(files[0].1["end_reason"], "connection-lost");
    assert_eq!(files[1].1["end_reason"], "shutdown");
    for (file, _) in &files {
        let r = check(file);
        assert_eq!(r.status, Status::Ok, "{}", r.human());
        assert!(r.duration_ms.unwrap() >= 2_000, "{}", r.human());
    }
}

#[test]
fn a_session_janus_timed_out_is_replaced() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // Longer than the daemon's 10 s keepalive, shorter than the freeze below.
    let rig = Rig::new("timeout", &[1234], Some(12));
    let _alice = rig.publisher(PublisherSpec::new(1234, "Alice"));
    let mut daemon = rig.daemon(&[1234]);
    let long = Duration::from_secs(40);
    daemon.proc.wait_for("recording started", long);
    // Frozen past Janus's session_timeout: Janus drops the session and its handles.
    signal(&daemon, libc::SIGSTOP);
    std::thread::sleep(Duration::from_secs(17));
    signal(&daemon, libc::SIGCONT);
    daemon.proc.wait_for_nth("connected to Janus", 2, long);
    daemon.proc.wait_for_nth("recording started", 2, long);
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    let files = recordings_of(&rig.out, "Alice");
    assert_eq!(files.len(), 2, "{files:?}");
    for (file, _) in &files {
        assert!(check(file).playable);
    }
}

/// Janus frozen (SIGSTOP): its socket stays open but nothing answers. The daemon must call
/// the connection lost from the unanswered keepalives, before the media sessions fail ICE
/// consent (about 30 s), so the files end `connection-lost`; after SIGCONT it records again
/// into new files. (Chromium itself ignores Janus's media after such a freeze without telling
/// janus.js, so the publisher is started again once Janus runs.)
#[test]
fn a_hung_janus_is_a_lost_connection_and_recording_resumes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("hung", &[1234], None);
    let alice = rig.publisher(PublisherSpec::new(1234, "Alice"));
    let mut daemon = rig.daemon(&[1234]);
    let long = Duration::from_secs(40);
    daemon.proc.wait_for("recording started", long);
    std::thread::sleep(Duration::from_secs(3));
    let janus = rig.janus.proc.child.id() as i32;
    let frozen = Instant::now();
    unsafe { libc::kill(janus, libc::SIGSTOP) };
    let noticed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        daemon
            .proc
            .wait_for("lost the connection to Janus", Duration::from_secs(28));
    }));
    let detection = frozen.elapsed();
    unsafe { libc::kill(janus, libc::SIGCONT) };
    if let Err(e) = noticed {
        std::panic::resume_unwind(e);
    }
    eprintln!("hung Janus noticed after {detection:?}");
    daemon.proc.wait_for_nth("connected to Janus", 2, long);
    drop(alice);
    let _alice = rig.publisher(PublisherSpec::new(1234, "Alice"));
    daemon.proc.wait_for_nth("recording started", 2, long);
    std::thread::sleep(Duration::from_secs(3));
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());

    let files = recordings_of(&rig.out, "Alice");
    assert!(files.len() >= 2, "{files:?}");
    assert_eq!(files[0].1["end_reason"], "connection-lost", "{files:?}");
    assert_eq!(files.last().unwrap().1["end_reason"], "shutdown");
    for (file, _) in &files {
        assert!(check(file).playable, "{}", file.display());
    }
}

/// 3% loss on the way to the daemon. Most losses are repaired by NACK and retransmission;
/// what is not breaks the video until a keyframe, which our PLIs bring (this test found that
/// Janus dropped our PLIs while audio was the first m-line: see `feed::subscribe`).
#[test]
fn packet_loss_is_repaired_or_recovered_and_the_file_decodes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("loss", &[1234], None);
    // The daemon gets an address of its own, and 3% of the UDP packets sent to it are dropped
    // (nftables' random number generator: this kernel has no netem).
    lossy_address(&rig.ns, 3);
    let _alice = rig.publisher(PublisherSpec::new(1234, "Alice"));
    let config = on_lossy_address(&config_text(&rig.out, &[1234]))
        + "[metrics]\nlisten = \"127.0.0.1:9469\"\n";
    let mut daemon = Daemon::start(&rig.ns, &rig.dir, &config);
    daemon
        .proc
        .wait_for("recording started", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(12));
    let text = http_get(&rig.ns, "127.0.0.1:9469", "/metrics");
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());

    assert!(
        metric(&text, "janus_recorder_nacks_sent_total") > 0.0,
        "losses were asked for again: {text}"
    );
    let files = recordings_of(&rig.out, "Alice");
    assert_eq!(files.len(), 1);
    let file = &files[0].0;
    let errors = decode_errors(file);
    assert!(errors.trim().is_empty(), "ffmpeg: {errors}");
    let r = check(file);
    assert!(r.playable, "{}", r.human());
    let video = r.tracks.iter().find(|t| t.kind == "video").expect("video");
    // Breaks were recovered from: keyframes came on request, and video goes on to the end.
    // (Loss is random: a run may lose nothing that retransmission could not repair.)
    let breaks = daemon
        .proc
        .log_text()
        .matches("break in the video stream")
        .count();
    assert!(
        breaks == 0 || video.keyframes >= 2,
        "no keyframe after {breaks} breaks: {}",
        r.human()
    );
    let end = r.duration_ms.unwrap() as i64;
    assert!(
        video.last_ms.unwrap() >= end - 2_000,
        "video stopped early: {}",
        r.human()
    );
    // 20 fps for about 12 s; between breaks and their keyframes some frames cannot be kept.
    // (Measured here: 30 to 60% kept; see the issue note.)
    assert!(video.frames >= 60, "{}", r.human());
}
