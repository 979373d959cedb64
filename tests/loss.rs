//! Loss between Janus and the recorder, recovered: a share of the UDP packets into the
//! recorder's socket dropped (Janus's retransmissions too), a synthetic publisher's report of
//! the frames it sent as the reference, and the file's frames counted.
//!
//! When each side sends, from Janus 1.1.2's src/ice.c and str0m 0.25.0's NACK register:
//! - Janus keeps what it sent a subscriber for `nack_queue_ms`: the round trip plus 100 ms,
//!   within `min_nack_queue` (janus.jcfg's media section, 200 by default) and 1000; it resends
//!   a NACKed packet from that queue, but not again within 200 ms (`MAX_NACK_IGNORE`). Until a
//!   receiver report answering its first sender report gives it the round trip, the queue is
//!   0 and nothing is resent: 1.7-2.1 s into a subscription with str0m's report a second,
//!   about 1.4 s now that the vendored str0m answers a sender's first report at once.
//! - str0m NACKs a missing packet five times, a round trip plus 5 ms apart; Janus drops our
//!   RRTR and sends no DLRR, so str0m never learns the round trip and took 100 ms. Janus then
//!   ignored every other NACK, and with a 200 ms queue answered the first only: a packet whose
//!   one resend was lost too (p^2: 1% of packets at 10% loss, 4% at 20%) broke the video until
//!   a keyframe came through the same loss.
//! - Now the recorder asks str0m for at least 210 ms between NACKs of a packet
//!   (`rtc::NACK_RETRY`), and this rig's Janus keeps 1 s (`min_nack_queue = 1000`, which the
//!   README recommends): each of the five NACKs is answered, so a packet is lost only when six
//!   sends are (p^6). Janus's log at debug level 7 shows it: every NACK scheduled, none skipped
//!   or missing from the queue.
//!
//! The rule drops packets to the daemon's port, not to its address: Janus, in the same
//! namespace, gathers a candidate on that address too and talked to the daemon from it, so a
//! rule on the address dropped a share of our NACKs, reports and PLIs as well (17% of the
//! NACK packets at 20%, in a run compared with Janus's log), which no recorder could repair.
//!
//! The steady state is measured with loss from 2 s into the recording, when Janus resends;
//! loss from the first packet is printed beside it: its losses before Janus knows the round
//! trip (about 1.4 s in: the vendored str0m answers Janus's first sender report at once)
//! break the video until a keyframe gets through whole.
//!
//! Measured here (eight full runs and single cases): every frame in bursts, 99.8-100% at 5%
//! and 10%, 98.8-100% at 20% (frames lost only at the end, where a packet was still being
//! resent as the publisher left), never a gap; from the first packet 88-95% at 10%, 82-94%
//! at 20%. With Janus's default 200 ms queue, 10% loss kept 91-97% with a gap in
//! every run.

mod support;

use std::time::{Duration, Instant};

use janus_recorder::check::{CheckOptions, ProblemKind, check_file};
use support::*;

/// How the loss is laid on.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// No loss: the reference for memory and CPU.
    None,
    /// This share of packets, from 2 s into the recording on.
    Steady(u32),
    /// This share from the first packet on.
    FromStart(u32),
    /// Nothing at all for 50 ms every second, from 2 s into the recording on.
    Bursts,
}

/// What one 20 s publication kept, and what it cost.
struct Kept {
    video_sent: u64,
    video_written: u64,
    gaps: usize,
}

/// CPU time (s) and peak resident memory (MiB) of process `pid` so far, from `/proc`.
fn cost(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // utime and stime, fields 14 and 15, after the parenthesised command name.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM");
    (ticks / per_second, hwm_kib / 1024.0)
}

/// Records one synthetic publisher for `seconds` under `loss`.
fn record(loss: Loss, seconds: f64) -> Kept {
    require_tools();
    let tag = match loss {
        Loss::None => "lossnone".into(),
        Loss::Steady(p) => format!("loss{p}"),
        Loss::FromStart(p) => format!("loss{p}start"),
        Loss::Bursts => "lossburst".into(),
    };
    let scratch = Scratch::new(&tag);
    let dir = scratch.path.clone();
    let ns = Netns::create(&tag);
    let janus = Janus::start(&ns, &dir, &[RoomSpec::new(1401, "vp8")]);
    lossy_address(
        &ns,
        match loss {
            Loss::FromStart(p) => p,
            _ => 0,
        },
    );
    let out = dir.join("recordings");
    let config = on_lossy_address(&recorder_config(&out, "", &rooms_toml(&[1401])))
        + "[metrics]\nlisten = \"127.0.0.1:9469\"\n";
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    let report = dir.join("sent.json");
    let mut publish = synthetic_publishers(
        &ns,
        &dir,
        1401,
        "lossy",
        1,
        seconds,
        &["--hold", "--report", report.to_str().unwrap()],
    );
    daemon
        .proc
        .wait_for("recording started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    match loss {
        Loss::Steady(p) => add_loss(&ns, p),
        Loss::None | Loss::FromStart(_) => {}
        Loss::Bursts => {
            let until = Instant::now() + Duration::from_secs(17);
            while Instant::now() < until {
                add_loss(&ns, 100);
                std::thread::sleep(Duration::from_millis(50));
                let flushed = ns
                    .command("nft")
                    .args(["flush", "chain", "inet", "loss", "input"])
                    .status()
                    .unwrap();
                assert!(flushed.success());
                std::thread::sleep(Duration::from_millis(950));
            }
        }
    }
    let status = wait_exit(&mut publish, Duration::from_secs_f64(seconds + 40.0));
    assert!(status.success(), "publish: {}", publish.log_tail(30));
    daemon
        .proc
        .wait_for("recording finished", Duration::from_secs(10));
    let metrics = http_get(&ns, "127.0.0.1:9469", "/metrics");
    let (cpu, peak) = cost(daemon.proc.child.id());
    let (janus_cpu, janus_peak) = cost(janus.proc.child.id());
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    let sent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let video_sent = sent["feeds"][0]["video_frames"].as_u64().unwrap();
    let recs = recordings_of(&out, "lossy");
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = check_file(&recs[0].0, &CheckOptions::default());
    assert!(r.playable, "{}", r.human());
    let video_written = recs[0].1["video_frames"].as_u64().unwrap();
    let gaps = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Gap)
        .count();
    println!(
        "{loss:?}: {video_written} of {video_sent} video frames ({:.1}%), {gaps} gaps; NACKs {}, \
         packets lost {}, keyframes asked for {}; recorder {cpu:.2} s CPU, {peak:.0} MiB peak; \
         Janus {janus_cpu:.2} s CPU, {janus_peak:.0} MiB peak",
        100.0 * video_written as f64 / video_sent as f64,
        metric(&metrics, "janus_recorder_nacks_sent_total"),
        metric(&metrics, "janus_recorder_packets_lost_total"),
        metric(&metrics, "janus_recorder_keyframe_requests_total"),
    );
    Kept {
        video_sent,
        video_written,
        gaps,
    }
}

/// No loss, 5%, 10% and 20% random loss, and 50 ms bursts every second, once the
/// subscription is under way: issue 21's targets are met (at least 99% of the video frames
/// kept at 10% loss with no gap, 97% at 20%), 99% and no gap at 5% and in bursts, every frame
/// without loss. Loss from the first packet is printed beside them (see the module's
/// comment), with each run's memory and CPU.
///
/// 20% is recorded for 60 s, the rest for 20 s. At 20% a packet is lost for good when all six
/// sends of it are (p^6, 6.4e-5): with about 1000 video packets in 20 s, about one 20 s run in
/// 16 loses one, and the video breaks until a keyframe comes through the same loss, about a
/// second, which alone is 5% of 20 s (seen once in a full run: 94.5%, one gap). Over 60 s such
/// a break is under 2%, so the 97% floor measures the recovery rather than one packet's luck.
#[test]
fn loss_and_bursts_keep_the_video() {
    for (loss, seconds, floor, gapless) in [
        (Loss::None, 20.0, 1.0, true),
        (Loss::Steady(5), 20.0, 0.99, true),
        (Loss::Steady(10), 20.0, 0.99, true),
        (Loss::Steady(20), 60.0, 0.97, false),
        (Loss::Bursts, 20.0, 0.99, true),
    ] {
        let kept = record(loss, seconds);
        assert!(
            kept.video_written as f64 >= floor * kept.video_sent as f64,
            "{loss:?}: {} of {} video frames",
            kept.video_written,
            kept.video_sent
        );
        if gapless {
            assert_eq!(kept.gaps, 0, "{loss:?}: gaps");
        }
    }
    for percent in [10, 20] {
        record(Loss::FromStart(percent), 20.0);
    }
}
