//! `[cluster]`: three recorders share six rooms through a real etcd (Debian's etcd-server,
//! started in the test's namespace), each room with a synthetic publisher on a real Janus.
//! Each room is recorded by exactly one instance; an instance killed with SIGKILL has its
//! rooms recorded again by the others within the lease TTL + 2 s, each feed's new part linked
//! to the last one the dead instance wrote; an instance stopped with SIGTERM hands its rooms
//! over at once. The gaps are printed per room.
//!
//! All three instances write into one output directory (a shared volume, as a fleet would
//! use), each with its own state directory.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use janus_recorder::output::Sidecar;
use support::etcd::{CLIENT_URL, Etcd, require_etcd};
use support::*;

const ROOMS: [u64; 6] = [2501, 2502, 2503, 2504, 2505, 2506];
/// Short, to keep the test short; what is measured scales with it.
const TTL: Duration = Duration::from_secs(6);

/// Every sidecar under `out` (not the room manifests), with its path.
fn sidecars(out: &Path) -> Vec<(PathBuf, Sidecar)> {
    files_under(out)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".json") && !name.ends_with(".room.json")
        })
        .filter_map(|p| {
            let s: Sidecar = serde_json::from_slice(&fs::read(&p).ok()?).ok()?;
            Some((p, s))
        })
        .collect()
}

/// Each room's recordings still open (no `ended_at`), by the instance recording them.
fn open_by_room(out: &Path) -> BTreeMap<u64, BTreeSet<String>> {
    let mut by_room: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for (_, s) in sidecars(out) {
        if s.ended_at.is_none() {
            let room: u64 = s.room.to_string().parse().unwrap();
            by_room
                .entry(room)
                .or_default()
                .insert(s.recorded_by.clone().unwrap_or_default());
        }
    }
    by_room
}

/// The newest recording of `room` by someone other than `not_by`, if any.
fn newest_by_other(out: &Path, room: u64, not_by: &str) -> Option<Sidecar> {
    sidecars(out)
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.room.to_string() == room.to_string())
        .filter(|s| s.recorded_by.as_deref().is_some_and(|b| b != not_by))
        .max_by_key(|s| s.fencing_token)
}

/// The last part `by` wrote of `room`.
fn last_by(out: &Path, room: u64, by: &str) -> Sidecar {
    sidecars(out)
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.room.to_string() == room.to_string())
        .filter(|s| s.recorded_by.as_deref() == Some(by))
        .max_by_key(|s| (s.fencing_token, s.part))
        .unwrap_or_else(|| panic!("no recording of room {room} by {by}"))
}

/// Where instance `name` (`rec-N`) serves its API and metrics.
fn api_of(name: &str) -> String {
    format!("127.0.0.1:{}", 9470 + name[4..].parse::<u16>().unwrap())
}

fn instance_config(out: &Path, idir: &Path, name: &str, endpoint: &str, rooms: &[u64]) -> String {
    recorder_config(
        out,
        &format!("state_dir = \"{}\"\n", idir.join("state").display()),
        &format!(
            "{}[http]\nlisten = \"{}\"\n[cluster]\nendpoints = [\"{endpoint}\"]\n\
             instance = \"{name}\"\nlease_ttl = \"{}s\"\n",
            rooms_toml(rooms),
            api_of(name),
            TTL.as_secs()
        ),
    )
}

/// Waits until each room of `rooms` has a recording by someone other than `gone` newer
/// than `since_token`; returns the gap from `from` to when it was seen, per room.
fn wait_taken_over(
    out: &Path,
    rooms: &[(u64, i64)],
    gone: &str,
    from: Instant,
    timeout: Duration,
) -> BTreeMap<u64, (Duration, Sidecar)> {
    let mut seen = BTreeMap::new();
    while seen.len() < rooms.len() {
        for (room, token) in rooms {
            if seen.contains_key(room) {
                continue;
            }
            if let Some(s) = newest_by_other(out, *room, gone)
                .filter(|s| s.fencing_token.is_some_and(|t| t > *token))
            {
                seen.insert(*room, (from.elapsed(), s));
            }
        }
        assert!(
            from.elapsed() < timeout,
            "rooms of {gone} not taken over within {timeout:?}: only {:?}",
            seen.keys().collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    seen
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Seconds since the epoch of a sidecar's RFC 3339 time.
fn epoch_secs(rfc3339: &str) -> f64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?}: {e}"));
    t.unix_timestamp_nanos() as f64 / 1e9
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The new part of each feed taken over links to the last part the previous holder wrote,
/// and says it was taken over.
fn assert_linked(out: &Path, taken: &BTreeMap<u64, (Duration, Sidecar)>, from: &str) {
    for (room, (_, new)) in taken {
        let old = last_by(out, *room, from);
        assert_eq!(new.feed, old.feed, "room {room}: the same publisher");
        assert_eq!(
            new.previous_part.as_deref(),
            Some(old.file.as_str()),
            "room {room}: the takeover's part follows {from}'s"
        );
        assert_eq!(new.part, old.part + 1, "room {room}");
        assert_eq!(
            new.resumed_after.as_deref(),
            Some(format!("taken over from instance {from}").as_str()),
            "room {room}"
        );
    }
}

/// These tests each run Janus, etcd, six publishers and three daemons: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const NAMES: [&str; 3] = ["rec-1", "rec-2", "rec-3"];

/// Janus with rooms (by default [`ROOMS`], a publisher in each), etcd, and the three
/// instances.
struct Rig {
    rooms: Vec<u64>,
    _scratch: Scratch,
    dir: PathBuf,
    ns: Netns,
    _janus: Janus,
    etcd: Etcd,
    _publishers: Vec<Proc>,
    out: PathBuf,
    daemons: BTreeMap<&'static str, Daemon>,
    /// Each instance's etcd endpoint.
    endpoints: BTreeMap<&'static str, String>,
    /// How many times each instance was started.
    starts: BTreeMap<&'static str, u32>,
    /// Instances with a `[limits] max_feeds`.
    max_feeds: BTreeMap<&'static str, usize>,
}

impl Rig {
    /// With `own_endpoints`, etcd listens on one loopback address per instance
    /// (127.0.0.N+1 for rec-N), each instance using its own.
    fn new(tag: &str, own_endpoints: bool) -> Rig {
        Rig::with_rooms(tag, own_endpoints, &ROOMS, true, &[])
    }

    /// [`Rig::new`] with `rooms`, with a publisher in each or none, and some instances'
    /// `[limits] max_feeds`.
    fn with_rooms(
        tag: &str,
        own_endpoints: bool,
        rooms: &[u64],
        publish: bool,
        max_feeds: &[(&'static str, usize)],
    ) -> Rig {
        require_tools();
        require_etcd();
        let scratch = Scratch::new(tag);
        let dir = scratch.path.clone();
        let ns = Netns::create(tag);
        let specs: Vec<RoomSpec> = rooms.iter().map(|r| RoomSpec::new(*r, "vp8")).collect();
        let janus = Janus::start(&ns, &dir, &specs);
        let endpoints: BTreeMap<&str, String> = NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let url = if own_endpoints {
                    format!("http://127.0.0.{}:2379", i + 2)
                } else {
                    CLIENT_URL.to_owned()
                };
                (*n, url)
            })
            .collect();
        let mut urls: Vec<&str> = vec![CLIENT_URL];
        if own_endpoints {
            urls.extend(endpoints.values().map(String::as_str));
        }
        let etcd = Etcd::start_on(&ns, &dir, &urls);
        let publishers = rooms
            .iter()
            .filter(|_| publish)
            .map(|r| synthetic_publishers(&ns, &dir, *r, &format!("p{r}"), 1, 300.0, &[]))
            .collect();
        let mut rig = Rig {
            rooms: rooms.to_vec(),
            _scratch: scratch,
            out: dir.join("recordings"),
            dir,
            ns,
            _janus: janus,
            etcd,
            _publishers: publishers,
            daemons: BTreeMap::new(),
            endpoints,
            starts: BTreeMap::new(),
            max_feeds: max_feeds.iter().copied().collect(),
        };
        for name in NAMES {
            rig.start(name);
        }
        rig
    }

    /// Starts instance `name` (again); each start logs to a file of its own.
    fn start(&mut self, name: &'static str) {
        let idir = self.dir.join(name);
        let n = self.starts.entry(name).or_default();
        *n += 1;
        let run = idir.join(format!("run-{n}"));
        fs::create_dir_all(&run).unwrap();
        let mut config =
            instance_config(&self.out, &idir, name, &self.endpoints[name], &self.rooms);
        if let Some(max) = self.max_feeds.get(name) {
            config.push_str(&format!("[limits]\nmax_feeds = {max}\n"));
        }
        self.daemons
            .insert(name, Daemon::start(&self.ns, &run, &config));
    }

    /// Waits until every room is recorded; returns who records each.
    fn wait_all_recorded(&self, timeout: Duration) -> BTreeMap<u64, BTreeSet<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let by_room = open_by_room(&self.out);
            if by_room.len() == ROOMS.len() && by_room.values().all(|b| b.len() == 1) {
                return by_room;
            }
            assert!(
                Instant::now() < deadline,
                "not every room recorded once: {by_room:?}\n{}",
                self.daemons.values().next().unwrap().proc.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn three_instances_share_six_rooms_and_take_over_a_dead_ones() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rig = Rig::new("fleet", false);
    let (ns, out, etcd) = (&rig.ns, &rig.out, &rig.etcd);
    let rig_dir = rig.dir.clone();
    let mut daemons = rig.daemons;
    let names = NAMES;

    // Each room recorded, by exactly one instance.
    let by_room = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let by_room = open_by_room(out);
            if by_room.len() == ROOMS.len() {
                break by_room;
            }
            assert!(
                Instant::now() < deadline,
                "not every room recorded: {by_room:?}\n{}",
                daemons["rec-1"].proc.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // A few renewals later, still one each.
    std::thread::sleep(TTL);
    let settled = open_by_room(out);
    assert_eq!(settled, by_room, "the rooms stayed where they were");
    let mut rooms_of: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (room, by) in &settled {
        assert_eq!(by.len(), 1, "room {room} recorded by {by:?} at once");
        rooms_of
            .entry(by.first().unwrap().clone())
            .or_default()
            .push(*room);
    }
    println!("rooms per instance: {rooms_of:?}");
    let counts: Vec<usize> = rooms_of.values().map(Vec::len).collect();
    assert!(
        rooms_of.len() == 3 && counts.iter().max() == counts.iter().min(),
        "the rooms are spread evenly: {rooms_of:?}"
    );
    let keys = etcd.get_prefix("/janus-recorder/rooms/");
    assert_eq!(keys.len(), ROOMS.len(), "one key per room: {keys:?}");
    // Each instance's API names the recorder of every room, its metrics its own rooms.
    for name in names {
        let list: serde_json::Value =
            serde_json::from_str(&http_get(ns, &api_of(name), "/api/v1/rooms")).unwrap();
        for entry in list["rooms"].as_array().unwrap() {
            let room = entry["room"].as_u64().unwrap();
            let by = settled[&room].first().unwrap();
            assert_eq!(entry["recorded_by"], by.as_str(), "{name}'s view of {room}");
        }
        let metrics = http_get(ns, &api_of(name), "/metrics");
        let held = metric(
            &metrics,
            &format!("janus_recorder_fleet_rooms_held{{instance=\"{name}\"}}"),
        );
        assert_eq!(held as usize, rooms_of[name].len(), "{name}'s metric");
    }

    // SIGKILL the instance with the most rooms: the others record them again.
    let (victim, victim_rooms) = rooms_of
        .iter()
        .max_by_key(|(_, r)| r.len())
        .map(|(n, r)| (n.clone(), r.clone()))
        .unwrap();
    let tokens: Vec<(u64, i64)> = victim_rooms
        .iter()
        .map(|r| (*r, last_by(out, *r, &victim).fencing_token.unwrap()))
        .collect();
    let killed = Instant::now();
    let killed_at = now_secs();
    let mut dead = daemons.remove(victim.as_str()).unwrap();
    dead.proc.child.kill().unwrap();
    dead.proc.child.wait().unwrap();
    let taken = wait_taken_over(out, &tokens, &victim, killed, TTL + Duration::from_secs(10));
    // The gap: from the kill to the new part's first frame (its `started_at`); the new
    // sidecar is written a little later, once the track clocks are decided.
    for (room, (seen, s)) in &taken {
        let gap = epoch_secs(&s.started_at) - killed_at;
        println!(
            "SIGKILL of {victim}: room {room} recorded again by {}: gap {gap:.2} s (sidecar seen after {:.2} s)",
            s.recorded_by.as_deref().unwrap_or("?"),
            seen.as_secs_f64()
        );
        assert!(
            gap <= (TTL + Duration::from_secs(2)).as_secs_f64(),
            "room {room} was unrecorded for {gap:.2} s (TTL {TTL:?} + 2 s)"
        );
    }
    assert_linked(out, &taken, &victim);
    std::thread::sleep(Duration::from_secs(2));
    for (room, by) in open_by_room(out) {
        let live: BTreeSet<&String> = by.iter().filter(|b| **b != victim).collect();
        assert_eq!(live.len(), 1, "room {room} recorded by {live:?} at once");
    }

    // SIGTERM one of the two left: its rooms go to the last at once.
    let leaving = daemons.keys().next().copied().unwrap();
    let its_rooms: Vec<(u64, i64)> = open_by_room(out)
        .into_iter()
        .filter(|(_, by)| by.contains(leaving))
        .map(|(r, _)| (r, last_by(out, r, leaving).fencing_token.unwrap()))
        .collect();
    assert!(!its_rooms.is_empty(), "{leaving} records something");
    let stopped = Instant::now();
    let (status, _) = daemons
        .get_mut(leaving)
        .unwrap()
        .proc
        .terminate(Duration::from_secs(10));
    assert!(status.success(), "{leaving} exited {status}");
    let taken = wait_taken_over(out, &its_rooms, leaving, stopped, Duration::from_secs(10));
    // The gap: from the old part's end to the new part's first frame.
    let mut gaps: Vec<f64> = Vec::new();
    for (room, (seen, s)) in &taken {
        let old = last_by(out, *room, leaving);
        assert_eq!(
            old.end_reason.as_deref(),
            Some("shutdown"),
            "room {room}: finalized"
        );
        let gap = epoch_secs(&s.started_at) - epoch_secs(old.ended_at.as_deref().unwrap());
        println!(
            "SIGTERM of {leaving}: room {room} recorded again by {}: gap {gap:.2} s (sidecar seen after {:.2} s)",
            s.recorded_by.as_deref().unwrap_or("?"),
            seen.as_secs_f64()
        );
        gaps.push(gap);
    }
    gaps.sort_by(f64::total_cmp);
    println!(
        "graceful handover: gap p50 {:.2} s, p95 {:.2} s over {} rooms",
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.95),
        gaps.len()
    );
    assert_linked(out, &taken, leaving);
    assert!(
        *gaps.last().unwrap() <= 1.0,
        "a graceful handover left a gap over 1 s: {gaps:?}"
    );
    for d in daemons.values_mut() {
        if d.proc.child.try_wait().unwrap().is_none() {
            let (status, _) = d.proc.terminate(Duration::from_secs(10));
            assert!(status.success());
        }
    }
    assert!(
        etcd.get_prefix("/janus-recorder/").is_empty(),
        "every lease revoked on SIGTERM"
    );

    // `room` joins each meeting's parts, from every instance, into one track pair.
    require_ffmpeg();
    for room in ROOMS {
        let parts = sidecars(out)
            .iter()
            .filter(|(_, s)| s.room.to_string() == room.to_string())
            .count();
        let file = rig_dir.join(format!("room-{room}.mkv"));
        let made = std::process::Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
            .arg("room")
            .arg("--out")
            .arg(&file)
            .arg(out.join(room.to_string()))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&made.stdout),
            String::from_utf8_lossy(&made.stderr)
        );
        assert!(made.status.success(), "room {room}: {text}");
        assert!(
            text.contains(&format!("{parts} recordings, 2 tracks")),
            "room {room}: {parts} parts: {text}"
        );
    }
}

/// Drops every packet to and from `addr`:2379 in `ns` (etcd's endpoint for one instance).
fn cut_off(ns: &Netns, addr: &str) {
    let rules = format!(
        "table inet fleetcut {{\n chain out {{\n  type filter hook output priority 0;\n  \
         ip daddr {addr} tcp dport 2379 drop\n  ip saddr {addr} tcp sport 2379 drop\n }}\n}}\n"
    );
    let path = std::env::temp_dir().join(format!("fleetcut-{}.nft", std::process::id()));
    fs::write(&path, rules).unwrap();
    let status = ns.command("nft").arg("-f").arg(&path).status().unwrap();
    let _ = fs::remove_file(&path);
    assert!(status.success(), "nft failed");
}

fn heal(ns: &Netns) {
    let status = ns
        .command("nft")
        .args(["delete", "table", "inet", "fleetcut"])
        .status()
        .unwrap();
    assert!(status.success(), "nft delete failed");
}

/// Every sidecar of `by` that ended `handed-over`, by room.
fn handed_over(out: &Path, by: &str) -> BTreeMap<u64, Sidecar> {
    sidecars(out)
        .into_iter()
        .map(|(_, s)| s)
        .filter(|s| s.recorded_by.as_deref() == Some(by))
        .filter(|s| s.end_reason.as_deref() == Some("handed-over"))
        .map(|s| (s.room.to_string().parse().unwrap(), s))
        .collect()
}

/// Checks, for `period`, that every room stays recorded by exactly one instance.
fn assert_each_room_once(out: &Path, period: Duration, what: &str) {
    let end = Instant::now() + period;
    while Instant::now() < end {
        let by_room = open_by_room(out);
        assert_eq!(
            by_room.len(),
            ROOMS.len(),
            "{what}: a room is not recorded: {by_room:?}"
        );
        for (room, by) in &by_room {
            assert_eq!(
                by.len(),
                1,
                "{what}: room {room} recorded by {by:?} at once"
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_cut_off_instance_stops_in_time_etcd_restarts_and_a_rolling_restart_keeps_every_room() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rig = Rig::new("fleetcut", true);
    let settled = rig.wait_all_recorded(Duration::from_secs(60));
    let fence = TTL * 2 / 3;

    // Cut rec-2 off from etcd (Janus still reachable): it stops recording within two thirds
    // of the TTL, before the others take its rooms.
    let victim = "rec-2";
    let its_rooms: Vec<(u64, i64)> = settled
        .iter()
        .filter(|(_, by)| by.contains(victim))
        .map(|(r, _)| (*r, last_by(&rig.out, *r, victim).fencing_token.unwrap()))
        .collect();
    assert!(
        !its_rooms.is_empty(),
        "{victim} records something: {settled:?}"
    );
    let cut = Instant::now();
    let cut_at = now_secs();
    cut_off(
        &rig.ns,
        rig.endpoints[victim]
            .trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap(),
    );
    let taken = wait_taken_over(
        &rig.out,
        &its_rooms,
        victim,
        cut,
        TTL + Duration::from_secs(10),
    );
    let stopped = handed_over(&rig.out, victim);
    for (room, (_, new)) in &taken {
        let old = stopped
            .get(room)
            .unwrap_or_else(|| panic!("room {room}: {victim}'s part did not end handed-over"));
        let stop = epoch_secs(old.ended_at.as_deref().unwrap()) - cut_at;
        let start = epoch_secs(&new.started_at) - cut_at;
        println!(
            "cut off {victim}: room {room} stopped {stop:.2} s after the cut, recorded by {} from {start:.2} s",
            new.recorded_by.as_deref().unwrap_or("?")
        );
        assert!(
            stop <= fence.as_secs_f64() + 0.3,
            "room {room}: {victim} wrote for {stop:.2} s after the cut (fence {fence:?})"
        );
        assert!(start > stop, "room {room}: recorded twice at once");
        assert!(
            start <= (TTL + Duration::from_secs(2)).as_secs_f64(),
            "room {room}: unrecorded until {start:.2} s"
        );
    }
    assert_linked(&rig.out, &taken, victim);

    // Healed: it rejoins (a new lease) without taking any room from the others.
    heal(&rig.ns);
    rig.daemons.get_mut(victim).unwrap().proc.wait_for_nth(
        "etcd lease granted",
        2,
        Duration::from_secs(15),
    );
    assert_each_room_once(&rig.out, TTL, "after the heal");
    let by_room = open_by_room(&rig.out);
    assert!(
        by_room.values().all(|by| !by.contains(victim)),
        "{victim} took a room back: {by_room:?}"
    );

    // etcd killed and started again: the leases survive, no room is lost or doubled.
    let before = open_by_room(&rig.out);
    let down = Instant::now();
    rig.etcd.restart(&rig.ns);
    println!(
        "etcd killed and up again after {:.2} s",
        down.elapsed().as_secs_f64()
    );
    assert_each_room_once(&rig.out, TTL, "after etcd's restart");
    assert_eq!(open_by_room(&rig.out), before, "every room where it was");

    // A rolling restart: each instance in turn stopped (SIGTERM) and started again; each
    // room it recorded goes on elsewhere after a short gap.
    let mut gaps: Vec<f64> = Vec::new();
    for name in NAMES {
        let its_rooms: Vec<(u64, i64)> = open_by_room(&rig.out)
            .into_iter()
            .filter(|(_, by)| by.contains(name))
            .map(|(r, _)| (r, last_by(&rig.out, r, name).fencing_token.unwrap()))
            .collect();
        let stopped = Instant::now();
        let (status, _) = rig
            .daemons
            .get_mut(name)
            .unwrap()
            .proc
            .terminate(Duration::from_secs(10));
        assert!(status.success(), "{name} exited {status}");
        let taken = wait_taken_over(&rig.out, &its_rooms, name, stopped, Duration::from_secs(10));
        for (room, (_, new)) in &taken {
            let old = last_by(&rig.out, *room, name);
            let gap = epoch_secs(&new.started_at) - epoch_secs(old.ended_at.as_deref().unwrap());
            println!("rolling restart, {name} stopped: room {room} gap {gap:.2} s");
            gaps.push(gap);
        }
        assert_linked(&rig.out, &taken, name);
        rig.start(name);
        rig.daemons
            .get_mut(name)
            .unwrap()
            .proc
            .wait_for("etcd lease granted", Duration::from_secs(15));
        rig.wait_all_recorded(Duration::from_secs(10));
    }
    gaps.sort_by(f64::total_cmp);
    println!(
        "rolling restart: gap p50 {:.2} s, p95 {:.2} s, max {:.2} s over {} handovers",
        percentile(&gaps, 0.5),
        percentile(&gaps, 0.95),
        gaps.last().unwrap(),
        gaps.len()
    );
    assert!(
        *gaps.last().unwrap() <= 1.0,
        "a handover left a gap over 1 s: {gaps:?}"
    );
    assert_each_room_once(
        &rig.out,
        Duration::from_secs(2),
        "after the rolling restart",
    );
}

/// Each room key's holder, from etcd.
fn holders(etcd: &Etcd) -> BTreeMap<String, String> {
    etcd.get_prefix("/janus-recorder/rooms/")
        .into_iter()
        .map(|(key, value)| {
            let holding: serde_json::Value = serde_json::from_str(&value).unwrap();
            let room = key.rsplit('/').next().unwrap().to_owned();
            (room, holding["instance"].as_str().unwrap().to_owned())
        })
        .collect()
}

/// The instances watching each room now, from the room manifests still open (a SIGKILLed
/// instance's stay open: `except` it).
fn watching(out: &Path, except: &str) -> BTreeMap<String, Vec<String>> {
    let mut by_room: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in files_under(out) {
        if !p.to_string_lossy().ends_with(".room.json") {
            continue;
        }
        let Ok(m) = serde_json::from_slice::<serde_json::Value>(&fs::read(&p).unwrap()) else {
            continue;
        };
        let by = m["instance"].as_str().unwrap_or_default().to_owned();
        if m["ended_at"].is_null() && by != except {
            by_room.entry(m["room"].to_string()).or_default().push(by);
        }
    }
    by_room
}

/// Thirty rooms (watched, no publishers), one instance with `max_feeds = 3`: it takes three
/// (a room just claimed counts as a feed), the others the rest, evenly; each room watched
/// once; one instance SIGKILLed: every one of its rooms held and watched again within
/// TTL + 2 s, none by the full one.
#[test]
fn thirty_rooms_spread_under_max_feeds_and_move_within_the_ttl() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rooms: Vec<u64> = (2601..2631).collect();
    let mut rig = Rig::with_rooms("fleet30", false, &rooms, false, &[("rec-3", 3)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let held = holders(&rig.etcd);
        let watched = watching(&rig.out, "");
        if held.len() == rooms.len() && watched.len() == rooms.len() {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "not every room held and watched: {held:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for by in held.values() {
        *per.entry(by.as_str()).or_default() += 1;
    }
    println!("30 rooms per instance (rec-3 at max_feeds = 3): {per:?}");
    assert_eq!(
        per.get("rec-3"),
        Some(&3),
        "rec-3 takes three rooms: {per:?}"
    );
    assert!(
        per["rec-1"].abs_diff(per["rec-2"]) <= 2,
        "the others share the rest evenly: {per:?}"
    );
    for (room, by) in watching(&rig.out, "") {
        assert_eq!(by.len(), 1, "room {room} watched by {by:?}");
        assert_eq!(by[0], held[&room], "room {room} watched by its holder");
    }

    let victim = per
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(v, _)| v.to_string())
        .unwrap();
    let moving = per[victim.as_str()];
    let killed = Instant::now();
    let mut dead = rig.daemons.remove(victim.as_str()).unwrap();
    dead.proc.child.kill().unwrap();
    dead.proc.child.wait().unwrap();
    let mut max_twice = 0;
    loop {
        let held = holders(&rig.etcd);
        let watched = watching(&rig.out, &victim);
        max_twice = max_twice.max(watched.values().filter(|by| by.len() > 1).count());
        if held.len() == rooms.len()
            && held.values().all(|by| *by != victim)
            && watched.len() == rooms.len()
        {
            break;
        }
        assert!(
            killed.elapsed() < TTL + Duration::from_secs(2),
            "{victim}'s {moving} rooms not all held and watched again within TTL + 2 s: \
             {} held, {} watched",
            held.values().filter(|by| **by != victim).count(),
            watched.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "SIGKILL of {victim}: its {moving} rooms held and watched again after {:.2} s",
        killed.elapsed().as_secs_f64()
    );
    let full = holders(&rig.etcd)
        .values()
        .filter(|by| *by == "rec-3")
        .count();
    assert_eq!(full, 3, "rec-3 took none past its max_feeds");
    assert_eq!(
        max_twice, 0,
        "a room was watched by two live instances at once"
    );
}

/// etcd with its auth on: an instance with the user and password (the password read from a
/// file, as a secret) holds and watches its room; one with a wrong password holds nothing and
/// says why.
#[test]
fn etcd_credentials_are_used_and_a_wrong_password_is_told() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    require_tools();
    require_etcd();
    let scratch = Scratch::new("fleetauth");
    let dir = scratch.path.clone();
    let ns = Netns::create("fleetauth");
    let room = 2701;
    let _janus = Janus::start(&ns, &dir, &[RoomSpec::new(room, "vp8")]);
    let etcd = Etcd::start(&ns, &dir);
    etcd.enable_auth("rootpw", "recorder:s3cret", "/janus-recorder/");
    let out = dir.join("recordings");
    let start = |name: &str, password: &str| {
        let idir = dir.join(name);
        fs::create_dir_all(&idir).unwrap();
        let secret = idir.join("etcd-password");
        fs::write(&secret, format!("{password}\n")).unwrap();
        let config = format!(
            "{}user = \"recorder\"\npassword = {{ file = \"{}\" }}\n",
            instance_config(&out, &idir, name, CLIENT_URL, &[room]),
            secret.display()
        );
        Daemon::start(&ns, &idir, &config)
    };
    let mut wrong = start("rec-2", "not-it");
    let told = wrong
        .proc
        .wait_for("authentication failed", Duration::from_secs(15));
    assert!(told.contains("WARN"), "told as a warning: {told}");
    let mut right = start("rec-1", "s3cret");
    right
        .proc
        .wait_for("claimed the room", Duration::from_secs(15));
    let keys = etcd
        .ctl_as(
            Some("root:rootpw"),
            &["get", "--prefix", "/janus-recorder/rooms/"],
        )
        .unwrap();
    assert!(keys.contains("\"instance\":\"rec-1\""), "{keys}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !watching(&out, "").contains_key(&room.to_string()) {
        assert!(Instant::now() < deadline, "room {room} not watched");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(watching(&out, "")[&room.to_string()], ["rec-1"]);
    assert!(
        !wrong.proc.log_text().contains("claimed the room"),
        "the wrong password claimed a room"
    );
}
