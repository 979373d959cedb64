//! Janus over TLS (`wss://`), with a certificate from a CA the test makes: recorded when the
//! daemon trusts that CA through `ca_file`; refused (logged, retried, the daemon up) when it
//! does not. rustls once had no crypto provider here, and the first handshake panicked.

mod support;

use std::time::Duration;

use janus_recorder::check::{CheckOptions, Status, check_file};
use support::*;

const WSS_PORT: u16 = 8989;

fn config(out: &std::path::Path, ca_file: Option<&std::path::Path>) -> String {
    let ca = ca_file.map_or(String::new(), |p| {
        format!("ca_file = \"{}\"\n", p.display())
    });
    format!(
        "[janus]\nurl = \"wss://127.0.0.1:{WSS_PORT}\"\n{ca}[output]\ndir = \"{}\"\n\
         [network]\nadvertise = [\"{ADDR_B}\"]\n[[rooms]]\nroom = 1401\n",
        out.display()
    )
}

#[test]
fn janus_over_wss_is_recorded_with_ca_file_and_refused_without() {
    require_tools();
    let scratch = Scratch::new("tls");
    let dir = scratch.path.clone();
    let ns = Netns::create("tls");
    let tls = WssSetup::create(&dir, WSS_PORT);
    let mut janus = Janus::start_wss(&ns, &dir, &[RoomSpec::new(1401, "vp8")], &tls);
    janus
        .proc
        .wait_for("Secure Websockets server started", Duration::from_secs(20));

    // Without the private CA: the certificate is refused, named with the URL, and retried.
    let untrusting_dir = dir.join("untrusting");
    std::fs::create_dir_all(&untrusting_dir).unwrap();
    let mut untrusting = Daemon::start(
        &ns,
        &untrusting_dir,
        &config(&untrusting_dir.join("recordings"), None),
    );
    let line = untrusting
        .proc
        .wait_for_nth("Janus unreachable", 2, Duration::from_secs(20));
    assert!(
        line.contains(&format!("wss://127.0.0.1:{WSS_PORT}")) && line.contains("certificate"),
        "the refusal names the URL and the certificate problem: {line}"
    );

    // With it: recorded.
    let out = dir.join("recordings");
    let mut daemon = Daemon::watching(&ns, &dir, &config(&out, Some(&tls.ca)), 1);
    publish_held(&ns, &dir, 1401, "tls", 1, 5.0, &[]);
    daemon
        .proc
        .wait_for("recording finished", Duration::from_secs(10));
    let recs = recordings_of(&out, "tls");
    assert_eq!(recs.len(), 1, "{recs:?}");
    let (file, sidecar) = &recs[0];
    assert_eq!(sidecar["end_reason"], "leaving", "{sidecar:#}");
    assert!(
        sidecar["video_frames"].as_u64().unwrap() >= 90,
        "{sidecar:#}"
    );
    let report = check_file(file, &CheckOptions::default());
    assert_eq!(report.status, Status::Ok, "{}", report.human());

    // The untrusting daemon never crashed and still stops cleanly.
    let (status, _) = untrusting.proc.terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "{status}\n{}",
        untrusting.proc.log_tail(30)
    );
    assert!(
        !untrusting.proc.log_text().contains("panicked"),
        "{}",
        untrusting.proc.log_tail(30)
    );
    let (status, _) = daemon.proc.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status}");
}
