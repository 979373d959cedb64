#!/usr/bin/env bash
# The recording benchmark: janus-recorder against Janus's own recorder plus janus-pp-rec, on
# the same feeds, measured in one run.
#
# For each N in BENCH_FEEDS (default "10 50 100"; 200 fits too), two passes, each inside
# a fresh network namespace with a fresh Janus 1.1.2 and one room that Janus itself records
# (record = true):
# - the daemon pass: the daemon records that room while N synthetic publishers
#   (`janus-recorder publish --hold`: each sends nothing until the daemon's subscription asks
#   for a keyframe, so every frame sent can be recorded) publish for BENCH_SECS seconds
#   (default 60). Then janus-pp-rec converts Janus's .mjr files of the same feeds.
# - the baseline pass: the same Janus, room and publishers without the daemon, to tell what
#   our subscriptions cost Janus. The publishers run without --hold there: nobody subscribes,
#   so nobody would ask for the keyframe they wait for (Janus records them all the same).
# One table: CPU per feed-minute of the daemon and of janus-pp-rec, their ratio, the daemon's
# peak RSS per feed, frames sent versus written, the time from announcement to first keyframe
# written (median, p95, worst), and Janus's CPU per minute in both passes with the difference
# per feed-minute; for runs of 5 minutes or more, the daemon's RSS after 5 and 30 minutes
# (sampled every 10 s) and the longest time a file took to finalize (the daemon logs
# `finalize_ms`).
# A long run: BENCH_FEEDS=10 BENCH_SECS=1800 scripts/bench.sh
# BENCH_API_RPS=500 adds, for each N, a third pass: the daemon pass again while
# scripts/api_load.py sends that many HTTP API requests a second (half recording listings,
# half 64 KiB ranges of live files), and prints the recording thread's CPU per feed-minute in
# both daemon passes, the HTTP thread's CPU, frames lost, and the requests' statuses and
# latencies. The daemon's HTTP server is on (127.0.0.1:9469) in every pass.
#
# BENCH_UPLOAD_MIB=64 adds, for each N, a pass with [storage] on: the daemon pass again while
# it uploads N finished recordings of that many MiB each (random bytes, queued as a previous
# run leaves them) to Garage in the namespace, paced by `max_bytes_per_second` to last the
# publishing time, and prints the recording thread's CPU per
# feed-minute in both passes, the upload runtime's CPU, frames lost, and how much was uploaded
# while the feeds recorded.
# BENCH_MODES="16 1" (the default): the daemon pass once per number of feeds per subscription
# (`[janus] feeds_per_subscription`; 1 is a subscription per feed), one row each in the table
# ("per subscription" column), each with Janus's extra CPU against the same baseline.
# "forward" in the list is a pass recording from RTP forwarders (`[janus] rtp_forward`, to
# 127.0.0.1) instead of subscriptions.
# BENCH_SUBSCRIBE_GROUPS="1 16 0" adds, for each N, one pass per group size with no daemon:
# `janus-recorder subscribe-probe` subscribes to the N publishers the recorder's way but
# writes nothing, G feeds per subscription (1: one per feed, as the recorder does; 0: all in
# one multistream subscription; "forward": no subscription, VideoRoom RTP forwarders sending
# plain RTP to the probe's one socket), and a pass with no subscriber at all; Janus's and the
# probe's CPU are measured over the same steady window (from 15 s after the publishers start,
# BENCH_SECS - 10 s long) and printed per mode: what a subscription costs Janus.
# BENCH_BITRATE="2M 6M 12M 25M" runs the whole benchmark once per video bitrate, each with a
# clip of that constant rate from scripts/make-clip.sh (VP8, BENCH_SIZE, default 1920x1080; use
# 3840x2160 for 4K; kept in media/ as the tests keep theirs), output in
# bench-output/rate-RATE/, and prints the rate with each table, which counts video frames sent
# and written apart. Unset: the default clip (640x480, 400 kb/s).
#
# Needs root and scripts/setup.sh. Output and logs: bench-output/ (the baseline pass in
# bench-output/nN/baseline/). Nothing leaves the machine.
# BENCH_MIN_NACK_QUEUE=MS sets Janus's min_nack_queue (how long it keeps every sent packet for
# resending; the tests' janus.jcfg says 1000) in every pass.
# BENCH_PERF=1 also samples the daemon with `perf record` (bench-output/nN/perf.data), writes
# the 25 heaviest symbols to bench-output/nN/perf-top.txt and prints the first 10 of them.
# Janus's CPU is also taken over each pass's steady window (from 15 s after the publishers
# start to 10 s before they stop, runs of 45 s or more): a second "extra CPU" column, what
# carrying our subscriptions costs Janus apart from setting them up. BENCH_PERF_JANUS=1
# samples Janus over that window in every pass (janus-perf.data, janus-perf-top.txt: its
# heaviest libraries, then symbols) and prints the libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
feeds_list=${BENCH_FEEDS:-10 50 100}
secs=${BENCH_SECS:-60}
# Feeds per subscription of each daemon pass ([janus] feeds_per_subscription): the first is
# the main pass (the API, upload and perf passes use it too), each other one a pass of its own
# in nN/mode-G, all in the table with Janus's extra CPU for each.
modes=${BENCH_MODES:-16 1}
first_mode=${modes%% *}
other_modes=${modes#"$first_mode"}
rates_list=${BENCH_BITRATE:-}
size=${BENCH_SIZE:-1920x1080}
room=4321
output=$root/bench-output
out=$output
# CARGO_TARGET_DIR is honoured (e.g. a profiling build with frame pointers kept apart).
bin=${CARGO_TARGET_DIR:-$root/target}/release/janus-recorder
default_clip=$root/media/clip.webm
clip=$default_clip
video="640x480 VP8 at 400 kb/s (media/clip.webm)"
ticks=$(getconf CLK_TCK)

[ "$(id -u)" -eq 0 ] || { echo "bench.sh creates network namespaces: run it as root" >&2; exit 1; }
for tool in janus janus-pp-rec ffprobe ip python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup.sh" >&2; exit 1; }
done
[ -s "$default_clip" ] || scripts/make-clip.sh >/dev/null
for rate in $rates_list; do
    [[ "$rate" =~ ^[0-9]+[kM]$ ]] || { echo "BENCH_BITRATE: $rate is not a rate like 12M or 400k" >&2; exit 1; }
done
# Open files: at 200 feeds Janus holds 400 PeerConnections (the publishers' and our
# subscriptions), each with a UDP socket per address and its event loop's descriptors, plus
# two .mjr files per publisher (at 5 feeds it held 66 descriptors, 44 without the daemon:
# some 2000 at 200); the publisher process holds 200 PeerConnections, and the daemon sizes
# its default max_feeds from this limit ((1024 - 64) / 4 = 240 feeds). The usual soft limit
# of 1024 would run out; everything started below inherits this one.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

echo "== building janus-recorder (release)"
cargo build --release --quiet
rm -rf "$output"
mkdir -p "$output"

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
# CPU seconds of a process's threads whose name starts with $2 (the comm field has no spaces
# here: the daemon's main thread is "janus-recorder", its HTTP runtime's "janus-recorder-", names
# being cut to 15 characters).
threads_cpu() {
    cat /proc/"$1"/task/*/stat 2>/dev/null | awk -v t="$ticks" -v name="($2" \
        'index($2, name) == 1 { s += $14 + $15 } END { printf "%.3f", s / t }'
}
kib_of() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# A fresh namespace with Janus and its recorded room for N publishers; Janus's pid in $janus.
janus=""
start_janus() { # N DIR NAMESPACE
    local n=$1 dir=$2
    ns=$3
    mkdir -p "$dir/janus-conf" "$dir/janus-rec"
    ip netns add "$ns"
    local inns="ip netns exec $ns"
    $inns ip link set lo up
    $inns ip link add va type veth peer name vb
    $inns ip addr add 10.201.0.1/24 dev va
    $inns ip addr add 10.201.0.2/24 dev vb
    $inns ip link set va up
    $inns ip link set vb up

    cp tests/janus/janus.jcfg tests/janus/janus.transport.websockets.jcfg "$dir/janus-conf/"
    # How long Janus keeps sent packets for resending (the tests' 1000 ms unless set).
    [ -n "${BENCH_MIN_NACK_QUEUE:-}" ] &&
        sed -i "s/min_nack_queue = .*/min_nack_queue = $BENCH_MIN_NACK_QUEUE/" "$dir/janus-conf/janus.jcfg"
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
    janus=$!
    disown "$janus" # killed by cleanup; no "Killed" notice
    wait_log "$dir/janus.log" "WebSockets thread started" 20
}

publish() { # N DIR [--hold]: N synthetic publishers for $secs seconds, report in DIR/sent.json
    local n=$1 dir=$2
    shift 2
    RUST_LOG=warn ip netns exec "$ns" "$bin" publish --url ws://127.0.0.1:8188 --room $room \
        --display bench --count "$n" --seconds "$secs" "$@" --advertise 10.201.0.1 \
        --media "$clip" --report "$dir/sent.json" >"$dir/publish.log" 2>&1 || {
        echo "the publisher failed:" >&2
        tail -20 "$dir/publish.log" >&2
    }
}

# Queues N finished recordings of $BENCH_UPLOAD_MIB MiB each under DIR's output directory,
# as the daemon's upload queue holds them after a stop (one entry per file).
queue_uploads() { # N DIR
    local n=$1 dir=$2 i id file
    mkdir -p "$dir/recordings/upload" "$dir/recordings/.state/uploads/queue"
    for i in $(seq "$n"); do
        file=$dir/recordings/upload/old-$i.webm
        head -c "${BENCH_UPLOAD_MIB}M" /dev/urandom >"$file"
        id=$(printf '0190aaaa-0000-7000-8000-%012d' "$i")
        printf '{"id":"%s","path":"%s","key":"upload/old-%s.webm","kind":"media","bytes":%s,"queued_at":%s}' \
            "$id" "$file" "$i" "$(stat -c %s "$file")" "$(date +%s)" \
            >"$dir/recordings/.state/uploads/queue/$id.json"
    done
    sync
}

run_one() { # N [api|upload|mode-G]: the daemon pass (with the API load, uploading, or G feeds per subscription)
    local n=$1 dir=$out/n$1 extra=${2:-}
    local api="" upload="" per_subscription=$first_mode
    [ "$extra" = api ] && api=1
    [ "$extra" = upload ] && upload=1
    [[ "$extra" == mode-* ]] && per_subscription=${extra#mode-}
    [ -n "$extra" ] && dir=$out/n$1/$extra
    mkdir -p "$dir/recordings"
    start_janus "$n" "$dir" "jr-bench-$$-$n"
    local storage=""
    if [ -n "$upload" ]; then
        . scripts/garage.sh
        garage_start "$ns" "$dir"
        queue_uploads "$n" "$dir"
        # Paced so that the uploads last the whole pass (uploads finished before the
        # measurement starts would measure nothing): N x MiB over the publishing time.
        storage="$(storage_toml "$dir")
max_bytes_per_second = $((n * BENCH_UPLOAD_MIB * 1048576 / (secs > 20 ? secs - 10 : secs)))"
    fi

    local receive="feeds_per_subscription = $per_subscription"
    [ "$per_subscription" = forward ] && receive='rtp_forward = { listen = "127.0.0.1:0" }'
    cat >"$dir/janus-recorder.toml" <<CONFIG
[janus]
url = "ws://127.0.0.1:8188"
$receive
[output]
dir = "$dir/recordings"
[network]
advertise = ["10.201.0.2"]
[[rooms]]
room = $room
[http]
listen = "127.0.0.1:9469"
$storage
CONFIG
    # `ip netns exec` execs the program, so $! is the daemon itself.
    env RUST_LOG=info ${BENCH_DAEMON_ENV:-} ip netns exec "$ns" "$bin" run --config "$dir/janus-recorder.toml" >"$dir/janus-recorder.log" 2>&1 &
    local daemon=$!
    wait_log "$dir/janus-recorder.log" "watching room" 20
    sleep 1
    local base_kib base_anon_kib cpu0 janus_cpu0
    base_kib=$(kib_of "$daemon" VmRSS)
    base_anon_kib=$(kib_of "$daemon" RssAnon)
    cpu0=$(cpu_of "$daemon")
    janus_cpu0=$(cpu_of "$janus")
    local http0 rec0
    http0=$(threads_cpu "$daemon" janus-recorder-)
    rec0=$(threads_cpu "$daemon" "janus-recorder)")

    # The daemon's RSS every 10 s while it records (seconds since the publishers started, KiB),
    # and its anonymous part (heap and stacks: what feeds cost; the rest is mostly the
    # binary's own code pages, faulted in as code paths are first used), every 2 s for the peak.
    (
        t0=$(date +%s)
        i=0
        while kill -0 "$daemon" 2>/dev/null; do
            [ $((i % 5)) -eq 0 ] && echo "$(($(date +%s) - t0)) $(kib_of "$daemon" VmRSS)" >>"$dir/rss.txt"
            kib_of "$daemon" RssAnon >>"$dir/anon.txt"
            i=$((i + 1))
            sleep 2
        done
    ) 2>/dev/null &
    echo "== N=$n: $n synthetic publishers for ${secs}s (logs in $dir)"
    local perf=""
    if [ -n "${BENCH_PERF:-}" ]; then
        # Samples the daemon's stacks while it records (perf.data; `perf report -i` it).
        perf record -F 499 -g -p "$daemon" -o "$dir/perf.data" -- sleep "$secs" >"$dir/perf.log" 2>&1 &
        perf=$!
    fi
    local load=""
    if [ -n "$api" ]; then
        # From when the first recordings exist, for the rest of the publishers' time.
        ( wait_log "$dir/janus-recorder.log" "recording started" 30 >/dev/null 2>&1
          ip netns exec "$ns" python3 scripts/api_load.py --rps "$BENCH_API_RPS" \
              --secs "$((secs - 5))" --out "$dir/api.json" ) &
        load=$!
    fi
    steady_window "$dir" &
    local steady=$!
    publish "$n" "$dir" --hold
    wait "$steady" || true
    [ -n "$load" ] && wait "$load"
    [ -n "$upload" ] && grep -c "uploaded and verified" "$dir/janus-recorder.log" >"$dir/uploaded-while-recording.txt"
    # Every feed's file is finalized when its publisher leaves.
    wait_log "$dir/janus-recorder.log" "recording finished" 30 "$n" || true
    local cpu1 peak_kib janus_cpu1
    cpu1=$(cpu_of "$daemon")
    peak_kib=$(kib_of "$daemon" VmHWM)
    local peak_anon_kib
    peak_anon_kib=$(sort -n "$dir/anon.txt" 2>/dev/null | tail -1)
    janus_cpu1=$(cpu_of "$janus")
    local http1 rec1
    http1=$(threads_cpu "$daemon" janus-recorder-)
    rec1=$(threads_cpu "$daemon" "janus-recorder)")
    kill -TERM "$daemon"
    wait "$daemon" || true
    if [ -n "$perf" ]; then
        # perf.data is complete once perf record has exited (it stops with the daemon at the
        # latest). Flat percentages per symbol, self time only (-g none: no call chains under
        # each line); the header's '#' lines left out, and the IPC columns perf adds to a sort
        # by symbol, which are "-" without branch records.
        wait "$perf" || true
        perf report --stdio --no-children --sort symbol -g none -i "$dir/perf.data" 2>/dev/null \
            | grep -E '^ *[0-9.]+%' | sed -E 's/ +- +- *$//; s/ +$//' | head -25 \
            >"$dir/perf-top.txt" || true
    fi

    cat >"$dir/daemon.json" <<STATS
{"feeds": $n, "secs": $secs, "daemon_cpu": [$cpu0, $cpu1], "janus_cpu": [$janus_cpu0, $janus_cpu1],
 "base_kib": $base_kib, "peak_kib": $peak_kib,
 "base_anon_kib": $base_anon_kib, "peak_anon_kib": ${peak_anon_kib:-$base_anon_kib},
 "recording_thread_cpu": [$rec0, $rec1], "http_thread_cpu": [$http0, $http1],
 "feeds_per_subscription": "$per_subscription", "video": "$video"}
STATS
    cleanup
    ns=""
}

# Janus's CPU over the steady window of a pass, into DIR/janus-steady.json: from 15 s after
# the publishers start until 10 s before they stop (passes of 45 s or more), when every
# subscription is set up and none is torn down yet, so that the figure is the cost per minute
# of carrying our subscriptions, apart from setting them up. Run beside `publish`, in both
# passes alike. BENCH_PERF_JANUS=1 also samples Janus's stacks over that window
# (DIR/janus-perf.data; its heaviest libraries and symbols in DIR/janus-perf-top.txt).
steady_window() { # DIR
    local dir=$1 window=$((secs - 25))
    [ "$secs" -ge 45 ] || return 0
    sleep 15
    local c0 c1
    c0=$(cpu_of "$janus")
    if [ -n "${BENCH_PERF_JANUS:-}" ]; then
        perf record -F 499 -g -p "$janus" -o "$dir/janus-perf.data" -- sleep "$window" \
            >"$dir/janus-perf.log" 2>&1 || true
    else
        sleep "$window"
    fi
    c1=$(cpu_of "$janus")
    echo "{\"window\": $window, \"janus_cpu\": [$c0, $c1]}" >"$dir/janus-steady.json"
    if [ -n "${BENCH_PERF_JANUS:-}" ]; then
        { perf report --stdio --no-children --sort dso -g none -i "$dir/janus-perf.data" 2>/dev/null \
              | grep -E '^ *[0-9.]+%' | head -12
          echo
          perf report --stdio --no-children --sort dso,symbol -g none -i "$dir/janus-perf.data" 2>/dev/null \
              | grep -E '^ *[0-9.]+%' | sed -E 's/ +- +- *$//; s/ +$//' | head -30
        } >"$dir/janus-perf-top.txt" || true
    fi
}

baseline_one() { # N: the same Janus, room and publishers, no daemon
    local n=$1 dir=$out/n$1/baseline
    start_janus "$n" "$dir" "jr-bench-$$-$n-b"
    # Janus's start-up left out of the measurement, as in the daemon pass (where the daemon's
    # start and a second more come between).
    sleep 1
    local janus_cpu0 janus_cpu1
    janus_cpu0=$(cpu_of "$janus")
    echo "== N=$n: the same without the daemon (logs in $dir)"
    # No --hold: no subscriber will ask for a keyframe. The publishers send from the moment
    # their media connects, the same $secs seconds.
    steady_window "$dir" &
    local steady=$!
    publish "$n" "$dir"
    wait "$steady" || true
    janus_cpu1=$(cpu_of "$janus")
    echo "{\"janus_cpu\": [$janus_cpu0, $janus_cpu1]}" >"$dir/janus.json"
    cleanup
    ns=""
}

probe_one() { # N GROUP ("none": no subscriber): Janus's CPU for the probe's subscriptions
    local n=$1 group=$2 dir=$out/n$1/subscribe-$2
    mkdir -p "$dir"
    start_janus "$n" "$dir" "jr-bench-$$-$n-s$group"
    echo "== N=$n: subscriptions of $group feeds each, nothing recorded (logs in $dir)"
    local window=$((secs > 20 ? secs - 10 : secs))
    ( secs=$((window + 25)) publish "$n" "$dir" ) &
    local publishers=$! probe=""
    if [ "$group" != none ]; then
        local how=(--group "$group")
        [ "$group" = forward ] && how=(--forward)
        RUST_LOG=warn ip netns exec "$ns" "$bin" subscribe-probe --url ws://127.0.0.1:8188 \
            --room $room --feeds "$n" "${how[@]}" --seconds "$((window + 20))" \
            --advertise 10.201.0.2 --report "$dir/probe.json" >"$dir/probe.log" 2>&1 &
        probe=$!
    fi
    sleep 15
    local janus_cpu0 janus_cpu1 probe_cpu0=0 probe_cpu1=0
    janus_cpu0=$(cpu_of "$janus")
    [ -n "$probe" ] && probe_cpu0=$(cpu_of "$probe")
    sleep "$window"
    janus_cpu1=$(cpu_of "$janus")
    [ -n "$probe" ] && probe_cpu1=$(cpu_of "$probe")
    [ -n "$probe" ] && { wait "$probe" || true; }
    wait "$publishers" || true
    echo "{\"feeds\": $n, \"group\": \"$group\", \"window\": $window, \"janus_cpu\": [$janus_cpu0, $janus_cpu1], \"probe_cpu\": [$probe_cpu0, $probe_cpu1]}" >"$dir/cpu.json"
    cleanup
    ns=""
}

bench_all() { # every N of $feeds_list, into $out, with $clip
    mkdir -p "$out"
    for n in $feeds_list; do
        if [ -n "${BENCH_SUBSCRIBE_GROUPS:-}" ]; then
            for g in none $BENCH_SUBSCRIBE_GROUPS; do
                probe_one "$n" "$g"
            done
            python3 scripts/bench_report.py subscribe "$out/n$n" >"$out/n$n/subscribe-summary.txt"
            cat "$out/n$n/subscribe-summary.txt"
            [ -n "${BENCH_SUBSCRIBE_ONLY:-}" ] && continue
        fi
        run_one "$n"
        baseline_one "$n"
        python3 scripts/bench_report.py measure "$out/n$n"
        # The other subscription modes: the same pass, measured against the same baseline.
        for m in $other_modes; do
            run_one "$n" "mode-$m"
            ln -sfn ../baseline "$out/n$n/mode-$m/baseline"
            python3 scripts/bench_report.py measure "$out/n$n/mode-$m"
        done
        if [ -n "${BENCH_API_RPS:-}" ]; then
            run_one "$n" api
            python3 scripts/bench_report.py api "$out/n$n" >"$out/n$n/api-summary.txt"
        fi
        if [ -n "${BENCH_UPLOAD_MIB:-}" ]; then
            run_one "$n" upload
            python3 scripts/bench_report.py upload "$out/n$n" >"$out/n$n/upload-summary.txt"
        fi
    done
}

report() { # the tables of $out
    [ -n "${BENCH_SUBSCRIBE_ONLY:-}" ] || python3 scripts/bench_report.py table "$out"
    for n in $feeds_list; do
        [ -s "$out/n$n/api-summary.txt" ] && { echo; cat "$out/n$n/api-summary.txt"; }
        [ -s "$out/n$n/upload-summary.txt" ] && { echo; cat "$out/n$n/upload-summary.txt"; }
        [ -s "$out/n$n/subscribe-summary.txt" ] && { echo; cat "$out/n$n/subscribe-summary.txt"; }
    done
    for n in $feeds_list; do
        top=$out/n$n/perf-top.txt
        [ -s "$top" ] || continue
        echo
        echo "The daemon's heaviest symbols at $n feeds, self time (all 25 in $top):"
        echo
        echo '```'
        head -10 "$top"
        echo '```'
    done
    for top in "$out"/n*/janus-perf-top.txt "$out"/n*/*/janus-perf-top.txt; do
        [ -s "$top" ] || continue
        echo
        echo "Janus's heaviest libraries over the steady window, self time (${top#"$out"/}):"
        echo
        echo '```'
        sed '/^$/q' "$top"
        echo '```'
    done
}

if [ -z "$rates_list" ]; then
    bench_all
else
    for rate in $rates_list; do
        clip=$root/media/vp8-$size-$rate.webm
        # Made beside it and renamed, so a test reading the same clip never sees half of it.
        [ -s "$clip" ] || { scripts/make-clip.sh "$clip.part.webm" vp8 "$size" "$rate" >/dev/null &&
            mv "$clip.part.webm" "$clip"; }
        video="$size VP8 at $rate (media/${clip##*/})"
        out=$output/rate-$rate
        echo "== video: $video"
        bench_all
    done
fi

echo
echo "== janus-recorder benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
if [ -z "$rates_list" ]; then
    report
else
    for rate in $rates_list; do
        out=$output/rate-$rate
        echo
        echo "=== video at $rate"
        report
    done
fi
