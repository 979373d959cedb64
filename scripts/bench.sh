#!/usr/bin/env bash
# The recording benchmark: janus-recorder against Janus's own recorder plus janus-pp-rec, on
# the same feeds, measured in one run.
#
# For each N in BENCH_FEEDS (default "10 50 100"), inside a fresh network namespace: Janus
# 1.1.2 with one room that Janus itself records (record = true), the daemon recording that
# room, and N synthetic publishers (`janus-recorder publish --hold`: each sends nothing until
# the daemon's subscription asks for a keyframe, so every frame sent can be recorded) for
# BENCH_SECS seconds (default 60). Then janus-pp-rec converts Janus's .mjr files of the same
# feeds. One table: CPU per feed-minute of both, their ratio, the daemon's peak RSS per feed,
# frames sent versus written, and the time from announcement to first keyframe written; for
# runs of 5 minutes or more, the daemon's RSS after 5 and 30 minutes (sampled every 10 s) and
# the longest time a file took to finalize (the daemon logs `finalize_ms`).
# A long run: BENCH_FEEDS=10 BENCH_SECS=1800 scripts/bench.sh
#
# Needs root and scripts/setup.sh. Output and logs: bench-output/. Nothing leaves the machine.
# BENCH_PERF=1 also samples the daemon with `perf record` (bench-output/nN/perf.data).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
feeds_list=${BENCH_FEEDS:-10 50 100}
secs=${BENCH_SECS:-60}
room=4321
out=$root/bench-output
bin=$root/target/release/janus-recorder
clip=$root/media/clip.webm
ticks=$(getconf CLK_TCK)

[ "$(id -u)" -eq 0 ] || { echo "bench.sh creates network namespaces: run it as root" >&2; exit 1; }
for tool in janus janus-pp-rec ffprobe ip python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup.sh" >&2; exit 1; }
done
[ -s "$clip" ] || scripts/make-clip.sh >/dev/null

echo "== building janus-recorder (release)"
cargo build --release --quiet
rm -rf "$out"
mkdir -p "$out"

ns=""
cleanup() {
    [ -n "$ns" ] || return 0
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT

wait_log() { # file pattern seconds [count]
    local n=${4:-1}
    for _ in $(seq $(($3 * 10))); do
        [ "$(grep -c "$2" "$1" 2>/dev/null || true)" -ge "$n" ] && return 0
        sleep 0.1
    done
    echo "timed out waiting for $n x '$2' in $1:" >&2
    tail -20 "$1" >&2
    return 1
}

# CPU seconds (user + system) and peak RSS (KiB) of a live process.
cpu_of() { awk -v t="$ticks" '{ printf "%.3f", ($14 + $15) / t }' "/proc/$1/stat"; }
kib_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

run_one() { # N
    local n=$1 dir=$out/n$1
    ns=jr-bench-$$-$n
    mkdir -p "$dir/janus-conf" "$dir/janus-rec" "$dir/recordings"
    ip netns add "$ns"
    local inns="ip netns exec $ns"
    $inns ip link set lo up
    $inns ip link add va type veth peer name vb
    $inns ip addr add 10.201.0.1/24 dev va
    $inns ip addr add 10.201.0.2/24 dev vb
    $inns ip link set va up
    $inns ip link set vb up

    cp tests/janus/janus.jcfg tests/janus/janus.transport.websockets.jcfg "$dir/janus-conf/"
    cat >"$dir/janus-conf/janus.plugin.videoroom.jcfg" <<ROOMS
general: {
}
room-$room: {
	description = "Benchmark room"
	publishers = $((n + 10))
	audiocodec = "opus"
	videocodec = "vp8"
	record = true
	rec_dir = "$dir/janus-rec"
}
ROOMS
    $inns janus -F "$dir/janus-conf" -C "$dir/janus-conf/janus.jcfg" >"$dir/janus.log" 2>&1 &
    local janus=$!
    disown "$janus" # killed by cleanup; no "Killed" notice
    wait_log "$dir/janus.log" "WebSockets thread started" 20

    cat >"$dir/janus-recorder.toml" <<CONFIG
[janus]
url = "ws://127.0.0.1:8188"
[output]
dir = "$dir/recordings"
[network]
advertise = ["10.201.0.2"]
[[rooms]]
room = $room
CONFIG
    # `ip netns exec` execs the program, so $! is the daemon itself.
    env RUST_LOG=info ${BENCH_DAEMON_ENV:-} ip netns exec "$ns" "$bin" run --config "$dir/janus-recorder.toml" >"$dir/janus-recorder.log" 2>&1 &
    local daemon=$!
    wait_log "$dir/janus-recorder.log" "watching room" 20
    sleep 1
    local base_kib cpu0 janus_cpu0
    base_kib=$(kib_of "$daemon" VmRSS)
    cpu0=$(cpu_of "$daemon")
    janus_cpu0=$(cpu_of "$janus")

    # The daemon's RSS every 10 s while it records (seconds since the publishers started, KiB).
    (
        t0=$(date +%s)
        while kill -0 "$daemon" 2>/dev/null; do
            echo "$(($(date +%s) - t0)) $(kib_of "$daemon" VmRSS)"
            sleep 10
        done
    ) >"$dir/rss.txt" 2>/dev/null &
    echo "== N=$n: $n synthetic publishers for ${secs}s (logs in $dir)"
    if [ -n "${BENCH_PERF:-}" ]; then
        # Samples the daemon's stacks while it records (perf.data; `perf report -i` it).
        perf record -F 499 -g -p "$daemon" -o "$dir/perf.data" -- sleep "$secs" >"$dir/perf.log" 2>&1 &
    fi
    RUST_LOG=warn ip netns exec "$ns" "$bin" publish --url ws://127.0.0.1:8188 --room $room \
        --display bench --count "$n" --seconds "$secs" --hold --advertise 10.201.0.1 \
        --media "$clip" --report "$dir/sent.json" >"$dir/publish.log" 2>&1 || {
        echo "the publisher failed:" >&2
        tail -20 "$dir/publish.log" >&2
    }
    # Every feed's file is finalized when its publisher leaves.
    wait_log "$dir/janus-recorder.log" "recording finished" 30 "$n" || true
    local cpu1 peak_kib janus_cpu1
    cpu1=$(cpu_of "$daemon")
    peak_kib=$(kib_of "$daemon" VmHWM)
    janus_cpu1=$(cpu_of "$janus")
    kill -TERM "$daemon"
    wait "$daemon" || true

    cat >"$dir/daemon.json" <<STATS
{"feeds": $n, "secs": $secs, "daemon_cpu": [$cpu0, $cpu1], "janus_cpu": [$janus_cpu0, $janus_cpu1],
 "base_kib": $base_kib, "peak_kib": $peak_kib}
STATS
    python3 scripts/bench_report.py measure "$dir"
    cleanup
    ns=""
}

for n in $feeds_list; do
    run_one "$n"
done

echo
echo "== janus-recorder benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
python3 scripts/bench_report.py table "$out"
