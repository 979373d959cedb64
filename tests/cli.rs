//! The binary's contract for bad configs: exit status 2 and a message naming file, key, problem.

use std::path::Path;
use std::process::Command;

fn run_with_config(text: &str) -> (i32, String) {
    let dir = std::env::temp_dir().join(format!("jr-cli-{}-{}", std::process::id(), text.len()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .args(["run", "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A config that is accepted by mistake would run the daemon forever: give it 10 s.
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(10) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    std::fs::remove_dir_all(&dir).unwrap();
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn broken_configs_exit_2_naming_file_key_and_problem() {
    let good_head = "[janus]\nurl = \"ws://127.0.0.1:1\"\n[output]\ndir = \"/tmp/jr-cli-out\"\n";
    let cases = [
        (
            format!("{good_head}[[rooms]]\nroom = 1\nrecording = true\n"),
            "rooms[0]",
            "recording",
        ),
        (
            format!("{good_head}[[rooms]]\nroom = 1\nrecord = false\n"),
            "rooms[0]",
            "relay",
        ),
        (
            format!("{good_head}[[rooms]]\nroom = [1]\n"),
            "rooms[0].room",
            "",
        ),
        (
            good_head.replace("ws://", "http://") + "[[rooms]]\nroom = 1\n",
            "janus.url",
            "ws://",
        ),
        (
            format!("{good_head}[network]\nadvertise = [\"not-an-ip\"]\n[[rooms]]\nroom = 1\n"),
            "network.advertise",
            "",
        ),
        (
            format!(
                "{good_head}[[rooms]]\nroom = 1\n[storage]\nbucket = \"rec\"\nkey = \"{{room}}\"\n"
            ),
            "storage.key",
            "must hold {file}",
        ),
        (
            format!(
                "{good_head}[[rooms]]\nroom = 1\n[storage]\nbucket = \"rec\"\n\
                 access_key_id = {{ env = \"JR_CLI_NO_KEY\" }}\nsecret_access_key = \"s\"\n"
            ),
            "storage.access_key_id",
            "JR_CLI_NO_KEY is not set",
        ),
        ("[janus\n".to_owned(), "", "config error in"),
    ];
    for (text, key, problem) in cases {
        let (code, stderr) = run_with_config(&text);
        assert_eq!(code, 2, "config:\n{text}\nstderr: {stderr}");
        assert!(stderr.contains("config.toml"), "file not named: {stderr}");
        assert!(stderr.contains(key), "key {key} not named: {stderr}");
        assert!(
            stderr.contains(problem),
            "problem {problem} not said: {stderr}"
        );
    }
}

#[test]
fn missing_config_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .args(["run", "--config", "/nonexistent/jr.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/jr.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn unreachable_janus_is_retried_with_backoff_and_sigterm_exits_0() {
    let dir = std::env::temp_dir().join(format!("jr-cli-unreachable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    // Port 1 on loopback: nothing listens there.
    let text = format!(
        "[janus]\nurl = \"ws://127.0.0.1:1\"\n[output]\ndir = \"{}\"\n[[rooms]]\nroom = 1\n",
        dir.join("rec").display()
    );
    std::fs::write(&path, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .args(["run", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Attempts at 0 s, 1 s and 3 s (backoff 1 s, 2 s, ...).
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let t = std::time::Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let elapsed = t.elapsed();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        elapsed < std::time::Duration::from_secs(5),
        "took {elapsed:?}"
    );
    let retries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Janus unreachable"))
        .collect();
    assert_eq!(retries.len(), 3, "{log}");
    assert!(
        retries[0].contains("retrying in 1s") && retries[1].contains("retrying in 2s"),
        "{log}"
    );
    assert!(log.contains("ws://127.0.0.1:1"), "{log}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `config check` runs the validation `run` does and starts nothing: 0 and a summary for a
/// good file, 2 and the file, key and problem for a broken one (the unit's `ExecReload` runs
/// it before the SIGHUP).
#[test]
fn config_check_accepts_good_files_and_names_the_problem_in_broken_ones() {
    let dir = std::env::temp_dir().join(format!("jr-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |text: &str| {
        let path = dir.join("config.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
            .args(["config", "check"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code().unwrap_or(-1), stdout, stderr)
    };
    let out_dir = dir.join("not-yet/recordings");
    let good = format!(
        "[janus]\nurl = \"ws://127.0.0.1:1\"\n[output]\ndir = \"{}\"\n[[rooms]]\nroom = 1\n[[rooms]]\nroom = 2\n",
        out_dir.display()
    );
    let (code, stdout, stderr) = check(&good);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("OK (2 rooms"), "{stdout}");
    assert!(!out_dir.exists(), "check created the output directory");

    // The example config shipped as /etc/janus-recorder/config.toml passes as it is.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config.toml");
    let text = std::fs::read_to_string(example).unwrap();
    let (code, stdout, stderr) =
        check(&text.replace("/var/lib/janus-recorder", &out_dir.display().to_string()));
    assert_eq!(code, 0, "{stdout}{stderr}");

    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    for (text, key, problem) in [
        (good.replace("room = 2", "room = 1"), "rooms", "twice"),
        (good.replace("ws://", "http://"), "janus.url", "ws://"),
        (
            good.replace("room = 2", "room = 2\nrecorded = true"),
            "rooms[1]",
            "recorded",
        ),
        (
            good.replace(
                &out_dir.display().to_string(),
                &file.join("rec").display().to_string(),
            ),
            "output.dir",
            "not a directory",
        ),
    ] {
        let (code, stdout, stderr) = check(&text);
        assert_eq!(code, 2, "{text}\n{stdout}{stderr}");
        assert!(
            stderr.contains("config.toml") && stderr.contains(key) && stderr.contains(problem),
            "{key}/{problem}: {stderr}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .args(["config", "check", "/nonexistent/jr.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `status` against a running daemon (its Janus unreachable, so nothing is recorded): the
/// rooms, feeds, files and bytes from its metrics endpoint and the last error; exit 3 once it
/// has stopped, 2 for a config without `[metrics] listen`.
#[test]
fn status_reads_a_running_daemon() {
    let dir = std::env::temp_dir().join(format!("jr-cli-status-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join("config.toml");
    let without_metrics = format!(
        "[janus]\nurl = \"ws://127.0.0.1:1\"\n[output]\ndir = \"{}\"\n[[rooms]]\nroom = 1\n[[rooms]]\nroom = \"two\"\n",
        dir.join("rec").display()
    );
    std::fs::write(
        &path,
        format!("{without_metrics}[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let status = || {
        let out = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
            .args(["status", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_janus-recorder"))
        .args(["run", "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first attempt at Janus fails at once; STATUS gauges are published within 5 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let (code, stdout, stderr) = loop {
        let (code, stdout, stderr) = status();
        if code == 0 && stdout.contains("last error (") || std::time::Instant::now() > deadline {
            break (code, stdout, stderr);
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    assert_eq!(code, 0, "{stdout}{stderr}");
    for needle in [
        format!("janus-recorder on 127.0.0.1:{port}: recording 0 feeds; watching 0/2 rooms"),
        "files: 0 open, 0 write errors; written since start: 0 B".to_owned(),
        "Janus unreachable".to_owned(),
    ] {
        assert!(stdout.contains(&needle), "{needle}:\n{stdout}");
    }
    let kill = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert!(daemon.wait().unwrap().success());
    let (code, _, stderr) = status();
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("not running"), "{stderr}");

    std::fs::write(&path, without_metrics).unwrap();
    let (code, _, stderr) = status();
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("[http] listen"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Secrets from systemd credentials: `{ credential = "NAME" }` is read from
/// `$CREDENTIALS_DIRECTORY` (what `LoadCredential=` fills), its absence named with the unit
/// line to add, and `--skip-secrets` reads none. A Janus URL holding credentials is never
/// shown in an error (before: `got "http://user:pw@host/?token=..."` in the journal).
#[test]
fn credentials_are_read_and_urls_never_shown() {
    let dir = std::env::temp_dir().join(format!("jr-cli-cred-{}", std::process::id()));
    let creds = dir.join("credentials");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("api_secret"), "janusrocks\n").unwrap();
    std::fs::write(creds.join("pin"), "1234").unwrap();
    let path = dir.join("config.toml");
    let check = |text: &str, args: &[&str], credentials: Option<&Path>| {
        std::fs::write(&path, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_janus-recorder"));
        cmd.args(["config", "check"]).args(args).arg(&path);
        cmd.env_remove("CREDENTIALS_DIRECTORY");
        if let Some(c) = credentials {
            cmd.env("CREDENTIALS_DIRECTORY", c);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    };
    let config = format!(
        "[janus]\nurl = \"ws://127.0.0.1:1\"\napi_secret = {{ credential = \"api_secret\" }}\n\
         [output]\ndir = \"{}\"\n[[rooms]]\nroom = 1\npin = {{ credential = \"pin\" }}\n",
        dir.join("rec").display()
    );
    let (code, text) = check(&config, &[], Some(&creds));
    assert_eq!(code, 0, "{text}");
    let (code, text) = check(&config, &[], None);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("janus.api_secret") && text.contains("LoadCredential=api_secret:"),
        "{text}"
    );
    // The package's upgrade check, as root outside the unit: nothing is read.
    let (code, text) = check(&config, &["--skip-secrets"], None);
    assert_eq!(code, 0, "{text}");
    let (code, text) = check(
        &config.replace(
            "credential = \"pin\"",
            "credential = \"../credentials/pin\"",
        ),
        &[],
        Some(&creds),
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("one file name"), "{text}");

    for (url, with_ca) in [
        (
            "http://admin:hunter2@janus.example.org/?token=s3cret",
            false,
        ),
        ("ws://admin:hunter2@127.0.0.1:1/?token=s3cret", true),
    ] {
        let mut bad = config.replace("ws://127.0.0.1:1", url);
        if with_ca {
            bad = bad.replace(
                "[janus]\n",
                "[janus]\nca_file = \"/etc/ssl/certs/ca-certificates.crt\"\n",
            );
        }
        let (code, text) = check(&bad, &[], Some(&creds));
        assert_eq!(code, 2, "{text}");
        assert!(text.contains("janus."), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "a secret in the URL is shown: {text}"
        );
    }
    let relayed = config.replace(
        "pin = {",
        "relay = { room = 2, url = \"http://admin:hunter2@h/?token=s3cret\" }\npin = {",
    );
    let (code, text) = check(&relayed, &[], Some(&creds));
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("relay.url") && !text.contains("hunter2"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
