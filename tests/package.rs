//! The Debian package: built with `scripts/deb.sh` (cargo-deb), extracted into a scratch root
//! with `dpkg -x`, its files, modes and conffiles checked, both packaged units verified, and
//! its maintainer scripts run against that root with a stand-in `systemctl`: a fresh install
//! enables and starts nothing; an upgrade restarts a running unit only when the new binary's
//! `config check` passes on its config.
//!
//! The package is built from this test build's debug binary (`scripts/deb.sh --binary`, in a
//! target directory of the test's own), not from a release build: a release build of this
//! crate takes several minutes on two cores, and the package's assembly (the generated man
//! page, completions and units, cargo-deb's metadata, stripping, maintainer scripts) is the
//! same whichever build it packages. `scripts/deb.sh` alone makes the release package.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use support::Scratch;

fn cargo_deb_on_path() -> bool {
    Command::new("cargo-deb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package from the test binary into `scratch`; returns the .deb.
fn build_package(scratch: &Path) -> PathBuf {
    assert!(
        cargo_deb_on_path(),
        "cargo-deb not found: run `scripts/setup.sh` (or `cargo install --locked cargo-deb`)"
    );
    let started = Instant::now();
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/deb.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_janus-recorder"))
        .args(["--fast", "-o"])
        .arg(scratch)
        .env("CARGO_TARGET_DIR", scratch.join("target"))
        .output()
        .unwrap();
    ok("scripts/deb.sh", out);
    eprintln!("package built in {:?}", started.elapsed());
    std::fs::read_dir(scratch)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .expect("a .deb in the output directory")
}

/// `dpkg-deb -c`: path (without the leading `.`) -> (mode string, owner/group).
fn listing(deb: &Path) -> BTreeMap<String, (String, String)> {
    let text = ok(
        "dpkg-deb -c",
        Command::new("dpkg-deb")
            .arg("-c")
            .arg(deb)
            .output()
            .unwrap(),
    );
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f[5]
                .trim_start_matches('.')
                .trim_end_matches('/')
                .to_owned();
            (path, (f[0].to_owned(), f[1].to_owned()))
        })
        .collect()
}

#[test]
fn the_debian_package_installs_disabled_and_restarts_only_on_a_good_config() {
    let scratch = Scratch::new("deb");
    let deb = build_package(&scratch.path);

    // Files, modes, owners.
    let files = listing(&deb);
    for (path, mode) in [
        ("/usr/bin/janus-recorder", "-rwxr-xr-x"),
        ("/usr/bin/janus-recorder-decode", "-rwxr-xr-x"),
        ("/etc/janus-recorder/config.toml", "-rw-r-----"),
        (
            "/usr/lib/systemd/system/janus-recorder.service",
            "-rw-r--r--",
        ),
        (
            "/usr/lib/systemd/system/janus-recorder@.service",
            "-rw-r--r--",
        ),
        ("/usr/share/man/man1/janus-recorder.1.gz", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/janus-recorder",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_janus-recorder",
            "-rw-r--r--",
        ),
        (
            "/usr/share/fish/vendor_completions.d/janus-recorder.fish",
            "-rw-r--r--",
        ),
        ("/usr/share/doc/janus-recorder/copyright", "-rw-r--r--"),
        ("/usr/share/doc/janus-recorder/LICENSE-MIT", "-rw-r--r--"),
        ("/usr/share/doc/janus-recorder/LICENSE-APACHE", "-rw-r--r--"),
    ] {
        let (m, owner) = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the package: {files:#?}"));
        assert_eq!(
            (m.as_str(), owner.as_str()),
            (mode, "0/0"),
            "{path} (root:root)"
        );
    }
    // The state directory is systemd's (StateDirectory= with DynamicUser keeps it under
    // /var/lib/private): a directory of dpkg's there would be moved from under it.
    assert!(
        !files.keys().any(|p| p.starts_with("/var")),
        "the package ships under /var: {files:#?}"
    );

    // Control: the conffile, dependencies found by cargo-deb, and the scripts.
    let control = scratch.path.join("control");
    ok(
        "dpkg-deb -e",
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(&deb)
            .arg(&control)
            .output()
            .unwrap(),
    );
    assert_eq!(
        std::fs::read_to_string(control.join("conffiles")).unwrap(),
        "/etc/janus-recorder/config.toml\n"
    );
    let fields = std::fs::read_to_string(control.join("control")).unwrap();
    assert!(
        fields.contains("Package: janus-recorder")
            && fields.contains("libsystemd0")
            && fields.contains("libavcodec"),
        "{fields}"
    );

    // Extract into a scratch root, as dpkg would install it.
    let root = scratch.path.join("root");
    ok(
        "dpkg -x",
        Command::new("dpkg")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .output()
            .unwrap(),
    );
    let bin = root.join("usr/bin/janus-recorder");
    // Dual-licensed, and the package says so: the copyright file and both texts.
    let copyright =
        std::fs::read_to_string(root.join("usr/share/doc/janus-recorder/copyright")).unwrap();
    assert!(copyright.contains("MIT OR Apache-2.0"), "{copyright}");
    for (file, needle) in [
        ("LICENSE-MIT", "Permission is hereby granted"),
        ("LICENSE-APACHE", "Apache License"),
    ] {
        let text =
            std::fs::read_to_string(root.join("usr/share/doc/janus-recorder").join(file)).unwrap();
        assert!(text.contains(needle), "{file}");
    }
    assert_eq!(
        std::fs::read(root.join("etc/janus-recorder/config.toml")).unwrap(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config.toml")).unwrap()
    );

    // Both units name the packaged binary and verify, pointed at the extracted one.
    for (name, instance) in [
        ("janus-recorder.service", "janus-recorder.service"),
        ("janus-recorder@.service", "janus-recorder@janus2.service"),
    ] {
        let text = std::fs::read_to_string(root.join("usr/lib/systemd/system").join(name)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/bin/janus-recorder run") && !text.contains("/usr/local"),
            "{name}:\n{text}"
        );
        let unit = scratch.path.join(instance);
        std::fs::write(
            &unit,
            text.replace("/usr/bin/janus-recorder", bin.to_str().unwrap()),
        )
        .unwrap();
        support::assert_unit_verifies_and_is_hardened(&unit);
    }

    // The man page and completions come from the CLI definition.
    let man = ok(
        "gzip -dc",
        Command::new("gzip")
            .arg("-dc")
            .arg(root.join("usr/share/man/man1/janus-recorder.1.gz"))
            .output()
            .unwrap(),
    );
    for needle in [
        ".TH janus-recorder 1",
        "JANUS-RECORDER CONFIG CHECK",
        r"\fB\-\-config\fR",
    ] {
        assert!(man.contains(needle), "the man page lacks {needle}:\n{man}");
    }
    let bash =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/janus-recorder"))
            .unwrap();
    assert!(
        bash.contains("janus__recorder__subcmd__config__subcmd__check")
            && bash.contains("complete -F"),
        "{bash}"
    );
    let zsh =
        std::fs::read_to_string(root.join("usr/share/zsh/vendor-completions/_janus-recorder"))
            .unwrap();
    assert!(zsh.starts_with("#compdef janus-recorder"), "{zsh}");

    maintainer_scripts(&scratch.path, &root, &control);
}

/// Runs the extracted postinst and prerm with `DPKG_ROOT` at the scratch root and stand-ins
/// for `systemctl` and `deb-systemd-helper` that log their arguments (and list two running
/// units), so no host service is touched.
fn maintainer_scripts(scratch: &Path, root: &Path, control: &Path) {
    let fake = scratch.join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    let log = scratch.join("calls.log");
    for tool in [
        "systemctl",
        "deb-systemd-helper",
        "deb-systemd-invoke",
        "getent",
        "addgroup",
        "chgrp",
    ] {
        let script = format!(
            "#!/bin/sh\necho \"{tool} $*\" >> '{}'\n\
             case \"$1\" in\n\
             list-units) printf 'janus-recorder.service loaded active running x\\njanus-recorder@janus2.service loaded active running y\\n' ;;\n\
             debian-installed|was-enabled|--quiet) exit 1 ;;\n\
             group) exit 2 ;;\n\
             esac\nexit 0\n",
            log.display()
        );
        let path = fake.join(tool);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    // systemd is "running" in the scratch root.
    std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
    let path = format!(
        "{}:{}",
        fake.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let run = |script: &str, args: &[&str]| {
        let _ = std::fs::remove_file(&log);
        let out = Command::new("sh")
            .arg(control.join(script))
            .args(args)
            .env("DPKG_ROOT", root)
            .env("PATH", &path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{script} {args:?}: {stderr}");
        (std::fs::read_to_string(&log).unwrap_or_default(), stderr)
    };

    // A fresh install enables and starts nothing; it makes the janus-recorder group and gives
    // it the config, 0640 (the config may hold secrets; the units join the group).
    let (calls, _) = run("postinst", &["configure", ""]);
    assert!(calls.contains("getent group janus-recorder"), "{calls}");
    assert!(
        calls.contains("addgroup --system --quiet janus-recorder"),
        "{calls}"
    );
    assert!(
        calls.contains("chgrp janus-recorder ") && calls.contains("etc/janus-recorder/config.toml"),
        "{calls}"
    );
    let mode = std::fs::metadata(root.join("etc/janus-recorder/config.toml"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o640
    );
    for verb in ["start", "restart", "try-restart", "enable janus"] {
        assert!(
            !calls
                .lines()
                .any(|l| l.contains(&format!(" {verb} ")) || l.ends_with(&format!(" {verb}"))),
            "a fresh install ran {verb}:\n{calls}"
        );
    }

    // An upgrade: the plain unit's config (the shipped example, its output.dir moved into the
    // scratch root, its token from the unit's environment, which the script does not have)
    // passes and it is restarted; janus2's is broken and it is left running.
    let etc = root.join("etc/janus-recorder");
    let example = std::fs::read_to_string(etc.join("config.toml")).unwrap();
    let rec = root.join("var/lib/janus-recorder");
    std::fs::write(
        etc.join("config.toml"),
        example
            .replace("/var/lib/janus-recorder", rec.to_str().unwrap())
            .replace(
                "# token = { env = \"JANUS_TOKEN\" }",
                "token = { env = \"JR_PACKAGE_TEST_UNSET\" }",
            ),
    )
    .unwrap();
    std::fs::write(
        etc.join("janus2.toml"),
        example
            .replace("/var/lib/janus-recorder", rec.to_str().unwrap())
            .replace("room = 1234 ", "rooom = 1234 "),
    )
    .unwrap();
    let (calls, stderr) = run("postinst", &["configure", "0.0.9-1"]);
    assert!(
        calls.contains("systemctl try-restart janus-recorder.service"),
        "{calls}"
    );
    assert!(!calls.contains("janus-recorder@janus2.service"), "{calls}");
    assert!(
        stderr.contains("NOT restarting janus-recorder@janus2.service")
            && stderr.contains("janus2.toml")
            && stderr.contains("rooom"),
        "{stderr}"
    );

    // Removal stops template instances too.
    let (calls, _) = run("prerm", &["remove"]);
    assert!(
        calls.contains("systemctl stop janus-recorder@*.service"),
        "{calls}"
    );
    let (calls, _) = run("prerm", &["upgrade", "0.1.0-1"]);
    assert!(
        !calls.contains("stop"),
        "an upgrade stopped something: {calls}"
    );
}
