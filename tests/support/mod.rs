//! Test rig for the integration tests: a network namespace with a veth pair, a real Janus
//! (Debian's 1.1.2) configured from `tests/janus/`, a page server, headless Chromium publishers
//! running `tests/publisher/publisher.html`, the daemon under test, and ffprobe/ffmpeg helpers.
//!
//! Every process runs inside the namespace, so all traffic stays on addresses the test made.
//! Missing tools fail the test with the command that installs them; nothing is skipped.
#![allow(dead_code)] // each test binary uses a different part of the rig

pub mod etcd;
pub mod garage;
pub mod janus_admin;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The two ends of the veth pair inside the namespace.
pub const ADDR_A: &str = "10.201.0.1";
pub const ADDR_B: &str = "10.201.0.2";

/// Fails the test, naming the missing tools and how to install them.
pub fn require_tools() {
    let needed = [
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("janus", "janus"),
        ("janus-pp-rec", "janus-tools"),
        ("chromium", "chromium"),
        ("ffmpeg", "ffmpeg"),
        ("ffprobe", "ffmpeg"),
        ("python3", "python3"),
    ];
    let missing: Vec<_> = needed.iter().filter(|(bin, _)| !on_path(bin)).collect();
    assert!(
        missing.is_empty(),
        "missing tools {:?}: run `scripts/setup.sh` (or `apt-get install -y {}`)",
        missing.iter().map(|(b, _)| *b).collect::<Vec<_>>(),
        missing
            .iter()
            .map(|(_, p)| *p)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for file in [
        "/usr/share/javascript/janus-gateway/janus.min.js",
        "/usr/share/javascript/webrtc-adapter/adapter.min.js",
    ] {
        assert!(
            Path::new(file).exists(),
            "{file} is missing: run `scripts/setup.sh` (or `apt-get install -y janus-demos`)"
        );
    }
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the integration tests create network namespaces and must run as root"
    );
}

/// Fails the test unless `systemd-analyze` is there, saying how to install it.
pub fn require_systemd_analyze() {
    assert!(
        Path::new("/usr/bin/systemd-analyze").exists(),
        "systemd-analyze not found: run `scripts/setup.sh` (or `apt-get install -y systemd`)"
    );
}

/// `systemd-analyze verify` has nothing to say about `unit`, and `systemd-analyze security`
/// scores it 2.0 or lower.
pub fn assert_unit_verifies_and_is_hardened(unit: &Path) {
    require_systemd_analyze();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify {}: {complaints}",
        unit.display()
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level for {} in:\n{text}", unit.display()));
    assert!(
        score <= 2.0,
        "{}: exposure {score} > 2.0:\n{text}",
        unit.display()
    );
}

fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scratch directory for one test, removed at the end unless `JRT_KEEP=1` is set (then its
/// path is printed so the logs and recordings can be read).
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("jrt-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("scratch dir");
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("JRT_KEEP").is_some() || std::thread::panicking() {
            eprintln!("test files kept in {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// A network namespace with `lo` up and a veth pair `va` (ADDR_A) / `vb` (ADDR_B), both inside.
/// Dropping it kills whatever still runs inside and deletes it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(tag: &str) -> Netns {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "jrt-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        for args in [
            "ip link set lo up",
            "ip link add va type veth peer name vb",
            &format!("ip addr add {ADDR_A}/24 dev va"),
            &format!("ip addr add {ADDR_B}/24 dev vb"),
            "ip link set va up",
            "ip link set vb up",
        ] {
            run_ok(&mut ns.command_line(args));
        }
        ns
    }

    fn command_line(&self, line: &str) -> Command {
        let mut words = line.split_whitespace();
        let mut cmd = self.command(words.next().unwrap());
        cmd.args(words);
        cmd
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` execs it, so the
    /// child's pid is the program's own).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process whose combined output goes to a log file that the test can search.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let file = fs::File::create(&log).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until a log line contains `needle`; returns that line. Fails with the log's tail.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_nth(needle, 1, timeout)
    }

    /// Waits until `n` log lines contain `needle`; returns the n-th.
    pub fn wait_for_nth(&mut self, needle: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_text();
            if let Some(line) = text.lines().filter(|l| l.contains(needle)).nth(n - 1) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before logging {needle:?}; log:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not log {needle:?} within {timeout:?}; log:\n{}",
                self.name,
                self.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the status and how long it took.
    pub fn terminate(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, start.elapsed());
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.name,
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A room in Janus's VideoRoom configuration.
#[derive(Debug, Clone)]
pub struct RoomSpec {
    pub id: u64,
    pub videocodec: &'static str,
    pub pin: Option<&'static str>,
    /// Janus's own recorder on (`record = true`), files under `<janus dir>/rec`.
    pub record: bool,
}

impl RoomSpec {
    pub fn new(id: u64, videocodec: &'static str) -> RoomSpec {
        RoomSpec {
            id,
            videocodec,
            pin: None,
            record: false,
        }
    }
}

/// A test CA and a server certificate it signed for `127.0.0.1` (made with openssl), and the
/// port Janus serves `wss://` on.
pub struct WssSetup {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub port: u16,
}

impl WssSetup {
    pub fn create(dir: &Path, port: u16) -> WssSetup {
        assert!(
            Command::new("openssl").arg("version").output().is_ok(),
            "openssl is missing: apt-get install openssl (or run scripts/setup.sh)"
        );
        let tls = dir.join("tls");
        fs::create_dir_all(&tls).unwrap();
        let p = |name: &str| tls.join(name).to_str().unwrap().to_owned();
        let ext = p("san.cnf");
        fs::write(&ext, "subjectAltName = IP:127.0.0.1\n").unwrap();
        for args in [
            vec![
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=janus-recorder test CA",
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.pem"),
            ],
            vec![
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &p("server.key"),
                "-out",
                &p("server.csr"),
            ],
            vec![
                "x509",
                "-req",
                "-in",
                &p("server.csr"),
                "-CA",
                &p("ca.pem"),
                "-CAkey",
                &p("ca.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &p("server.pem"),
            ],
        ] {
            let out = Command::new("openssl")
                .args(&args)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        WssSetup {
            ca: tls.join("ca.pem"),
            cert: tls.join("server.pem"),
            key: tls.join("server.key"),
            port,
        }
    }
}

/// A running Janus with the test configuration from `tests/janus/` and the given rooms.
pub struct Janus {
    pub proc: Proc,
    /// Where rooms with `record = true` write their `.mjr` files.
    pub rec_dir: PathBuf,
    conf: PathBuf,
    dir: PathBuf,
    starts: u32,
}

impl Janus {
    pub fn start(ns: &Netns, dir: &Path, rooms: &[RoomSpec]) -> Janus {
        Janus::start_with(ns, dir, rooms, None)
    }

    /// Like [`Janus::start`], with Janus's `session_timeout` (seconds) set.
    pub fn start_with(
        ns: &Netns,
        dir: &Path,
        rooms: &[RoomSpec],
        session_timeout: Option<u32>,
    ) -> Janus {
        Janus::start_full(ns, dir, rooms, session_timeout, 8188, None)
    }

    /// Like [`Janus::start`], with secure WebSockets too: `wss://127.0.0.1:<tls.port>` with the
    /// given certificate and key (plain `ws://` stays on 8188).
    pub fn start_wss(ns: &Netns, dir: &Path, rooms: &[RoomSpec], tls: &WssSetup) -> Janus {
        Janus::start_full(ns, dir, rooms, None, 8188, Some(tls))
    }

    /// A second Janus in the same namespace: its files under `dir`, WebSockets on `ws_port`.
    pub fn start_second(ns: &Netns, dir: &Path, rooms: &[RoomSpec], ws_port: u16) -> Janus {
        fs::create_dir_all(dir).unwrap();
        Janus::start_full(ns, dir, rooms, None, ws_port, None)
    }

    fn start_full(
        ns: &Netns,
        dir: &Path,
        rooms: &[RoomSpec],
        session_timeout: Option<u32>,
        ws_port: u16,
        wss: Option<&WssSetup>,
    ) -> Janus {
        let conf = dir.join("janus-conf");
        let rec_dir = dir.join("janus-rec");
        fs::create_dir_all(&conf).unwrap();
        fs::create_dir_all(&rec_dir).unwrap();
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/janus");
        let mut ws = fs::read_to_string(templates.join("janus.transport.websockets.jcfg"))
            .unwrap()
            .replace("ws_port = 8188", &format!("ws_port = {ws_port}"));
        if let Some(tls) = wss {
            ws = ws.replacen(
                "\twss = false",
                &format!(
                    "\twss = true\n\twss_port = {}\n\twss_ip = \"127.0.0.1\"",
                    tls.port
                ),
                1,
            );
            ws.push_str(&format!(
                "certificates: {{\n\tcert_pem = \"{}\"\n\tcert_key = \"{}\"\n}}\n",
                tls.cert.display(),
                tls.key.display()
            ));
        }
        fs::write(conf.join("janus.transport.websockets.jcfg"), ws).unwrap();
        let mut core = fs::read_to_string(templates.join("janus.jcfg")).unwrap();
        if let Some(t) = session_timeout {
            core = core.replacen(
                "general: {",
                &format!("general: {{\n\tsession_timeout = {t}"),
                1,
            );
        }
        fs::write(conf.join("janus.jcfg"), core).unwrap();
        fs::write(
            conf.join("janus.plugin.videoroom.jcfg"),
            videoroom_config(rooms, &rec_dir),
        )
        .unwrap();
        let proc = Janus::spawn(ns, &conf, &dir.join("janus.log"));
        Janus {
            proc,
            rec_dir,
            conf,
            dir: dir.to_path_buf(),
            starts: 1,
        }
    }

    fn spawn(ns: &Netns, conf: &Path, log: &Path) -> Proc {
        let mut cmd = ns.command("janus");
        cmd.arg("-F")
            .arg(conf)
            .arg("-C")
            .arg(conf.join("janus.jcfg"));
        let mut proc = Proc::spawn("janus", cmd, log.to_path_buf());
        proc.wait_for("WebSockets thread started", Duration::from_secs(20));
        proc
    }

    /// Kills Janus (SIGKILL, as a crash) and starts it again with the same configuration.
    pub fn crash_and_restart(&mut self, ns: &Netns) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        self.starts += 1;
        let log = self.dir.join(format!("janus-{}.log", self.starts));
        self.proc = Janus::spawn(ns, &self.conf, &log);
    }
}

/// The VideoRoom plugin's configuration for `rooms`.
pub fn videoroom_config(rooms: &[RoomSpec], rec_dir: &Path) -> String {
    let mut text = String::from("general: {\n}\n");
    for r in rooms {
        text.push_str(&format!(
            "room-{}: {{\n\tdescription = \"Test room {}\"\n\tpublishers = 16\n\taudiocodec = \"opus\"\n\tvideocodec = \"{}\"\n\trecord = {}\n\trec_dir = \"{}\"\n",
            r.id,
            r.id,
            r.videocodec,
            r.record,
            rec_dir.display()
        ));
        if let Some(pin) = r.pin {
            text.push_str(&format!("\tpin = \"{pin}\"\n"));
        }
        text.push_str("}\n");
    }
    text
}

/// Serves `tests/publisher/publisher.html` and janus.js on 127.0.0.1:8000 inside the namespace.
pub struct PageServer {
    proc: Proc,
    /// Files created here (`control/NAME`) end a publisher's cycle.
    pub control_dir: PathBuf,
}

impl PageServer {
    pub fn start(ns: &Netns, dir: &Path) -> PageServer {
        let www = dir.join("www");
        let control_dir = www.join("control");
        fs::create_dir_all(&control_dir).unwrap();
        fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/publisher/publisher.html"),
            www.join("publisher.html"),
        )
        .unwrap();
        for (name, target) in [
            (
                "janus.min.js",
                "/usr/share/javascript/janus-gateway/janus.min.js",
            ),
            (
                "adapter.min.js",
                "/usr/share/javascript/webrtc-adapter/adapter.min.js",
            ),
        ] {
            std::os::unix::fs::symlink(target, www.join(name)).unwrap();
        }
        let mut cmd = ns.command("python3");
        cmd.args(["-u", "-m", "http.server", "8000", "--bind", "127.0.0.1"])
            .arg("--directory")
            .arg(&www);
        let mut proc = Proc::spawn("page server", cmd, dir.join("http.log"));
        proc.wait_for("Serving HTTP", Duration::from_secs(10));
        PageServer { proc, control_dir }
    }
}

/// How every test runs Chromium: headless as root, no network of its own (no QUIC, no
/// background requests, updates or sync).
pub const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// What a Chromium publisher does.
#[derive(Debug, Clone)]
pub struct PublisherSpec {
    pub room: u64,
    pub display: String,
    pub pin: Option<String>,
    pub audio: bool,
    pub video: bool,
    /// Each cycle lasts this long; `None` = until [`Publisher::stop`].
    pub secs: Option<u32>,
    /// "unpublish" or "leave" at the end of the last cycle.
    pub end: &'static str,
    pub cycles: u32,
    /// Join and publish again when the connection to Janus is lost (Janus restarted).
    pub rejoin: bool,
    /// More query parameters for the page (`vcodec`, `size`, `simulcast`, `svc`, `measure`).
    pub query: Vec<(&'static str, String)>,
    /// Fake camera and microphone from files (`.y4m`, `.wav`) instead of Chromium's own.
    pub media_files: Option<(PathBuf, PathBuf)>,
}

impl PublisherSpec {
    pub fn new(room: u64, display: &str) -> PublisherSpec {
        PublisherSpec {
            room,
            display: display.to_string(),
            pin: None,
            audio: true,
            video: true,
            secs: None,
            end: "unpublish",
            cycles: 1,
            rejoin: false,
            query: Vec::new(),
            media_files: None,
        }
    }
}

/// A headless Chromium publishing its fake camera and microphone with janus.js.
pub struct Publisher {
    pub proc: Proc,
    pub spec: PublisherSpec,
    control: PathBuf,
}

impl Publisher {
    pub fn start(ns: &Netns, page: &PageServer, dir: &Path, spec: PublisherSpec) -> Publisher {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let id = format!("pub{}", COUNTER.fetch_add(1, Ordering::Relaxed));
        let profile = dir.join(format!("chromium-{id}"));
        let mut url = format!(
            "http://127.0.0.1:8000/publisher.html?room={}&name={}&audio={}&video={}&secs={}&end={}&cycles={}&control={id}",
            spec.room,
            percent_encode(&spec.display),
            u8::from(spec.audio),
            u8::from(spec.video),
            spec.secs.unwrap_or(0),
            spec.end,
            spec.cycles,
        );
        if let Some(pin) = &spec.pin {
            url.push_str(&format!("&pin={}", percent_encode(pin)));
        }
        if spec.rejoin {
            url.push_str("&rejoin=1");
        }
        for (k, v) in &spec.query {
            url.push_str(&format!("&{k}={}", percent_encode(v)));
        }
        let mut cmd = ns.command("chromium");
        cmd.args(CHROMIUM_FLAGS)
            .args([
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()));
        if let Some((video, audio)) = &spec.media_files {
            cmd.arg(format!(
                "--use-file-for-fake-video-capture={}",
                video.display()
            ))
            .arg(format!(
                "--use-file-for-fake-audio-capture={}",
                audio.display()
            ));
        }
        cmd.arg(url);
        let proc = Proc::spawn(&id, cmd, dir.join(format!("{id}.log")));
        Publisher {
            proc,
            control: page.control_dir.join(&id),
            spec,
        }
    }

    /// Waits until the n-th publication's PeerConnection is up; returns when (page clock).
    pub fn wait_published(&mut self, n: usize) -> SystemTime {
        let line = self
            .proc
            .wait_for_nth("JRT-PUBLISHED", n, Duration::from_secs(30));
        page_time(&line)
    }

    /// Waits until the n-th unpublish (or the final leave) was acknowledged; returns when.
    pub fn wait_ended(&mut self, n: usize, timeout: Duration) -> SystemTime {
        let marker = if self.spec.end == "leave" && n as u32 == self.spec.cycles {
            "JRT-LEFT"
        } else {
            "JRT-UNPUBLISHED"
        };
        let nth = if marker == "JRT-LEFT" { 1 } else { n };
        page_time(&self.proc.wait_for_nth(marker, nth, timeout))
    }

    /// The publisher's feed id in its room (once joined).
    pub fn feed_id(&mut self) -> u64 {
        let line = self.proc.wait_for("JRT-JOINED", Duration::from_secs(30));
        line.split("JRT-JOINED ")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no feed id in {line:?}"))
    }

    /// Ends the current cycle now (unpublish, or leave on the last cycle).
    pub fn stop(&self) {
        fs::write(&self.control, b"stop").unwrap();
    }
}

/// Starts a publisher per spec, each once the one before has published (encoders starting
/// together fill both cores for seconds), then waits until each has ended its first cycle.
pub fn publish_in_turn(
    ns: &Netns,
    page: &PageServer,
    dir: &Path,
    specs: Vec<PublisherSpec>,
) -> Vec<Publisher> {
    let mut running: Vec<Publisher> = specs
        .into_iter()
        .map(|spec| {
            let mut p = Publisher::start(ns, page, dir, spec);
            p.wait_published(1);
            p
        })
        .collect();
    for p in &mut running {
        p.wait_ended(1, Duration::from_secs(60));
    }
    running
}

/// The timestamp after a `JRT-...` marker (the page's `Date.now()`).
fn page_time(line: &str) -> SystemTime {
    let ms: u64 = line
        .split("JRT-")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|t| t.trim_end_matches(['"', ',']).parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The daemon's config for a test: the namespace's Janus (`ws://127.0.0.1:8188`), recordings
/// under `out`, our host candidate on [`ADDR_B`]; `output_extra` is more `[output]` lines and
/// `rest` the tables after `[network]` (`[[rooms]]`, `[metrics]`).
pub fn recorder_config(out: &Path, output_extra: &str, rest: &str) -> String {
    format!(
        "[janus]\nurl = \"ws://127.0.0.1:8188\"\n[output]\ndir = \"{}\"\n{output_extra}\
         [network]\nadvertise = [\"{ADDR_B}\"]\n{rest}",
        out.display()
    )
}

/// `[[rooms]]` tables for `ids`.
pub fn rooms_toml(ids: &[u64]) -> String {
    ids.iter()
        .map(|r| format!("[[rooms]]\nroom = {r}\n"))
        .collect()
}

/// The daemon under test, started inside the namespace with a config file written by the test.
pub struct Daemon {
    pub proc: Proc,
    pub config: PathBuf,
}

impl Daemon {
    pub fn start(ns: &Netns, dir: &Path, config: &str) -> Daemon {
        Daemon::start_env(ns, dir, config, &[])
    }

    /// [`Daemon::start`], then waits until it watches `rooms` rooms (its log says so for each).
    pub fn watching(ns: &Netns, dir: &Path, config: &str, rooms: usize) -> Daemon {
        let mut daemon = Daemon::start(ns, dir, config);
        daemon
            .proc
            .wait_for_nth("watching room", rooms, Duration::from_secs(30));
        daemon
    }

    /// [`Daemon::start`] with more environment (`NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub fn start_env(
        ns: &Netns,
        dir: &Path,
        config: &str,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Daemon {
        let path = dir.join("janus-recorder.toml");
        fs::write(&path, config).unwrap();
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_janus-recorder"));
        cmd.arg("run").arg("--config").arg(&path).env(
            "RUST_LOG",
            std::env::var("JRT_RUST_LOG").unwrap_or_else(|_| "info,janus_recorder=debug".into()),
        );
        cmd.envs(env.iter().copied());
        let proc = Proc::spawn("janus-recorder", cmd, dir.join("janus-recorder.log"));
        Daemon { proc, config: path }
    }
}

/// A stream as ffprobe sees it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProbeStream {
    pub codec_type: String,
    pub codec_name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// ffprobe's view of a file: its streams and duration in seconds.
pub fn probe(path: &Path) -> (Vec<ProbeStream>, f64) {
    #[derive(serde::Deserialize)]
    struct Out {
        streams: Vec<ProbeStream>,
        format: Format,
    }
    #[derive(serde::Deserialize)]
    struct Format {
        duration: Option<String>,
    }
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Out = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let duration = parsed
        .format
        .duration
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("ffprobe gives no duration for {}", path.display()));
    (parsed.streams, duration)
}

/// Decodes every frame with ffmpeg; returns what ffmpeg printed at level `error` (empty = clean).
pub fn decode_errors(path: &Path) -> String {
    decode_errors_with(path, &[])
}

/// [`decode_errors`] with more output options (`-map 0` decodes every stream, not one of each
/// kind).
pub fn decode_errors_with(path: &Path, options: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(options)
        // Keep the file's 1 ms time base: at the nominal frame rate's time base, two frames
        // with capture jitter can round to one tick and the null muxer reports that as an error.
        .args(["-enc_time_base:v", "-1", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    text
}

/// Whether the first video packet of the file is flagged as a keyframe (ffprobe's view).
pub fn first_video_packet_is_key(path: &Path) -> bool {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().is_some_and(|l| l.starts_with('K'))
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Lines of a log file that contain `needle`.
pub fn lines_with(path: &Path, needle: &str) -> Vec<String> {
    let Ok(f) = fs::File::open(path) else {
        return Vec::new();
    };
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.contains(needle))
        .collect()
}

/// Runs `f` on a thread that has entered the namespace's network stack, so sockets it opens
/// reach Janus on the namespace's loopback.
pub fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_named_netns(&ns.name, f)
}

/// Runs `fut` to its end on a current-thread tokio runtime of its own (the tests' threads
/// are plain threads, several of them inside a namespace).
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(fut)
}

/// [`in_netns`] for async code: the future is made and run on the namespace's thread.
pub fn block_on_in_netns<T: Send + 'static, F: std::future::Future<Output = T>>(
    ns: &Netns,
    make: impl FnOnce() -> F + Send + 'static,
) -> T {
    in_netns(ns, move || block_on(make()))
}

/// [`in_netns`] by the namespace's name.
pub fn in_named_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_netns(name, f)
        .join()
        .expect("thread inside the namespace panicked")
}

/// Starts `f` on a thread that has entered the network stack of the namespace `name` (the
/// threads it starts are in it too).
pub fn spawn_in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        let fd = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

/// The events of the daemon's `GET /api/v1/events` at `addr` (with a bearer `token`, if
/// any), collected from now on by a thread inside the namespace.
pub fn follow_events(
    ns: &Netns,
    addr: &str,
    token: Option<&str>,
) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
    let events: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = Default::default();
    let seen = events.clone();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let addr = addr.to_owned();
    spawn_in_netns(&ns.name, move || {
        use std::io::Write;
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            stream,
            "GET /api/v1/events HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
        )
        .unwrap();
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if let Some(data) = line.strip_prefix("data: ")
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
            {
                seen.lock().unwrap().push(v);
            }
        }
    });
    events
}

/// The events of one `type` among those [`follow_events`] collected.
pub fn events_of(
    events: &std::sync::Mutex<Vec<serde_json::Value>>,
    kind: &str,
) -> Vec<serde_json::Value> {
    events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .cloned()
        .collect()
}

/// Sends one VideoRoom request (e.g. `kick`, `destroy`) to the namespace's Janus, as an
/// administrator would, with the daemon's own Janus client; returns the plugin's answer.
pub fn videoroom_request(ns: &Netns, body: serde_json::Value) -> serde_json::Value {
    videoroom_request_at(ns, "ws://127.0.0.1:8188", body)
}

/// [`videoroom_request`] to the Janus at `url`.
pub fn videoroom_request_at(ns: &Netns, url: &str, body: serde_json::Value) -> serde_json::Value {
    let url = url.to_owned();
    block_on_in_netns(ns, move || async move {
        let session =
            janus_recorder::janus::Session::connect(&url, Default::default(), &Default::default())
                .await
                .expect("connect to Janus");
        let handle = session.attach_videoroom().await.expect("attach");
        let (answer, _) = handle
            .message(body.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("{body}: {e}"));
        session.destroy().await;
        answer
    })
}

/// Fails the test unless ffmpeg and ffprobe are installed.
pub fn require_ffmpeg() {
    for bin in ["ffmpeg", "ffprobe"] {
        assert!(
            on_path(bin),
            "{bin} not found: run `scripts/setup.sh` (or `apt-get install -y ffmpeg`)"
        );
    }
}

/// Fails the test unless mkvmerge (mkvtoolnix) is installed.
pub fn require_mkvmerge() {
    assert!(
        on_path("mkvmerge"),
        "mkvmerge not found: run `scripts/setup.sh` (or `apt-get install -y mkvtoolnix`)"
    );
}

/// Packets per stream kind as ffprobe counts them: (audio, video).
pub fn packet_counts(path: &Path) -> (u64, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_packets",
            "-show_entries",
            "stream=codec_type,nb_read_packets",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let count = |kind: &str| -> u64 {
        v["streams"]
            .as_array()
            .map(|streams| {
                streams
                    .iter()
                    .filter(|s| s["codec_type"] == kind)
                    .filter_map(|s| s["nb_read_packets"].as_str()?.parse::<u64>().ok())
                    .sum()
            })
            .unwrap_or(0)
    };
    (count("audio"), count("video"))
}

/// Whether the check tool's report agrees with ffprobe on `path`: the same frame counts, and
/// durations within `one_frame` seconds. Returns the disagreement, if any.
pub fn agreement_with_ffprobe(
    path: &Path,
    report: &janus_recorder::check::FileReport,
    one_frame: f64,
) -> Option<String> {
    let (audio, video) = packet_counts(path);
    let frames = |kind: &str| -> u64 {
        report
            .tracks
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.frames)
            .sum()
    };
    let (_, seconds) = probe(path);
    let ours = report.duration_ms.unwrap_or(0) as f64 / 1000.0;
    if frames("audio") != audio || frames("video") != video {
        Some(format!(
            "{}: check counts {}+{} frames, ffprobe {audio}+{video}",
            path.display(),
            frames("audio"),
            frames("video")
        ))
    } else if (ours - seconds).abs() > one_frame + 0.001 {
        Some(format!(
            "{}: check says {ours} s, ffprobe {seconds} s",
            path.display()
        ))
    } else {
        None
    }
}

/// GETs `path` from `addr` inside the namespace; returns the response body.
pub fn http_get(ns: &Netns, addr: &str, path: &str) -> String {
    let r = http_request(ns, addr, path, &[]);
    assert_eq!(r.status, 200, "{}", r.head);
    String::from_utf8_lossy(&r.body).into_owned()
}

/// An HTTP answer: its status, its head (status line and headers) and its body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// GETs `path` from `addr` inside the namespace with more `headers` (`Name: value`).
pub fn http_request(ns: &Netns, addr: &str, path: &str, headers: &[&str]) -> HttpAnswer {
    use std::io::{Read, Write};
    let (addr, path) = (addr.to_string(), path.to_string());
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    in_netns(ns, move || {
        let mut stream =
            std::net::TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n"
        )
        .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(response.len());
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let body = response.get(split + 4..).unwrap_or_default().to_vec();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        HttpAnswer { status, head, body }
    })
}

/// The value of a Prometheus sample (`name` with its labels, as printed), or 0.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == sample).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// The synthetic publisher's clip that `scripts/setup.sh` makes; fails saying how to make it.
pub fn require_clip() -> PathBuf {
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("media/clip.webm");
    assert!(
        clip.is_file(),
        "{} is missing: run `scripts/setup.sh` (or `scripts/make-clip.sh`)",
        clip.display()
    );
    clip
}

/// `janus-recorder publish` inside the namespace: `count` synthetic publishers named
/// `display-1..` (or `display` alone) in `room`, for `seconds`, with `extra` arguments.
pub fn synthetic_publishers(
    ns: &Netns,
    dir: &Path,
    room: u64,
    display: &str,
    count: u32,
    seconds: f64,
    extra: &[&str],
) -> Proc {
    let mut cmd = ns.command(env!("CARGO_BIN_EXE_janus-recorder"));
    cmd.args([
        "publish",
        "--url",
        "ws://127.0.0.1:8188",
        "--advertise",
        ADDR_A,
    ])
    .arg("--room")
    .arg(room.to_string())
    .arg("--display")
    .arg(display)
    .arg("--count")
    .arg(count.to_string())
    .arg("--seconds")
    .arg(seconds.to_string())
    .args(extra);
    if !extra.contains(&"--media") {
        cmd.arg("--media").arg(require_clip());
    }
    cmd.env("RUST_LOG", "info,janus_recorder=debug");
    Proc::spawn(
        &format!("publish {display}"),
        cmd,
        dir.join(format!("publish-{display}.log")),
    )
}

/// Runs `count` synthetic publishers held until a subscriber asks for a keyframe (`--hold`)
/// for `seconds`, waits for them to leave, and returns their report (`--report`): the frames
/// each one sent. Fails with their log if they fail.
pub fn publish_held(
    ns: &Netns,
    dir: &Path,
    room: u64,
    display: &str,
    count: u32,
    seconds: f64,
    extra: &[&str],
) -> serde_json::Value {
    let report = dir.join(format!("sent-{display}.json"));
    let mut args = vec!["--hold", "--report", report.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut publish = synthetic_publishers(ns, dir, room, display, count, seconds, &args);
    let status = wait_exit(&mut publish, Duration::from_secs(seconds as u64 + 40));
    assert!(
        status.success(),
        "publish: {status}\n{}",
        publish.log_tail(30)
    );
    serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap()
}

/// Waits for a process to exit by itself; fails with its log after `timeout`.
pub fn wait_exit(proc: &mut Proc, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = proc.child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not exit within {timeout:?}; log:\n{}",
            proc.name,
            proc.log_tail(60)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The recordings of `display` under `out`, oldest first, with their sidecars.
pub fn recordings_of(out: &Path, display: &str) -> Vec<(PathBuf, serde_json::Value)> {
    let mut found: Vec<(PathBuf, serde_json::Value)> = files_under(out)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "webm" || e == "mkv"))
        .filter_map(|f| {
            let sidecar: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(f.with_extension("json")).ok()?).ok()?;
            (sidecar["display"] == display).then_some((f, sidecar))
        })
        .collect();
    found.sort_by(|a, b| a.1["started_at"].as_str().cmp(&b.1["started_at"].as_str()));
    found
}

/// Converts Janus's own recording (`record = true`) of `feed`'s video (or of the first video
/// found) with janus-pp-rec into `out`; fails if there is none or janus-pp-rec fails.
pub fn janus_pp_rec_video(rec_dir: &Path, feed: Option<&str>, out: &Path) -> PathBuf {
    let mjrs: Vec<PathBuf> = files_under(rec_dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "mjr"))
        .collect();
    let video = mjrs
        .iter()
        .find(|f| {
            let name = f.to_string_lossy();
            name.contains("-video") && feed.is_none_or(|f| name.contains(&format!("-{f}-")))
        })
        .unwrap_or_else(|| panic!("Janus recorded no video of feed {feed:?}: {mjrs:?}"));
    let result = Command::new("janus-pp-rec")
        .arg(video)
        .arg(out)
        .output()
        .expect("janus-pp-rec");
    assert!(
        result.status.success(),
        "janus-pp-rec failed: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    out.to_path_buf()
}

/// The address [`lossy_address`] gives the daemon.
pub const LOSSY_ADDR: &str = "10.201.0.3";
/// The daemon's media port on [`LOSSY_ADDR`] (below the ephemeral range Janus's ports come from).
pub const LOSSY_PORT: u16 = 20_000;

/// The command that gives the daemon's side of a namespace the address [`LOSSY_ADDR`].
fn add_lossy_addr() -> String {
    format!("ip addr add {LOSSY_ADDR}/24 dev vb")
}

/// `config` (from [`recorder_config`]) with the daemon's media on [`LOSSY_ADDR`]:[`LOSSY_PORT`].
pub fn on_lossy_address(config: &str) -> String {
    config.replace(ADDR_B, LOSSY_ADDR).replacen(
        "[network]\n",
        &format!("[network]\nport = {LOSSY_PORT}\n"),
        1,
    )
}

/// Gives the daemon's side of `ns` the address [`LOSSY_ADDR`] and drops `percent`% of the
/// UDP packets sent to the daemon's port there (nftables' random numbers: this kernel has no
/// netem): Janus's packets to the recorder, retransmissions included, and nothing else. The
/// port matters: Janus gathers a candidate on that address too and talks to the daemon from
/// it, so a rule on the address alone dropped our NACKs, reports and PLIs as well.
pub fn lossy_address(ns: &Netns, percent: u32) {
    ns_commands(
        ns,
        &[
            add_lossy_addr(),
            "nft add table inet loss".to_string(),
            "nft add chain inet loss input { type filter hook input priority 0 ; }".to_string(),
        ],
    );
    add_loss(ns, percent);
}

/// Drops `percent`% more of the UDP packets to the daemon (see [`lossy_address`]).
pub fn add_loss(ns: &Netns, percent: u32) {
    let share = if percent >= 100 {
        String::new()
    } else {
        format!("numgen random mod 100 < {percent} ")
    };
    ns_commands(
        ns,
        &[format!(
            "nft add rule inet loss input ip daddr {LOSSY_ADDR} udp dport {LOSSY_PORT} {share}drop"
        )],
    );
}

/// Every UDP datagram to the daemon's port on [`LOSSY_ADDR`] held for a while before the
/// kernel delivers it (a netfilter queue read by a thread of the test, since this kernel has
/// no netem): Janus's media reaches the daemon late, after Janus's events about it, as it
/// does from a loaded Janus. Ends (every held datagram delivered) when dropped.
pub struct MediaDelay {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The netfilter queue [`delay_media`] uses.
const DELAY_QUEUE: u16 = 7;

/// Gives the daemon's side of `ns` the address [`LOSSY_ADDR`] and delays by `delay` every
/// datagram to the daemon's port there (use [`on_lossy_address`] for the daemon's config).
pub fn delay_media(ns: &Netns, delay: Duration) -> MediaDelay {
    assert!(
        on_path("iptables-legacy"),
        "iptables-legacy not found: run `scripts/setup.sh` (or `apt-get install -y iptables`)"
    );
    ns_commands(
        ns,
        &[
            add_lossy_addr(),
            format!(
                "iptables-legacy -A INPUT -d {LOSSY_ADDR} -p udp --dport {LOSSY_PORT} \
                 -j NFQUEUE --queue-num {DELAY_QUEUE} --queue-bypass"
            ),
        ],
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let thread = spawn_in_netns(&ns.name, move || {
        let mut queue = nfq::Queue::open().expect("a netfilter queue socket");
        queue
            .bind(DELAY_QUEUE)
            .expect("binding the netfilter queue");
        queue.set_nonblocking(true);
        ready_tx.send(()).unwrap();
        let mut held = std::collections::VecDeque::<(Instant, nfq::Message)>::new();
        loop {
            let stopped = stopping.load(Ordering::Relaxed);
            loop {
                match queue.recv() {
                    Ok(msg) => held.push_back((Instant::now() + delay, msg)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("reading the netfilter queue: {e}"),
                }
            }
            let now = Instant::now();
            while held.front().is_some_and(|(due, _)| stopped || *due <= now) {
                let (_, mut msg) = held.pop_front().expect("a front");
                msg.set_verdict(nfq::Verdict::Accept);
                queue.verdict(msg).expect("a verdict");
            }
            if stopped {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    ready
        .recv_timeout(Duration::from_secs(5))
        .expect("the netfilter queue is read");
    MediaDelay {
        stop,
        thread: Some(thread),
    }
}

impl Drop for MediaDelay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs each command line (split at spaces) inside `ns`; fails with its stderr.
fn ns_commands(ns: &Netns, lines: &[String]) {
    for line in lines {
        let mut words = line.split_whitespace();
        let out = ns
            .command(words.next().unwrap())
            .args(words)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{line}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The frames each publisher of `report` (a synthetic publisher's `--report`) sent are the
/// frames of its one recording, which starts with a keyframe, checks clean and decodes
/// without an error.
pub fn assert_every_frame_recorded(out: &Path, report: &serde_json::Value) {
    use janus_recorder::check::{CheckOptions, Status, check_file};
    let feeds = report["feeds"].as_array().unwrap();
    assert!(!feeds.is_empty(), "{report:#}");
    for feed in feeds {
        let display = feed["display"].as_str().unwrap();
        assert!(feed["error"].is_null(), "{display}: {feed}");
        let recs = recordings_of(out, display);
        assert_eq!(recs.len(), 1, "{display}: {recs:#?}");
        let (file, sidecar) = &recs[0];
        for key in ["audio_frames", "video_frames"] {
            assert_eq!(sidecar[key], feed[key], "{display} {key}: {sidecar:#}");
        }
        assert!(first_video_packet_is_key(file), "{}", file.display());
        let check = check_file(file, &CheckOptions::default());
        assert_eq!(check.status, Status::Ok, "{}", check.human());
        assert_eq!(decode_errors(file), "", "{}", file.display());
    }
}

/// Two publishers ("stay", `seconds` long, held until recorded) from start to end while
/// `visitors` others ("visit1", ...) join and leave one after another, 2 s each;
/// `while_staying` runs once the two record. Waits until every recording finished (the
/// daemon goes on) and gives every publisher's report, the stayers' first.
pub fn stayers_and_visitors(
    ns: &Netns,
    dir: &Path,
    room: u64,
    daemon: &mut Daemon,
    (seconds, visitors): (f64, u32),
    while_staying: impl FnOnce(),
) -> Vec<serde_json::Value> {
    let stay_report = dir.join("sent-stay.json");
    let mut stayers = synthetic_publishers(
        ns,
        dir,
        room,
        "stay",
        2,
        seconds,
        &["--hold", "--report", stay_report.to_str().unwrap()],
    );
    daemon
        .proc
        .wait_for_nth("recording started", 2, Duration::from_secs(20));
    while_staying();
    let mut reports = Vec::new();
    for i in 1..=visitors {
        reports.push(publish_held(
            ns,
            dir,
            room,
            &format!("visit{i}"),
            1,
            2.0,
            &[],
        ));
    }
    let status = wait_exit(&mut stayers, Duration::from_secs(seconds as u64 + 30));
    assert!(status.success(), "{}", stayers.log_tail(30));
    daemon.proc.wait_for_nth(
        "recording finished",
        2 + visitors as usize,
        Duration::from_secs(15),
    );
    reports.insert(
        0,
        serde_json::from_str(&fs::read_to_string(&stay_report).unwrap()).unwrap(),
    );
    reports
}
