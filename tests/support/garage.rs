//! A real S3 server for the tests: Garage (crates.io `garage`, which `scripts/setup.sh`
//! installs) in single-node mode, started inside the test's namespace on its loopback, with a
//! fresh layout, key and bucket in a scratch directory. A missing `garage` fails the test
//! with how to install it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::MultipartStore;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{Netns, Proc};

/// Where Garage's S3 API listens inside the namespace.
pub const S3_ADDR: &str = "127.0.0.1:3900";
const RPC_ADDR: &str = "127.0.0.1:3901";
/// Where [`Garage::alter_before_first_head`]'s relay listens.
pub const RELAY_ADDR: &str = "127.0.0.1:3910";
/// The bucket every test uploads to.
pub const BUCKET: &str = "recordings";
/// Garage's region name.
pub const REGION: &str = "garage";

/// The `garage` binary: on PATH, or where `cargo install` put it. Fails the test, saying how
/// to install it, when there is none.
pub fn require_garage() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("garage"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin/garage"));
    on_path.chain(cargo_home).find(|p| p.is_file()).expect(
        "the S3 server Garage is missing: run `scripts/setup.sh` (or `cargo install garage \
             --locked`, which puts it in ~/.cargo/bin)",
    )
}

/// A single-node Garage with one key allowed on [`BUCKET`].
pub struct Garage {
    pub proc: Proc,
    bin: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    ns_name: String,
    pub key_id: String,
    pub secret: String,
    /// Where the daemon is told the S3 API is.
    endpoint: &'static str,
}

impl Garage {
    /// Starts Garage in `ns` with its data under `dir/garage`, and makes the layout, a key
    /// and the bucket.
    pub fn start(ns: &Netns, dir: &Path) -> Garage {
        let bin = require_garage();
        let gdir = dir.join("garage");
        fs::create_dir_all(&gdir).unwrap();
        let secret: String = (0..32)
            .map(|i| format!("{:02x}", (i * 37 + 11) % 256))
            .collect();
        let config = gdir.join("garage.toml");
        fs::write(
            &config,
            format!(
                "metadata_dir = \"{m}\"\ndata_dir = \"{d}\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"{RPC_ADDR}\"\n\
                 rpc_public_addr = \"{RPC_ADDR}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"{S3_ADDR}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                m = gdir.join("meta").display(),
                d = gdir.join("data").display(),
            ),
        )
        .unwrap();
        let mut g = Garage {
            proc: spawn(ns, &bin, &config, &gdir),
            bin,
            config,
            dir: gdir,
            ns_name: ns.name.clone(),
            key_id: String::new(),
            secret: String::new(),
            endpoint: S3_ADDR,
        };
        g.wait_up(ns);
        let node = g.cli(ns, &["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap().to_owned();
        g.cli(ns, &["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        g.cli(ns, &["layout", "apply", "--version", "1"]);
        let key = g.cli(ns, &["key", "create", "recorder"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim_start_matches(':').trim().to_owned())
                .unwrap_or_else(|| panic!("no {name:?} in `garage key create`:\n{key}"))
        };
        g.key_id = field("Key ID");
        g.secret = field("Secret key");
        g.cli(ns, &["bucket", "create", BUCKET]);
        g.cli(
            ns,
            &[
                "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", "recorder",
            ],
        );
        g
    }

    /// Runs `garage ARGS` against this server; fails with its output unless it succeeds.
    pub fn cli(&self, ns: &Netns, args: &[&str]) -> String {
        let mut cmd = ns.command(&self.bin);
        cmd.arg("-c").arg(&self.config).args(args);
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{cmd:?} failed:\n{text}");
        text
    }

    /// Waits until the server answers `garage status`.
    fn wait_up(&mut self, ns: &Netns) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut cmd = ns.command(&self.bin);
            cmd.arg("-c").arg(&self.config).arg("status");
            if cmd.output().is_ok_and(|o| o.status.success()) {
                return;
            }
            if let Ok(Some(status)) = self.proc.child.try_wait() {
                panic!("garage exited ({status}):\n{}", self.proc.log_tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "garage did not come up:\n{}",
                self.proc.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
    }

    /// Starts it again on the same data.
    pub fn restart(&mut self, ns: &Netns) {
        self.kill();
        self.proc = spawn(ns, &self.bin, &self.config, &self.dir);
        self.wait_up(ns);
    }

    /// Puts a relay in front of the S3 API (on [`RELAY_ADDR`], which [`Garage::storage_toml`]
    /// names from now on) that, the first time a HEAD request comes, replaces the object it
    /// asks for (with other bytes and no checksum metadata) before passing the HEAD on: an
    /// object altered on the server between its upload and its check.
    pub fn alter_before_first_head(&mut self) {
        let bucket = self.bucket();
        super::spawn_in_netns(&self.ns_name, move || relay_altering(bucket));
        self.endpoint = RELAY_ADDR;
    }

    /// A `[storage]` table for the daemon: this server, the key read from files in `dir`
    /// (so that no secret sits in the config), `extra` lines after it.
    pub fn storage_toml(&self, dir: &Path, extra: &str) -> String {
        let id = dir.join("s3-key-id");
        let secret = dir.join("s3-secret");
        fs::write(&id, format!("{}\n", self.key_id)).unwrap();
        fs::write(&secret, format!("{}\n", self.secret)).unwrap();
        format!(
            "[storage]\nendpoint = \"http://{}\"\nregion = \"{REGION}\"\n\
             bucket = \"{BUCKET}\"\npath_style = true\n\
             access_key_id = {{ file = \"{}\" }}\nsecret_access_key = {{ file = \"{}\" }}\n{extra}",
            self.endpoint,
            id.display(),
            secret.display()
        )
    }

    /// A client of the bucket (cheap to clone, usable from any thread).
    pub fn bucket(&self) -> Bucket {
        Bucket {
            ns_name: self.ns_name.clone(),
            key_id: self.key_id.clone(),
            secret: self.secret.clone(),
        }
    }

    /// Every key in the bucket, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.bucket().keys()
    }

    /// The object at `key`'s bytes and its `sha256` metadata.
    pub fn get(&self, key: &str) -> (Vec<u8>, Option<String>) {
        self.bucket().get(key)
    }
}

/// The test's own client of [`BUCKET`], inside the namespace.
#[derive(Debug, Clone)]
pub struct Bucket {
    ns_name: String,
    key_id: String,
    secret: String,
}

impl Bucket {
    /// Runs `f` with a client of the bucket, inside the namespace.
    fn with_client<T: Send + 'static>(
        &self,
        f: impl AsyncFnOnce(Arc<AmazonS3>) -> T + Send + 'static,
    ) -> T {
        let (id, secret) = (self.key_id.clone(), self.secret.clone());
        super::in_named_netns(&self.ns_name, move || {
            let client = Arc::new(
                AmazonS3Builder::new()
                    .with_endpoint(format!("http://{S3_ADDR}"))
                    .with_allow_http(true)
                    .with_region(REGION)
                    .with_bucket_name(BUCKET)
                    .with_access_key_id(id)
                    .with_secret_access_key(secret)
                    .build()
                    .unwrap(),
            );
            super::block_on(f(client))
        })
    }

    /// Every key in the bucket, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.with_client(async |s| {
            use futures_util::TryStreamExt;
            let mut keys: Vec<String> = s
                .list(None)
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
            keys.sort();
            keys
        })
    }

    /// The object at `key`'s bytes and its `sha256` metadata.
    pub fn get(&self, key: &str) -> (Vec<u8>, Option<String>) {
        let key = key.to_owned();
        self.with_client(async move |s| {
            let got = s
                .get_opts(&key.as_str().into(), Default::default())
                .await
                .unwrap_or_else(|e| panic!("GET {key}: {e}"));
            let sha = got
                .attributes
                .get(&object_store::Attribute::Metadata("sha256".into()))
                .map(|v| v.as_ref().to_owned());
            (got.bytes().await.unwrap().to_vec(), sha)
        })
    }

    /// Aborts the multipart upload `upload_id` of `key`, as a lifecycle rule would.
    pub fn abort(&self, key: &str, upload_id: &str) {
        let (key, id) = (key.to_owned(), upload_id.to_owned());
        self.with_client(async move |s| {
            s.abort_multipart(&key.as_str().into(), &id).await.unwrap();
        })
    }

    /// Replaces the object at `key` with `bytes` (no checksum metadata): an object altered
    /// on the server.
    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        let key = key.to_owned();
        self.with_client(async move |s| {
            s.put(&key.as_str().into(), bytes.into()).await.unwrap();
        })
    }
}

/// The relay of [`Garage::alter_before_first_head`]: runs until the test process ends.
fn relay_altering(bucket: Bucket) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = TcpListener::bind(RELAY_ADDR).unwrap();
    let altered = Arc::new(AtomicBool::new(false));
    for client in listener.incoming() {
        let Ok(mut client) = client else { continue };
        let Ok(mut server) = TcpStream::connect(S3_ADDR) else {
            continue;
        };
        let (mut client_in, mut server_in) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut server_in, &mut client);
        });
        let (bucket, altered) = (bucket.clone(), altered.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = match client_in.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                let prefix = format!("HEAD /{BUCKET}/");
                if chunk.starts_with(prefix.as_bytes()) && !altered.swap(true, Ordering::SeqCst) {
                    let line = String::from_utf8_lossy(chunk);
                    let key = line[prefix.len()..].split(' ').next().unwrap_or_default();
                    bucket.put(key, b"altered on the server".to_vec());
                }
                if server.write_all(chunk).is_err() {
                    return;
                }
            }
        });
    }
}

fn spawn(ns: &Netns, bin: &Path, config: &Path, dir: &Path) -> Proc {
    let mut cmd = ns.command(bin);
    cmd.arg("-c")
        .arg(config)
        .arg("server")
        .env("RUST_LOG", "garage=info");
    Proc::spawn("garage", cmd, dir.join("garage.log"))
}
