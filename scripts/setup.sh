#!/usr/bin/env bash
# Installs everything janus-recorder needs to build, run its demo and run its tests on a fresh
# Debian machine (run as root): the build tools for str0m's and libopus's C parts, Janus 1.1.2
# with its demos (janus.js) and tools (janus-pp-rec), Chromium for the test publishers, ffmpeg,
# mkvtoolnix and iproute2, etcd (and protoc for its client's build), cargo-deb for the Debian package, and the S3 server Garage for the
# [storage] tests. Safe to run again.
set -euo pipefail

packages=(
    # building: aws-lc-rs (str0m's crypto), libopus and jemalloc are compiled from source
    build-essential cmake pkg-config libopus-dev libsystemd-dev
    # `check --decode`: libavcodec (and libavformat, which the binding needs to build) through
    # ffmpeg-next, whose bindings bindgen makes with libclang
    libavcodec-dev libavformat-dev libavutil-dev libclang-dev
    # the real Janus, janus.js for the test page, janus-pp-rec (the reference recorder)
    janus janus-demos janus-tools
    # publishers, media checks, network namespaces, the page server
    chromium ffmpeg mkvtoolnix iproute2 nftables python3 python3-pip procps ca-certificates
    # GNU time: the check tests measure its peak memory with it
    time
    # the font `janus-recorder room --grid` draws the names with (ffmpeg's drawtext)
    fonts-dejavu-core
    # a test CA and certificate for the wss:// tests
    openssl
    # systemd-analyze, for the unit file tests
    systemd
    # a disk that stalls, for the stalled-disk test (tests/support/stallfs.py, a FUSE file
    # system through fusepy)
    libfuse2 fuse3
    # iptables-legacy: a netfilter queue that delays the daemon's media in a test (this
    # kernel's nftables has no `queue`)
    iptables
    # `[cluster]`: etcd, the coordination store of the fleet tests and demo (etcdctl with it);
    # protoc and its well-known .proto files for the etcd-client crate's build script
    etcd-server etcd-client protobuf-compiler libprotobuf-dev
)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh installs Debian packages: run it as root" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
fi
# The Debian package starts Janus as a service on port 8188; the tests and the demo run their
# own Janus inside network namespaces, so the system one is not needed.
systemctl disable --now janus >/dev/null 2>&1 || true
# Likewise etcd: the fleet tests start their own inside their namespaces.
systemctl disable --now etcd >/dev/null 2>&1 || true

# The synthetic publisher's default clip (made here, not kept in the repository).
[ -s "$(dirname "$0")/../media/clip.webm" ] || "$(dirname "$0")/make-clip.sh" >/dev/null

# fusepy, the FUSE binding tests/support/stallfs.py is written with (not packaged by Debian).
python3 -c 'import fuse' 2>/dev/null || python3 -m pip install --quiet fusepy

# The recordings page's browser test (tests/page.rs) drives the system Chromium with
# Playwright for Python. Only the Python package: never `playwright install`, which downloads a
# browser of its own.
# Debian's own Python refuses pip installs outside a venv (PEP 668): on a test machine set up
# by root, the package goes into it anyway.
if ! python3 -c 'import playwright.sync_api' 2>/dev/null; then
    python3 -m pip install --quiet playwright 2>/dev/null ||
        python3 -m pip install --quiet --break-system-packages playwright
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
# cargo-deb builds the Debian package (scripts/deb.sh, tests/package.rs).
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
# Garage, the S3-compatible server the [storage] tests and the demo upload to (single-node, on
# loopback inside their namespaces). Built from crates.io: about 25 minutes on 2 cores, once.
command -v garage >/dev/null || [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/garage" ] \
    || cargo install --locked garage
echo "setup done: $(janus --version 2>/dev/null | head -1), $(chromium --version 2>/dev/null), $(cargo --version)"
