//! Churn: synthetic publishers join and leave a recorded room 500 times, several at once, and
//! the daemon is left as it was: its open files, threads and memory back to what they were
//! after a warm-up, no feed still counted as recording, and every publication in a finalized
//! file that plays.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use janus_recorder::check::{CheckOptions, Status, check_file};
use serde_json::Value;
use support::*;

const ROOM: u64 = 1701;
/// Rounds of `AT_ONCE` publishers each: 500 publications.
const ROUNDS: u32 = 100;
const AT_ONCE: u32 = 5;
/// Media time each round's publishers send once the daemon's subscription asked for a
/// keyframe, in turn: the 1 s ones end before Janus's first RTCP sender report (their tracks
/// are placed by arrival), the 3 s ones after it.
const SECONDS: [f64; 3] = [1.0, 2.0, 3.0];
/// Rounds before the baseline is taken: the runtime's worker and blocking threads, the
/// allocator's arenas and the metrics registry are grown by then.
const WARM_UP_ROUNDS: u32 = 2;
/// One recording in this many is also decoded with ffmpeg (all are read by `check`).
const DECODE_EVERY: usize = 25;

/// What the daemon holds, as the kernel sees it.
#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: u64,
    threads: u64,
    rss_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's fd directory")
        .count() as u64;
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon's status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    Usage {
        fds,
        threads: field("Threads:"),
        rss_kib: field("VmRSS:"),
    }
}

/// Whether `end` is back to `base`: within 10%, or 2 for small counts.
fn back_to(base: u64, end: u64) -> bool {
    end <= base + (base / 10).max(2)
}

/// Every recording under `out` whose sidecar says it ended, by display name.
fn finalized(out: &Path) -> BTreeMap<String, Vec<(PathBuf, Value)>> {
    let mut found: BTreeMap<String, Vec<(PathBuf, Value)>> = BTreeMap::new();
    for file in files_under(out) {
        if !file.extension().is_some_and(|e| e == "webm" || e == "mkv") {
            continue;
        }
        let Ok(text) = fs::read_to_string(file.with_extension("json")) else {
            continue;
        };
        let Ok(sidecar) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if sidecar["ended_at"].is_string()
            && let Some(display) = sidecar["display"].as_str()
        {
            found
                .entry(display.to_owned())
                .or_default()
                .push((file, sidecar));
        }
    }
    found
}

/// Waits up to `timeout` for a finalized recording of every name in `displays`; returns the
/// names still without one.
fn wait_finalized(out: &Path, displays: &[String], timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let done = finalized(out);
        let missing: Vec<String> = displays
            .iter()
            .filter(|d| !done.contains_key(*d))
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A round of publishers: its name, the `publish` process and where it writes its report.
type Round = (String, Proc, PathBuf);

/// Starts round `round`: `AT_ONCE` publishers held until the daemon asks for a keyframe.
fn start_round(ns: &Netns, dir: &Path, round: u32) -> Round {
    let name = format!("churn{round:03}");
    let report = dir.join(format!("sent-{name}.json"));
    let seconds = SECONDS[round as usize % SECONDS.len()];
    let args = ["--hold", "--report", report.to_str().unwrap()];
    let proc = synthetic_publishers(ns, dir, ROOM, &name, AT_ONCE, seconds, &args);
    (name, proc, report)
}

#[test]
fn five_hundred_publications_leave_the_daemon_as_it_was() {
    require_tools();
    let scratch = Scratch::new("churn");
    let dir = scratch.path.clone();
    let ns = Netns::create("churn");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(ROOM, "vp8")]);
    let out = dir.join("recordings");
    let metrics_addr = "127.0.0.1:9469";
    let metrics = format!("[metrics]\nlisten = \"{metrics_addr}\"\n");
    let config = recorder_config(&out, "", &(metrics + &rooms_toml(&[ROOM])));
    let daemon = Daemon::watching(&ns, &dir, &config, 1);
    let pid = daemon.proc.child.id();

    // Frames each publisher sent, by display name.
    let mut sent: BTreeMap<String, Value> = BTreeMap::new();
    let mut missing = Vec::new();
    // Two rounds are in flight at once: a round joins while the one before publishes or leaves.
    let mut finish = |round: Round| {
        let (name, mut proc, report) = round;
        let status = wait_exit(&mut proc, Duration::from_secs(60));
        assert!(status.success(), "{name}: {status}\n{}", proc.log_tail(30));
        let report: Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
        for feed in report["feeds"].as_array().expect("feeds in the report") {
            assert!(feed["error"].is_null(), "{name}: {feed}");
            sent.insert(feed["display"].as_str().unwrap().to_owned(), feed.clone());
        }
        let displays: Vec<String> = (1..=AT_ONCE).map(|i| format!("{name}-{i}")).collect();
        missing.extend(wait_finalized(&out, &displays, Duration::from_secs(10)));
    };
    let mut baseline = None;
    let start = Instant::now();
    let mut measured_from = start;
    let mut in_flight: Option<Round> = None;
    for round in 0..ROUNDS {
        let next = start_round(&ns, &dir, round);
        if let Some(previous) = in_flight.replace(next) {
            finish(previous);
        }
        if round + 1 == WARM_UP_ROUNDS {
            finish(in_flight.take().expect("a round in flight"));
            std::thread::sleep(Duration::from_secs(3));
            baseline = Some(usage(pid));
            measured_from = Instant::now();
        }
    }
    if let Some(last) = in_flight.take() {
        finish(last);
    }
    let churn_time = measured_from.elapsed();
    let publications = (ROUNDS - WARM_UP_ROUNDS) * AT_ONCE;
    std::thread::sleep(Duration::from_secs(5));
    let end = usage(pid);
    let base = baseline.expect("a baseline");
    let metrics = http_get(&ns, metrics_addr, "/metrics");
    eprintln!(
        "churn: {} publications in {:.0} s ({:.2} s per round of {AT_ONCE}, {:.2} s per \
         publication after warm-up)",
        ROUNDS * AT_ONCE,
        start.elapsed().as_secs_f64(),
        churn_time.as_secs_f64() / f64::from(ROUNDS - WARM_UP_ROUNDS),
        churn_time.as_secs_f64() / f64::from(publications)
    );
    eprintln!(
        "churn: fds {} -> {}, threads {} -> {}, RSS {} -> {} KiB",
        base.fds, end.fds, base.threads, end.threads, base.rss_kib, end.rss_kib
    );
    assert!(
        missing.is_empty(),
        "publications without a finalized recording: {missing:?}"
    );
    assert_eq!(
        metric(&metrics, "janus_recorder_feeds_recording"),
        0.0,
        "{metrics}"
    );
    assert!(back_to(base.fds, end.fds), "open files {base:?} -> {end:?}");
    assert!(
        back_to(base.threads, end.threads),
        "threads {base:?} -> {end:?}"
    );
    assert!(
        end.rss_kib <= base.rss_kib + base.rss_kib / 10,
        "RSS {base:?} -> {end:?}"
    );

    let recordings = finalized(&out);
    let mut decoded = 0;
    let mut clocks: BTreeMap<String, u32> = BTreeMap::new();
    for (i, (display, feed)) in sent.iter().enumerate() {
        let recs = &recordings[display];
        assert_eq!(recs.len(), 1, "{display}: {recs:#?}");
        let (file, sidecar) = &recs[0];
        assert_eq!(sidecar["end_reason"], "leaving", "{sidecar:#}");
        for key in ["audio_frames", "video_frames"] {
            assert_eq!(sidecar[key], feed[key], "{display} {key}: {sidecar:#}");
        }
        *clocks
            .entry(format!(
                "{}/{}",
                sidecar["audio_clock"].as_str().unwrap_or("-"),
                sidecar["video_clock"].as_str().unwrap_or("-")
            ))
            .or_default() += 1;
        let report = check_file(file, &CheckOptions::default());
        assert!(
            report.playable && report.finalized && report.status == Status::Ok,
            "{}",
            report.human()
        );
        if i % DECODE_EVERY == 0 {
            assert_eq!(decode_errors(file), "", "{}", file.display());
            decoded += 1;
        }
    }
    eprintln!(
        "churn: {} recordings checked, {decoded} decoded with ffmpeg; clocks (audio/video): {clocks:?}",
        sent.len()
    );
}
