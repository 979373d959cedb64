//! Shared subscriptions (`[janus] feeds_per_subscription`, 16 by default): the feeds of a
//! room share one Janus subscriber handle and one str0m session, renegotiated as publishers
//! come and go. Each feed still has its own file, and none may lose a frame to another's
//! coming or going.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::janus_admin::subscriber_handles;
use support::*;

/// Two publishers record from start to end while four others join and leave one after
/// another, each a renegotiation of the subscription they share: every frame of each is in
/// its file, and all six went through one subscription.
#[test]
fn publishers_joining_and_leaving_cost_the_others_no_frame() {
    require_tools();
    let scratch = Scratch::new("multistream-churn");
    let dir = scratch.path.clone();
    let ns = Netns::create("mschurn");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1901, "vp8")]);
    let out = dir.join("recordings");
    let mut daemon = Daemon::watching(
        &ns,
        &dir,
        &recorder_config(&out, "", &rooms_toml(&[1901])),
        1,
    );
    let reports = stayers_and_visitors(&ns, &dir, 1901, &mut daemon, (16.0, 4), || {});
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    let log = daemon.proc.log_text();
    for r in &reports {
        assert_every_frame_recorded(&out, r);
    }
    let added = log.matches("feed added to the subscription").count();
    assert_eq!(added, 6, "{log}");
    assert!(!log.contains("group=2"), "one subscription for all: {log}");
}

/// Seventeen publishers at once: sixteen share a subscription, the seventeenth starts a
/// second one; every frame of each is recorded.
#[test]
fn a_room_of_seventeen_takes_two_subscriptions() {
    require_tools();
    let scratch = Scratch::new("multistream-17");
    let dir = scratch.path.clone();
    let ns = Netns::create("ms17");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1902, "vp8")]);
    let out = dir.join("recordings");
    let mut daemon = Daemon::watching(
        &ns,
        &dir,
        &recorder_config(&out, "", &rooms_toml(&[1902])),
        1,
    );
    let report = dir.join("sent-many.json");
    let mut publishers = synthetic_publishers(
        &ns,
        &dir,
        1902,
        "many",
        17,
        8.0,
        &["--hold", "--report", report.to_str().unwrap()],
    );
    daemon
        .proc
        .wait_for_nth("recording started", 17, Duration::from_secs(30));
    let handles = subscriber_handles(&ns);
    assert_eq!(handles.len(), 2, "subscriber handles on Janus: {handles:?}");
    let status = wait_exit(&mut publishers, Duration::from_secs(60));
    assert!(status.success(), "{}", publishers.log_tail(30));
    daemon
        .proc
        .wait_for_nth("recording finished", 17, Duration::from_secs(15));
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    let sent: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_every_frame_recorded(&out, &sent);
}

/// The shared subscription's media cut off (every datagram to the recorder dropped) until
/// its ICE gives up: each of its feeds is subscribed again, in a new shared subscription,
/// once the network is back, each file going on as part 2 of its recording.
#[test]
fn a_shared_subscription_whose_ice_is_cut_is_made_again() {
    require_tools();
    let scratch = Scratch::new("multistream-ice");
    let dir = scratch.path.clone();
    let ns = Netns::create("msice");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1903, "vp8")]);
    lossy_address(&ns, 0);
    let out = dir.join("recordings");
    let config = on_lossy_address(&recorder_config(&out, "", &rooms_toml(&[1903])));
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    let mut publishers = synthetic_publishers(&ns, &dir, 1903, "cut", 3, 60.0, &[]);
    daemon
        .proc
        .wait_for_nth("recording started", 3, Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    add_loss(&ns, 100);
    daemon
        .proc
        .wait_for_nth("subscribing again", 3, Duration::from_secs(40));
    let flushed = ns
        .command("nft")
        .args(["flush", "chain", "inet", "loss", "input"])
        .status()
        .unwrap();
    assert!(flushed.success());
    daemon
        .proc
        .wait_for_nth("recording started", 6, Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(3));
    publishers.terminate(Duration::from_secs(5));
    daemon
        .proc
        .wait_for_nth("recording finished", 6, Duration::from_secs(15));
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    for i in 1..=3 {
        let display = format!("cut-{i}");
        let parts = recordings_of(&out, &display);
        assert!(parts.len() >= 2, "{display}: {parts:#?}");
        let (first, last) = (&parts[0].1, &parts[parts.len() - 1].1);
        assert_eq!(
            parts[1].1["previous_part"], first["file"],
            "{display}: {parts:#?}"
        );
        assert!(!last["resumed_after"].is_null(), "{display}: {last:#}");
        for (file, sidecar) in &parts {
            assert!(first_video_packet_is_key(file), "{}", file.display());
            assert_eq!(decode_errors(file).trim(), "", "{}", file.display());
            assert!(sidecar["video_frames"].as_u64() > Some(30), "{sidecar:#}");
        }
    }
}

/// Media from a loaded Janus lags its events: a publisher's last packets can reach us after
/// the `leaving` that ends its feed. Here every datagram to the daemon is held 700 ms (a
/// netfilter queue), so when the leaving publisher's feed is told to end, its last 700 ms
/// are still on their way: the feed takes frames while they come, and every frame is in
/// its file (and in the file of the publisher that stays, sharing the subscription).
#[test]
fn a_leaving_publishers_packets_that_come_after_its_events_are_recorded() {
    require_tools();
    let scratch = Scratch::new("multistream-late");
    let dir = scratch.path.clone();
    let ns = Netns::create("mslate");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(1904, "vp8")]);
    let _delay = delay_media(&ns, Duration::from_millis(700));
    let out = dir.join("recordings");
    let config = on_lossy_address(&recorder_config(&out, "", &rooms_toml(&[1904])));
    let mut daemon = Daemon::watching(&ns, &dir, &config, 1);
    let stay_report = dir.join("sent-stay.json");
    let mut stayer = synthetic_publishers(
        &ns,
        &dir,
        1904,
        "stay",
        1,
        10.0,
        &["--hold", "--report", stay_report.to_str().unwrap()],
    );
    daemon
        .proc
        .wait_for("recording started", Duration::from_secs(20));
    let left = publish_held(&ns, &dir, 1904, "leave", 1, 3.0, &[]);
    let status = wait_exit(&mut stayer, Duration::from_secs(40));
    assert!(status.success(), "{}", stayer.log_tail(30));
    daemon
        .proc
        .wait_for_nth("recording finished", 2, Duration::from_secs(15));
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    let log = daemon.proc.log_text();
    assert!(!log.contains("group=2"), "one subscription for both: {log}");
    assert_every_frame_recorded(&out, &left);
    let stay: Value =
        serde_json::from_str(&std::fs::read_to_string(&stay_report).unwrap()).unwrap();
    assert_every_frame_recorded(&out, &stay);
}
