//! The systemd side: the unit files (plain and template) pass `systemd-analyze verify` and
//! score 2.0 or lower in `systemd-analyze security`, and the daemon speaks sd_notify (READY, STATUS, WATCHDOG,
//! STOPPING) on a real notify socket, as systemd would read it.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Scratch;

fn unit_text() -> String {
    unit_text_of("janus-recorder.service")
}

fn unit_text_of(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(name),
    )
    .unwrap_or_else(|e| panic!("systemd/{name}: {e}"))
}

/// Both units verify and score 2.0 or lower; a reload checks the config before the SIGHUP (a
/// failing check stops the reload there).
#[test]
fn unit_files_verify_and_are_hardened() {
    let scratch = Scratch::new("unit");
    // The units as installed, but pointing at the binary just built; the template as an
    // instance (systemd-analyze resolves %i only there).
    for (name, installed_as, config) in [
        (
            "janus-recorder.service",
            "janus-recorder.service",
            "config.toml",
        ),
        (
            "janus-recorder@.service",
            "janus-recorder@janus2.service",
            "%i.toml",
        ),
    ] {
        let text = unit_text_of(name);
        let unit = scratch.path.join(installed_as);
        std::fs::write(
            &unit,
            text.replace(
                "/usr/local/bin/janus-recorder",
                env!("CARGO_BIN_EXE_janus-recorder"),
            ),
        )
        .unwrap();
        support::assert_unit_verifies_and_is_hardened(&unit);
        for directive in ["Type=notify", "WatchdogSec=", "UMask=0027"] {
            assert!(text.contains(directive), "{name} lacks {directive}");
        }
        let reloads: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ExecReload="))
            .collect();
        assert_eq!(
            reloads,
            [
                format!("/usr/local/bin/janus-recorder config check /etc/janus-recorder/{config}")
                    .as_str(),
                "/bin/kill -HUP $MAINPID"
            ],
            "{name}"
        );
    }
}

/// The template is the plain unit with the instance's config and state directory: the
/// hardening cannot drift apart.
#[test]
fn the_template_unit_differs_only_in_its_names() {
    let plain = unit_text();
    let template = unit_text_of("janus-recorder@.service");
    let differing: Vec<&str> = template
        .lines()
        .filter(|l| !l.starts_with('#') && !plain.lines().any(|p| p == *l))
        .collect();
    assert_eq!(
        differing,
        [
            "Description=janus-recorder %i: records the Janus VideoRoom rooms of /etc/janus-recorder/%i.toml",
            "ExecStart=/usr/local/bin/janus-recorder run --config /etc/janus-recorder/%i.toml",
            "ExecReload=/usr/local/bin/janus-recorder config check /etc/janus-recorder/%i.toml",
            "StateDirectory=janus-recorder-%i",
        ]
    );
    let settings = |text: &str| text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(settings(&plain), settings(&template), "a line is missing");
}

/// `LimitNOFILE` lets `max_feeds` default to at least 2000 feeds (the file budget; memory
/// may lower it), so the unit is not what limits feeds.
#[test]
fn the_unit_allows_the_open_files_feeds_need() {
    let limit: u64 = unit_text()
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("the unit sets LimitNOFILE")
        .trim()
        .parse()
        .expect("LimitNOFILE is a number");
    let feeds = janus_recorder::limits::default_max_feeds(limit, u64::MAX).get();
    assert!(
        feeds >= 2000,
        "LimitNOFILE={limit} allows only {feeds} feeds"
    );
    assert!(janus_recorder::limits::fds_needed(feeds) <= limit);
}

#[test]
fn speaks_sd_notify() {
    let scratch = Scratch::new("notify");
    let socket_path = scratch.path.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config = scratch.path.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[janus]\nurl = \"ws://127.0.0.1:1\"\n[output]\ndir = \"{}\"\n[network]\nadvertise = [\"127.0.0.1\"]\n[[rooms]]\nroom = 1\n",
            scratch.path.join("rec").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut messages = Vec::new();
    let receive_until = |want: &str, within: Duration, messages: &mut Vec<String>| {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = m.lines().any(|l| l.starts_with(want));
                messages.push(m);
                if found {
                    return;
                }
            }
        }
        panic!("no {want} within {within:?}; got {messages:?}");
    };
    receive_until("READY=1", Duration::from_secs(5), &mut messages);
    let ready = messages.last().unwrap().clone();
    assert!(ready.contains("STATUS="), "{ready}");
    // Janus is unreachable here: the status says so.
    receive_until("WATCHDOG=1", Duration::from_secs(3), &mut messages);
    receive_until("STATUS=", Duration::from_secs(3), &mut messages);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("last error: Janus unreachable")),
        "{messages:?}"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    receive_until("STOPPING=1", Duration::from_secs(5), &mut messages);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Parses one journald native-protocol datagram into its fields.
fn journal_fields(datagram: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let line_end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let line = &rest[..line_end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            fields.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            rest = rest.get(line_end + 1..).unwrap_or(&[]);
        } else {
            // KEY\n, 64-bit little-endian length, value, \n (values with newlines).
            let key = String::from_utf8_lossy(line).into_owned();
            let after = &rest[line_end + 1..];
            let len = u64::from_le_bytes(after[..8].try_into().unwrap()) as usize;
            let value = String::from_utf8_lossy(&after[8..8 + len]).into_owned();
            fields.push((key, value));
            rest = after.get(8 + len + 1..).unwrap_or(&[]);
        }
    }
    fields
}

#[test]
fn logs_to_the_journal_with_room_feed_and_display_fields() {
    support::require_tools();
    let scratch = Scratch::new("journal");
    let dir = &scratch.path;
    // The daemon's /run is a directory of ours (a private mount namespace), so its journal
    // socket is one the test reads, whether or not this machine runs journald.
    let run = dir.join("run");
    std::fs::create_dir_all(run.join("systemd/journal")).unwrap();
    let journal = UnixDatagram::bind(run.join("systemd/journal/socket")).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let ns = support::Netns::create("journal");
    let _janus = support::Janus::start(&ns, dir, &[support::RoomSpec::new(1234, "vp8")]);
    let page = support::PageServer::start(&ns, dir);
    let mut publisher =
        support::Publisher::start(&ns, &page, dir, support::PublisherSpec::new(1234, "Zoë"));
    publisher.wait_published(1);
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[janus]\nurl = \"ws://127.0.0.1:8188\"\n[output]\ndir = \"{}\"\n[network]\nadvertise = [\"{}\"]\n[[rooms]]\nroom = 1234\n[[rooms]]\nroom = 9999\n",
            dir.join("rec").display(),
            support::ADDR_B
        ),
    )
    .unwrap();
    let mut cmd = ns.command("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount --bind '{}' /run && exec \"$0\" run --config '{}'",
            run.display(),
            config.display()
        ))
        .arg(env!("CARGO_BIN_EXE_janus-recorder"))
        .env("JOURNAL_STREAM", "8:12345")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();

    let mut records: Vec<Vec<(String, String)>> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = vec![0u8; 65536];
    let has = |records: &Vec<Vec<(String, String)>>, needle: &str, keys: &[&str]| {
        records.iter().any(|r| {
            r.iter().any(|(k, v)| k == "MESSAGE" && v.contains(needle))
                && keys.iter().all(|key| r.iter().any(|(k, _)| k == key))
        })
    };
    while Instant::now() < deadline
        && !(has(&records, "recording started", &["ROOM", "FEED", "DISPLAY"])
            && has(&records, "room not recorded", &["ROOM"]))
    {
        if let Ok(n) = journal.recv(&mut buf) {
            records.push(journal_fields(&buf[..n]));
        }
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");

    let started = records
        .iter()
        .find(|r| {
            r.iter()
                .any(|(k, v)| k == "MESSAGE" && v == "recording started")
        })
        .unwrap_or_else(|| panic!("no 'recording started' in the journal: {records:?}"));
    let field = |r: &Vec<(String, String)>, key: &str| {
        r.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {key} in {r:?}"))
    };
    assert_eq!(field(started, "ROOM"), "1234");
    assert_eq!(field(started, "DISPLAY"), "\"Zoë\"");
    assert!(field(started, "FEED").parse::<u64>().is_ok());
    assert_eq!(field(started, "SYSLOG_IDENTIFIER"), "janus-recorder");
    let refused = records
        .iter()
        .find(|r| {
            r.iter()
                .any(|(k, v)| k == "MESSAGE" && v.contains("room not recorded"))
        })
        .expect("the missing room is logged");
    assert_eq!(field(refused, "ROOM"), "9999");
    assert_eq!(field(refused, "PRIORITY"), "3", "an error");
}
