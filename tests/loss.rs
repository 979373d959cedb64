//! Loss between Janus and the recorder, recovered: a share of the UDP packets into the
//! recorder's address dropped (Janus's retransmissions too), a synthetic publisher's report
//! of the frames it sent as the reference, and the file's frames counted.
//!
//! Janus 1.1.2 retransmits to a subscriber only once it knows the round trip, from a receiver
//! report answering its first sender report, about 2.1 s into the subscription with str0m's
//! report a second (1.3 s with one every 100 ms); until then a lost packet costs the frames until the next
//! keyframe. So the steady state is measured with loss starting 2 s into the recording, and
//! loss from the first packet is measured and printed beside it.
//!
//! The floors are below issue 21's targets (99% at 10%, 97% at 20%), which this recorder does
//! not meet yet: str0m sends at most five NACKs a packet, about 120 ms apart, and Janus 1.1.2
//! retransmits a packet at most once per 200 ms and only while it is in its 200 ms queue, so a
//! packet whose one retransmission is lost too is lost (about 1% of packets at 10% loss, 4% at
//! 20%), and each such loss breaks the video until a keyframe comes through the same loss.
//! Single runs here gave 89-100% at 10%, 51-80% at 20%, 100% with 50 ms bursts; the floors
//! catch a recorder whose repair stopped working (at 20% they only catch the worst).

mod support;

use std::time::{Duration, Instant};

use janus_recorder::check::{CheckOptions, ProblemKind, check_file};
use support::*;

/// How the loss is laid on.
#[derive(Clone, Copy, Debug)]
enum Loss {
    /// This share of packets, from 2 s into the recording on.
    Steady(u32),
    /// This share from the first packet on.
    FromStart(u32),
    /// Nothing at all for 50 ms every second, from 2 s into the recording on.
    Bursts,
}

/// What one 20 s publication kept: (video frames sent, video frames written, gaps).
fn record(loss: Loss) -> (u64, u64, usize) {
    require_tools();
    let tag = match loss {
        Loss::Steady(p) => format!("loss{p}"),
        Loss::FromStart(p) => format!("loss{p}start"),
        Loss::Bursts => "lossburst".into(),
    };
    let scratch = Scratch::new(&tag);
    let dir = scratch.path.clone();
    let ns = Netns::create(&tag);
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1401, "vp8")]);
    let lossy = "10.201.0.3";
    lossy_address(
        &ns,
        lossy,
        match loss {
            Loss::FromStart(p) => p,
            _ => 0,
        },
    );
    let out = dir.join("recordings");
    let config = recorder_config(&out, "", &rooms_toml(&[1401])).replace(ADDR_B, lossy)
        + "[metrics]\nlisten = \"127.0.0.1:9469\"\n";
    let mut daemon = Daemon::start(&ns, &dir, &config);
    daemon
        .proc
        .wait_for("watching room", Duration::from_secs(20));
    let report = dir.join("sent.json");
    let mut publish = synthetic_publishers(
        &ns,
        &dir,
        1401,
        "lossy",
        1,
        20.0,
        &["--hold", "--report", report.to_str().unwrap()],
    );
    daemon
        .proc
        .wait_for("recording started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    match loss {
        Loss::Steady(p) => add_loss(&ns, lossy, p),
        Loss::FromStart(_) => {}
        Loss::Bursts => {
            let until = Instant::now() + Duration::from_secs(17);
            while Instant::now() < until {
                add_loss(&ns, lossy, 100);
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
    let status = wait_exit(&mut publish, Duration::from_secs(60));
    assert!(status.success(), "publish: {}", publish.log_tail(30));
    daemon
        .proc
        .wait_for("recording finished", Duration::from_secs(10));
    let metrics = http_get(&ns, "127.0.0.1:9469", "/metrics");
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    let sent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let video_sent = sent["feeds"][0]["video_frames"].as_u64().unwrap();
    let recs = recordings_of(&out, "lossy");
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = check_file(&recs[0].0, &CheckOptions::default());
    assert!(r.playable, "{}", r.human());
    let written = recs[0].1["video_frames"].as_u64().unwrap();
    let gaps = r
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Gap)
        .count();
    println!(
        "{loss:?}: {written} of {video_sent} video frames ({:.1}%), {gaps} gaps; NACKs {}, packets lost {}, keyframes asked for {}",
        100.0 * written as f64 / video_sent as f64,
        metric(&metrics, "janus_recorder_nacks_sent_total"),
        metric(&metrics, "janus_recorder_packets_lost_total"),
        metric(&metrics, "janus_recorder_keyframe_requests_total"),
    );
    (video_sent, written, gaps)
}

/// 10% and 20% random loss, and 50 ms bursts every second, once the subscription is under
/// way: the frames kept are printed, and at least 80%, 30% and 95% of them are kept (see the
/// module's comment for why not more), with no gap in bursts. Loss from the first packet is
/// printed beside them.
#[test]
fn loss_and_bursts_keep_the_video() {
    for (loss, floor) in [
        (Loss::Steady(10), 0.8),
        (Loss::Steady(20), 0.3),
        (Loss::Bursts, 0.95),
    ] {
        let (sent, written, gaps) = record(loss);
        assert!(
            written as f64 >= floor * sent as f64,
            "{loss:?}: {written} of {sent} video frames"
        );
        if matches!(loss, Loss::Bursts) {
            assert_eq!(gaps, 0, "{loss:?}: gaps");
        }
    }
    for percent in [10, 20] {
        record(Loss::FromStart(percent));
    }
}
