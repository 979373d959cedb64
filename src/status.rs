//! `janus-recorder status`: what a running daemon is recording, read from its metrics
//! endpoint (`[http] listen` in its config) with a plain HTTP/1.0 GET over a TCP stream.
//! The metrics are already served, carry every number status shows, and need no second
//! listener; a hand-written GET keeps an HTTP client crate out of the daemon for one request.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::config::EXIT_CONFIG;

/// Exit status when the daemon cannot be reached (as `systemctl status` for a stopped unit).
pub const EXIT_NOT_RUNNING: i32 = 3;
/// How long connecting and reading may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a metrics response read.
const MAX_RESPONSE: u64 = 16 << 20;

/// One sample of the Prometheus text format: labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of a Prometheus text page, by metric name.
pub type Samples = BTreeMap<String, Vec<Sample>>;

/// Runs `status`: prints what the daemon of `config_path` records; 0, [`EXIT_CONFIG`] for a
/// config without `[metrics] listen`, or [`EXIT_NOT_RUNNING`].
pub fn run(config_path: &Path) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let Some(listen) = config.http_listen() else {
        eprintln!(
            "status reads the daemon's metrics: set [http] listen in {} (e.g. listen = \
             \"127.0.0.1:9469\") and restart it",
            config_path.display()
        );
        return EXIT_CONFIG;
    };
    let addr = reachable(listen);
    // Any token may read the metrics.
    let token = config.tokens().first().map(|t| t.token.expose().to_owned());
    match fetch_metrics(addr, token.as_deref()) {
        Ok(text) => {
            print!("{}", render(addr, &parse(&text), SystemTime::now()));
            0
        }
        Err(e) => {
            eprintln!("janus-recorder is not running, or not serving metrics on {addr}: {e}");
            EXIT_NOT_RUNNING
        }
    }
}

/// A listener on the unspecified address is reached on loopback.
pub fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

/// GET /metrics over HTTP/1.0 (the server closes the connection after the body).
pub fn fetch_metrics(addr: SocketAddr, token: Option<&str>) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n"
    )?;
    let mut response = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(std::io::Error::other(format!("answered {status:?}")));
    }
    Ok(body.to_owned())
}

/// Parses the Prometheus text format (comments skipped; label values unescaped).
pub fn parse(text: &str) -> Samples {
    let mut samples = Samples::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find(['{', ' ']) {
            Some(i) if line.as_bytes()[i] == b'{' => {
                let Some((labels, rest)) = parse_labels(&line[i + 1..]) else {
                    continue;
                };
                (&line[..i], labels, rest)
            }
            Some(i) => (&line[..i], BTreeMap::new(), &line[i..]),
            None => continue,
        };
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse().ok()) else {
            continue;
        };
        samples
            .entry(name.to_owned())
            .or_default()
            .push(Sample { labels, value });
    }
    samples
}

/// `key="value",...}` -> the labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        s = &rest[end + 1..];
    }
}

fn total(samples: &Samples, name: &str) -> f64 {
    samples
        .get(name)
        .map_or(0.0, |s| s.iter().map(|s| s.value).sum())
}

fn by_label(samples: &Samples, name: &str, label: &str) -> Vec<(String, f64)> {
    samples.get(name).map_or_else(Vec::new, |s| {
        s.iter()
            .map(|s| {
                let l = s.labels.get(label).cloned().unwrap_or_default();
                (l, s.value)
            })
            .collect()
    })
}

/// `12.3 MiB`.
fn bytes(n: f64) -> String {
    let mut value = n;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 || unit == "GiB" {
            return if unit == "B" {
                format!("{value:.0} {unit}")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    unreachable!()
}

/// The human-readable status of one daemon.
pub fn render(addr: SocketAddr, samples: &Samples, now: SystemTime) -> String {
    let count = |name: &str| total(samples, name) as u64;
    let mut out = format!(
        "janus-recorder on {addr}: recording {} feeds; watching {}/{} rooms\n",
        count("janus_recorder_feeds_recording"),
        count("janus_recorder_rooms_watched"),
        count("janus_recorder_rooms_configured"),
    );
    for (room, feeds) in by_label(samples, "janus_recorder_room_feeds_recording", "room") {
        out.push_str(&format!("  room {room}: {} feeds\n", feeds as u64));
    }
    for s in samples
        .get("janus_recorder_room_skipped")
        .into_iter()
        .flatten()
    {
        let label =
            |k: &str| crate::text::Escaped(s.labels.get(k).map_or("", String::as_str)).to_string();
        out.push_str(&format!(
            "  room {}: skipped: {}\n",
            label("room"),
            label("reason")
        ));
    }
    let written = by_label(samples, "janus_recorder_bytes_written_total", "kind");
    let kinds: Vec<String> = written
        .iter()
        .map(|(kind, n)| format!("{kind} {}", bytes(*n)))
        .collect();
    out.push_str(&format!(
        "files: {} open, {} write errors; written since start: {}{}\n",
        count("janus_recorder_feeds_recording"),
        count("janus_recorder_file_errors_total"),
        bytes(total(samples, "janus_recorder_bytes_written_total")),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        }
    ));
    for (instance, rooms) in by_label(samples, "janus_recorder_fleet_rooms_held", "instance") {
        let claims = by_label(samples, "janus_recorder_fleet_claims_total", "kind");
        let claims = |kind: &str| {
            claims
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0, |(_, n)| *n as u64)
        };
        out.push_str(&format!(
            "fleet: instance {} holds {} rooms; claimed since start: {} free, {} taken over; \
             etcd reconnects: {}\n",
            crate::text::Escaped(&instance),
            rooms as u64,
            claims("free"),
            claims("takeover"),
            count("janus_recorder_fleet_etcd_reconnects_total"),
        ));
    }
    out.push_str(&format!(
        "reconnects: {}; feeds refused at max_feeds: {}\n",
        count("janus_recorder_reconnects_total"),
        count("janus_recorder_feeds_refused_total"),
    ));
    if samples.contains_key("janus_recorder_upload_queue_files") {
        let failures: Vec<String> =
            by_label(samples, "janus_recorder_upload_failures_total", "cause")
                .into_iter()
                .map(|(cause, n)| format!("{cause} {}", n as u64))
                .collect();
        out.push_str(&format!(
            "uploads: {} files ({}) queued, oldest {}; uploaded since start: {}; failures: {}\n",
            count("janus_recorder_upload_queue_files"),
            bytes(total(samples, "janus_recorder_upload_queue_bytes")),
            humantime::format_duration(Duration::from_secs(count(
                "janus_recorder_upload_oldest_pending_seconds"
            ))),
            bytes(total(samples, "janus_recorder_uploaded_bytes_total")),
            if failures.is_empty() {
                "none".to_owned()
            } else {
                failures.join(", ")
            }
        ));
    }
    let last = by_label(samples, "janus_recorder_last_error_time_seconds", "message")
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match last {
        Some((message, at)) => {
            let now = now
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            let ago = Duration::from_secs((now - at).max(0.0) as u64);
            out.push_str(&format!(
                "last error ({} ago): {}\n",
                humantime::format_duration(ago),
                crate::text::escape_control(&message)
            ));
        }
        None => out.push_str("last error: none\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP janus_recorder_feeds_recording Feeds being written to a file now.
# TYPE janus_recorder_feeds_recording gauge
janus_recorder_feeds_recording 3
janus_recorder_rooms_watched 2
janus_recorder_rooms_configured 3
janus_recorder_room_feeds_recording{room="1234"} 2
janus_recorder_room_feeds_recording{room="hearing-7"} 1
janus_recorder_room_skipped{room="77",reason="the room needs a PIN"} 1
janus_recorder_bytes_written_total{kind="audio"} 2048
janus_recorder_bytes_written_total{kind="video"} 3145728
janus_recorder_last_error_time_seconds{message="room 9: No such \"room\"\nsecond line"} 1000
janus_recorder_last_error_time_seconds{message="older"} 900
janus_recorder_file_errors_total 1
"#;

    #[test]
    fn renders_the_upload_queue_when_storage_is_on() {
        let addr = "127.0.0.1:9469".parse().unwrap();
        let page = "janus_recorder_upload_queue_files 4\n\
                    janus_recorder_upload_queue_bytes 3145728\n\
                    janus_recorder_upload_oldest_pending_seconds 95\n\
                    janus_recorder_uploaded_bytes_total 2048\n\
                    janus_recorder_upload_failures_total{cause=\"credentials\"} 3\n";
        let text = render(addr, &parse(page), SystemTime::UNIX_EPOCH);
        assert!(
            text.contains(
                "uploads: 4 files (3.0 MiB) queued, oldest 1m 35s; uploaded since start: \
                 2.0 KiB; failures: credentials 3\n"
            ),
            "{text}"
        );
        assert!(!render(addr, &parse(PAGE), SystemTime::UNIX_EPOCH).contains("uploads:"));
    }

    #[test]
    fn renders_the_fleet_when_in_one() {
        let addr = "127.0.0.1:9469".parse().unwrap();
        let page = "janus_recorder_fleet_rooms_held{instance=\"rec-2\"} 3\n\
                    janus_recorder_fleet_claims_total{kind=\"free\"} 2\n\
                    janus_recorder_fleet_claims_total{kind=\"takeover\"} 1\n";
        let text = render(addr, &parse(page), SystemTime::UNIX_EPOCH);
        assert!(
            text.contains(
                "fleet: instance rec-2 holds 3 rooms; claimed since start: 2 free, 1 taken \
                 over; etcd reconnects: 0\n"
            ),
            "{text}"
        );
        assert!(!render(addr, &parse(PAGE), SystemTime::UNIX_EPOCH).contains("fleet"));
    }

    #[test]
    fn parses_samples_and_labels() {
        let s = parse(PAGE);
        assert_eq!(s["janus_recorder_feeds_recording"][0].value, 3.0);
        assert_eq!(
            s["janus_recorder_room_feeds_recording"][1].labels["room"],
            "hearing-7"
        );
        assert_eq!(
            s["janus_recorder_last_error_time_seconds"][0].labels["message"],
            "room 9: No such \"room\"\nsecond line"
        );
        assert!(parse("x{a=\"unterminated} 1\ny 2\n").contains_key("y"));
    }

    #[test]
    fn renders_rooms_files_bytes_and_the_last_error() {
        let addr = "127.0.0.1:9469".parse().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1090);
        let text = render(addr, &parse(PAGE), now);
        assert_eq!(
            text,
            "janus-recorder on 127.0.0.1:9469: recording 3 feeds; watching 2/3 rooms\n\
             \x20 room 1234: 2 feeds\n\
             \x20 room hearing-7: 1 feeds\n\
             \x20 room 77: skipped: the room needs a PIN\n\
             files: 3 open, 1 write errors; written since start: 3.0 MiB (audio 2.0 KiB, video 3.0 MiB)\n\
             reconnects: 0; feeds refused at max_feeds: 0\n\
             last error (1m 30s ago): room 9: No such \"room\"\\nsecond line\n"
        );
    }
}
