//! Recording from the VideoRoom's RTP forwarders (`[janus] rtp_forward`): Janus sends each
//! recorded stream as plain RTP to one socket of the daemon, and no subscription is made.
//! The files are the same as a subscription's: every frame the publishers sent, from a
//! keyframe, as publishers come and go; a stream broken by loss (nothing resends a
//! forwarded packet) asks for a keyframe through the forwarder's RTCP port, and Janus passes
//! it on to the publisher.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::janus_admin::subscriber_handles;
use support::*;

/// A daemon config recording `room` from forwarders to `listen`.
fn forward_config(out: &Path, listen: &str, room: u64) -> String {
    recorder_config(out, "", &rooms_toml(&[room])).replacen(
        "[janus]\n",
        &format!("[janus]\nrtp_forward = {{ listen = \"{listen}\" }}\n"),
        1,
    ) + "[metrics]\nlisten = \"127.0.0.1:9469\"\n"
}

/// Two publishers record from start to end while three others join and leave one after
/// another: every frame of each is in its file, Janus has no subscriber of ours, and the
/// forwarders are gone once the publishers are.
#[test]
fn forwarded_feeds_record_every_frame_as_publishers_come_and_go() {
    require_tools();
    let scratch = Scratch::new("forward-churn");
    let dir = scratch.path.clone();
    let ns = Netns::create("fwchurn");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(2101, "vp8")]);
    let out = dir.join("recordings");
    let mut daemon = Daemon::watching(&ns, &dir, &forward_config(&out, "127.0.0.1:0", 2101), 1);
    let reports = stayers_and_visitors(&ns, &dir, 2101, &mut daemon, (14.0, 3), || {
        assert_eq!(
            subscriber_handles(&ns),
            vec![],
            "forwarders need no subscription"
        );
    });
    let metrics = http_get(&ns, "127.0.0.1:9469", "/metrics");
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    for r in &reports {
        assert_every_frame_recorded(&out, r);
    }
    assert_eq!(
        metric(&metrics, "janus_recorder_packets_lost_total"),
        0.0,
        "{metrics}"
    );
}

/// 3% of the forwarded packets dropped from 2 s into the recording: nothing resends them,
/// so the video breaks again and again; each time the recording asks for a keyframe, Janus
/// passes it on to the publisher (its report counts the requests), and the file goes on
/// from that keyframe: it decodes without an error and keeps most of the video.
#[test]
fn a_forwarded_stream_broken_by_loss_gets_keyframes_again() {
    require_tools();
    let scratch = Scratch::new("forward-loss");
    let dir = scratch.path.clone();
    let ns = Netns::create("fwloss");
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(2102, "vp8")]);
    lossy_address(&ns, 0);
    let out = dir.join("recordings");
    let listen = format!("{LOSSY_ADDR}:{LOSSY_PORT}");
    let mut daemon = Daemon::watching(&ns, &dir, &forward_config(&out, &listen, 2102), 1);
    let report = dir.join("sent.json");
    let mut publish = synthetic_publishers(
        &ns,
        &dir,
        2102,
        "lossy",
        1,
        16.0,
        &["--hold", "--report", report.to_str().unwrap()],
    );
    daemon
        .proc
        .wait_for("recording started", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(2));
    add_loss(&ns, 3);
    let status = wait_exit(&mut publish, Duration::from_secs(40));
    assert!(status.success(), "{}", publish.log_tail(30));
    daemon
        .proc
        .wait_for("recording finished", Duration::from_secs(15));
    let metrics = http_get(&ns, "127.0.0.1:9469", "/metrics");
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success());
    let sent: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let feed = &sent["feeds"][0];
    let recs = recordings_of(&out, "lossy");
    assert_eq!(recs.len(), 1, "{recs:#?}");
    let (file, sidecar) = &recs[0];
    let requests = feed["keyframe_requests"].as_u64().unwrap();
    let (written, sent_video) = (
        sidecar["video_frames"].as_u64().unwrap(),
        feed["video_frames"].as_u64().unwrap(),
    );
    println!(
        "3% loss, forwarded: the publisher got {requests} keyframe requests; {written} of \
         {sent_video} video frames written; lost packets (metric) {}",
        metric(&metrics, "janus_recorder_packets_lost_total")
    );
    assert!(
        requests >= 2,
        "Janus's own request as the forwarder started, and ours after the loss: {feed}"
    );
    assert!(
        metric(&metrics, "janus_recorder_packets_lost_total") > 0.0,
        "the loss is counted: {metrics}"
    );
    assert!(
        written * 2 >= sent_video,
        "{written} of {sent_video} video frames"
    );
    assert!(first_video_packet_is_key(file), "{}", file.display());
    assert_eq!(decode_errors(file), "", "{}", file.display());
}
