#!/usr/bin/env bash
# Builds the Debian package into target/debian/: a release build, then the generated assets
# (man page and shell completions from the binary's own CLI definition, the units with the
# packaged /usr/bin path) into target/release/deb/, then `cargo deb --no-build`.
#
#   scripts/deb.sh [--binary FILE] [cargo-deb options...]
#
# --binary FILE packages FILE, and the janus-recorder-decode beside it, instead of building
# (the tests package their debug build this way, into a target directory of their own). Other options go to cargo deb (--fast, -o DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null ||
    { echo "cargo-deb not found: run scripts/setup.sh (or cargo install --locked cargo-deb)" >&2; exit 1; }

binary=
if [ "${1:-}" = "--binary" ]; then
    binary=$2
    shift 2
fi

release="${CARGO_TARGET_DIR:-target}/release"
if [ -n "$binary" ]; then
    mkdir -p "$release"
    install -m 755 "$binary" "$release/janus-recorder"
    install -m 755 "$(dirname "$binary")/janus-recorder-decode" "$release/janus-recorder-decode"
else
    cargo build --release --locked
fi

# Generated at package time, not kept in the repository: they always match this binary.
bin="$release/janus-recorder"
gen="$release/deb"
rm -rf "$gen"
mkdir -p "$gen/completions"
"$bin" manpage | gzip -9n >"$gen/janus-recorder.1.gz"
"$bin" completions bash >"$gen/completions/janus-recorder"
"$bin" completions zsh >"$gen/completions/_janus-recorder"
"$bin" completions fish >"$gen/completions/janus-recorder.fish"
# systemd/ is for source installs (/usr/local/bin); the package's binary is /usr/bin's.
for unit in systemd/janus-recorder.service systemd/janus-recorder@.service; do
    sed 's#/usr/local/bin/janus-recorder#/usr/bin/janus-recorder#g' "$unit" >"$gen/$(basename "$unit")"
done

cargo deb --no-build --locked "$@"
