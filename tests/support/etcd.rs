//! A real etcd for the fleet tests: Debian's `etcd-server` (which `scripts/setup.sh`
//! installs), a single member started inside the test's namespace on its loopback with its
//! data in a scratch directory. A missing `etcd` fails the test with how to install it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Netns, Proc};

/// Where etcd serves its clients inside the namespace.
pub const CLIENT_URL: &str = "http://127.0.0.1:2379";
const PEER_URL: &str = "http://127.0.0.1:2380";

/// The `etcd` binary; fails the test, saying how to install it, when there is none.
pub fn require_etcd() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file());
    found.expect(
        "etcd is missing: run `scripts/setup.sh` (or `apt-get install etcd-server etcd-client`)",
    )
}

/// One etcd member.
pub struct Etcd {
    pub proc: Proc,
    bin: PathBuf,
    dir: PathBuf,
    ns_name: String,
    /// Where it serves clients (comma-separated URLs).
    listen: String,
}

impl Etcd {
    /// Starts etcd in `ns` with its data under `dir/etcd` and waits until it answers.
    pub fn start(ns: &Netns, dir: &Path) -> Etcd {
        Etcd::start_on(ns, dir, &[CLIENT_URL])
    }

    /// [`Etcd::start`] serving clients on each of `urls` (the first is [`CLIENT_URL`]):
    /// one address per client, so that a test can cut one client off with nftables.
    pub fn start_on(ns: &Netns, dir: &Path, urls: &[&str]) -> Etcd {
        let bin = require_etcd();
        let dir = dir.join("etcd");
        let listen = urls.join(",");
        let mut e = Etcd {
            proc: spawn(ns, &bin, &dir, &listen),
            bin,
            dir,
            ns_name: ns.name.clone(),
            listen,
        };
        e.wait_up();
        e
    }

    /// Waits until a client request succeeds.
    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.ctl(&["endpoint", "health"]).is_some() {
                return;
            }
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                panic!("etcd exited ({status}):\n{}", self.proc.log_tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not come up:\n{}",
                self.proc.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `etcdctl ARGS` against this member: its output, or `None` when it fails.
    pub fn ctl(&self, args: &[&str]) -> Option<String> {
        self.ctl_as(None, args)
    }

    /// [`Etcd::ctl`] as `user` (`NAME:PASSWORD`), once etcd's auth is on.
    pub fn ctl_as(&self, user: Option<&str>, args: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns_name, "etcdctl"])
            .args(["--endpoints", CLIENT_URL, "--command-timeout=2s"])
            .args(user.map(|u| format!("--user={u}")))
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every key under `prefix` with its value.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let text = self
            .ctl(&["get", "--prefix", prefix])
            .unwrap_or_else(|| panic!("etcdctl get {prefix} failed"));
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .filter(|kv| kv.len() == 2)
            .map(|kv| (kv[0].to_owned(), kv[1].to_owned()))
            .collect()
    }

    /// Turns etcd's auth on: `root` (password `root_password`) and `user` (`NAME:PASSWORD`)
    /// allowed to read and write under `prefix`.
    pub fn enable_auth(&self, root_password: &str, user: &str, prefix: &str) {
        let name = user.split(':').next().unwrap();
        for args in [
            vec!["user", "add", &format!("root:{root_password}")],
            vec!["role", "add", "fleet"],
            vec![
                "role",
                "grant-permission",
                "fleet",
                "--prefix=true",
                "readwrite",
                prefix,
            ],
            vec!["user", "add", user],
            vec!["user", "grant-role", name, "fleet"],
            vec!["auth", "enable"],
        ] {
            let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
            self.ctl(&args)
                .unwrap_or_else(|| panic!("etcdctl {args:?} failed"));
        }
    }

    /// Kills etcd (SIGKILL) and starts it again on the same data.
    pub fn restart(&mut self, ns: &Netns) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        self.proc = spawn(ns, &self.bin, &self.dir, &self.listen);
        self.wait_up();
    }
}

fn spawn(ns: &Netns, bin: &Path, dir: &Path, listen: &str) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = ns.command(bin);
    cmd.arg("--name")
        .arg("fleet")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen-client-urls", listen])
        .args(["--advertise-client-urls", CLIENT_URL])
        .args(["--listen-peer-urls", PEER_URL])
        .args(["--initial-advertise-peer-urls", PEER_URL])
        .arg("--initial-cluster")
        .arg(format!("fleet={PEER_URL}"));
    let log = dir.join(format!(
        "etcd-{}.log",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    ));
    Proc::spawn("etcd", cmd, log)
}
