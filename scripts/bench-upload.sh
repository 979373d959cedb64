#!/usr/bin/env bash
# Measures [storage]'s upload of one large recording to Garage over loopback (the issue's
# target: at least 80% of the speed of a single PUT of the same file, at most 64 MiB more RSS):
# curl's single signed PUT of the file, then the daemon (release build) uploading the same file
# from its queue: hashed, sent in 8 MiB parts, verified by HEAD. The daemon's RSS is sampled
# every 50 ms while it uploads, against the same daemon idle with [storage] on.
# BENCH_UPLOAD_MIB sets the size (default 1024). Root and scripts/setup.sh needed; results in
# bench-output/upload/.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${BENCH_UPLOAD_MIB:-1024}
out=$PWD/bench-output/upload
ns=jr-bench-up-$$
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
cargo build --release --quiet --bin janus-recorder
bin=$target/release/janus-recorder

rm -rf "$out"
mkdir -p "$out/recordings/1"
cleanup() {
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
. scripts/garage.sh
garage_start "$ns" "$out"

file=$out/recordings/1/big.webm
head -c "${mib}M" /dev/urandom >"$file"
sync

echo "== one PUT of $mib MiB with curl"
t0=$(date +%s.%N)
code=$(garage_s3 "$ns" "$out" "recordings/once.webm" -T "$file" -o /dev/null -w "%{http_code}")
t1=$(date +%s.%N)
[ "$code" = 200 ] || { echo "PUT answered $code" >&2; exit 1; }
put=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
echo "PUT: $put s"

cat >"$out/config.toml" <<CONFIG
[janus]
url = "ws://127.0.0.1:8188"
[output]
dir = "$out/recordings"
[[rooms]]
room = 1
$(storage_toml "$out")
CONFIG
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
run() { # log
    ip netns exec "$ns" "$bin" run --config "$out/config.toml" >"$1" 2>&1 &
    pid=$!
}

echo "== the daemon idle with [storage] on"
run "$out/idle.log"
sleep 3
idle=$(rss "$pid")
kill -TERM "$pid"; wait "$pid" || true

echo "== the daemon uploading it from its queue"
id=0190aaaa-0000-7000-8000-00000000beef
mkdir -p "$out/recordings/.state/uploads/queue"
printf '{"id":"%s","path":"%s","key":"1/big.webm","kind":"media","bytes":%d,"queued_at":%d}\n' \
    "$id" "$file" $((mib << 20)) "$(date +%s)" >"$out/recordings/.state/uploads/queue/$id.json"
run "$out/upload.log"
peak=0
until grep -q 'uploaded and verified' "$out/upload.log"; do
    r=$(rss "$pid"); [ "$r" -gt "$peak" ] && peak=$r
    kill -0 "$pid" 2>/dev/null || { tail -20 "$out/upload.log" >&2; exit 1; }
    sleep 0.05
done
kill -TERM "$pid"; wait "$pid" || true
python3 - "$out/upload.log" "$put" "$idle" "$peak" "$mib" <<'PY'
import datetime, sys
log, put, idle, peak, mib = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def at(needle):
    line = next(l for l in open(log) if needle in l)
    return datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
secs = (at("uploaded and verified") - at("uploading recordings to object storage")).total_seconds()
print(f"daemon: {secs:.2f} s for {mib} MiB (hash, parts, HEAD): {mib / secs:.0f} MiB/s; "
      f"single PUT {put:.2f} s: {mib / put:.0f} MiB/s; daemon at {100 * put / secs:.0f}% of the PUT's speed")
print(f"RSS: idle {idle / 1024:.1f} MiB, peak while uploading {peak / 1024:.1f} MiB, "
      f"extra {(peak - idle) / 1024:.1f} MiB")
PY
