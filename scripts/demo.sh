#!/usr/bin/env bash
# Records a real Janus VideoRoom meeting end to end on this machine, then proves the files play.
#
# Inside a private network namespace (so nothing leaves the machine) it starts Janus 1.1.2 with
# two rooms (1234: VP8, 1235: VP9), two headless Chromium publishers with fake camera and
# microphone, etcd, and two janus-recorder instances ("east" and "west") sharing the rooms as a
# fleet ([cluster]): each records one room. After DEMO_SECS seconds Alice leaves; then the
# instance recording Bob's room is stopped with SIGTERM, the other takes the room over at once
# (Bob's recording goes on in a second part, linked to the first), and is itself stopped with
# SIGTERM while Bob is still publishing. The recordings are checked with `janus-recorder check`
# and ffprobe. Every recording, sidecar and room manifest is uploaded to
# a single-node Garage (S3) in the namespace ([storage]); Bob's, finalized by the SIGTERM, go
# up when the recorder starts again (Bob gone), and the bucket is listed at the end.
# Recordings and logs stay in ./demo-output. Run scripts/setup.sh first; needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${DEMO_SECS:-20}
out=$root/demo-output
ns=jr-demo-$$

rm -rf "$out"
mkdir -p "$out/janus-conf" "$out/www/control" "$out/recordings"

echo "== building janus-recorder (release)"
cargo build --release --quiet
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
bin=$target/release/janus-recorder

cleanup() {
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT

echo "== network namespace $ns: veth 10.201.0.1 <-> 10.201.0.2"
ip netns add "$ns"
inns() { ip netns exec "$ns" "$@"; }
inns ip link set lo up
inns ip link add va type veth peer name vb
inns ip addr add 10.201.0.1/24 dev va
inns ip addr add 10.201.0.2/24 dev vb
inns ip link set va up
inns ip link set vb up

echo "== Garage, the S3 server (log: demo-output/garage.log)"
. scripts/garage.sh
garage_start "$ns" "$out"

echo "== etcd, the fleet's coordination store (log: demo-output/etcd.log)"
inns etcd --name demo --data-dir "$out/etcd" --listen-client-urls http://127.0.0.1:2379 \
    --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
    --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster demo=http://127.0.0.1:2380 >"$out/etcd.log" 2>&1 &
for _ in $(seq 100); do
    inns etcdctl --endpoints http://127.0.0.1:2379 endpoint health >/dev/null 2>&1 && break
    sleep 0.2
done

echo "== Janus (log: demo-output/janus.log)"
cp tests/janus/janus.jcfg tests/janus/janus.transport.websockets.jcfg "$out/janus-conf/"
cat > "$out/janus-conf/janus.plugin.videoroom.jcfg" <<ROOMS
general: {
}
room-1234: {
	description = "Demo room (VP8)"
	publishers = 16
	audiocodec = "opus"
	videocodec = "vp8"
}
room-1235: {
	description = "Demo room (VP9)"
	publishers = 16
	audiocodec = "opus"
	videocodec = "vp9"
}
ROOMS
inns janus -F "$out/janus-conf" -C "$out/janus-conf/janus.jcfg" >"$out/janus.log" 2>&1 &
wait_log() { # file pattern seconds
    for _ in $(seq $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "timed out waiting for '$2' in $1:" >&2; tail -20 "$1" >&2; exit 1
}
wait_log "$out/janus.log" "WebSockets thread started" 20

echo "== two janus-recorder instances sharing the rooms (logs: demo-output/janus-recorder-*.log)"
config() { # instance: its config, on stdout
    cat <<CONFIG
[janus]
url = "ws://127.0.0.1:8188"

[output]
dir = "$out/recordings"
state_dir = "$out/state-$1"

[network]
advertise = ["10.201.0.2"]

[[rooms]]
room = 1234

[[rooms]]
room = 1235

[cluster]
endpoints = ["http://127.0.0.1:2379"]
instance = "$1"
lease_ttl = "6s"

$(storage_toml "$out")
CONFIG
}
declare -A recorder
for name in east west; do
    config "$name" >"$out/janus-recorder-$name.toml"
    # Not through inns: $! must be the recorder itself (ip netns exec execs it) for SIGTERM.
    ip netns exec "$ns" "$bin" run --config "$out/janus-recorder-$name.toml" \
        >"$out/janus-recorder-$name.log" 2>&1 &
    recorder[$name]=$!
done
wait_log "$out/janus-recorder-east.log" "watching room" 20
wait_log "$out/janus-recorder-west.log" "watching room" 20
holder() { # room: the instance watching it
    grep -lE "room=$1\}.*watching room" "$out"/janus-recorder-east.log "$out"/janus-recorder-west.log \
        | head -1 | sed 's/.*janus-recorder-\(.*\)\.log/\1/'
}
echo "room 1234 is recorded by $(holder 1234), room 1235 by $(holder 1235)"

echo "== publishers: Alice in room 1234 (VP8) leaves after ${secs}s; Bob in room 1235 (VP9) stays"
cp tests/publisher/publisher.html "$out/www/"
ln -s /usr/share/javascript/janus-gateway/janus.min.js "$out/www/"
ln -s /usr/share/javascript/webrtc-adapter/adapter.min.js "$out/www/"
inns python3 -u -m http.server 8000 --bind 127.0.0.1 --directory "$out/www" >"$out/http.log" 2>&1 &
wait_log "$out/http.log" "Serving HTTP" 10
publish() { # name room extra-query
    inns chromium --headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --use-fake-device-for-media-stream --use-fake-ui-for-media-stream \
        --enable-logging=stderr --v=0 --user-data-dir="$out/chromium-$1" \
        "http://127.0.0.1:8000/publisher.html?room=$2&name=$1$3" \
        >"$out/chromium-$1.log" 2>&1 &
}
publish Alice 1234 "&secs=$secs&end=leave"
publish Bob 1235 ""
wait_log "$out/chromium-Alice.log" "JRT-LEFT" $((secs + 30))
sleep 1

first=$(holder 1235)
other=$([ "$first" = east ] && echo west || echo east)
echo "== stopping $first (recording Bob's room) with SIGTERM: $other takes the room over"
kill -TERM "${recorder[$first]}"
wait "${recorder[$first]}" || true
for _ in $(seq 200); do [ "$(grep -cE 'room=1235\}.*watching room' "$out/janus-recorder-$other.log")" -gt 0 ] && break; sleep 0.1; done
sleep 5
echo "== stopping $other with SIGTERM while Bob is still publishing"
kill -TERM "${recorder[$other]}"
status=0
wait "${recorder[$other]}" || status=$?
echo "$other exited with status $status"

echo "== Bob leaves; each instance starts again and uploads what its SIGTERM finalized"
for pid in $(pgrep -f "user-data-dir=$out/chromium-Bob" || true); do kill "$pid" 2>/dev/null || true; done
files=$(find "$out/recordings" -type f \( -name '*.webm' -o -name '*.json' \) | wc -l)
for name in east west; do
    # No rooms this time (the API on loopback stands in for them), so no new watch is
    # started; nor a [cluster]: the instance only uploads its queue (in its state_dir).
    { config "$name" | sed '/^\[\[rooms\]\]/,/^$/d; /^\[cluster\]/,/^$/d'; printf '[http]\nlisten = "127.0.0.1:9470"\n'; } \
        >"$out/janus-recorder-uploads-$name.toml"
    ip netns exec "$ns" "$bin" run --config "$out/janus-recorder-uploads-$name.toml" \
        >"$out/janus-recorder-uploads-$name.log" 2>&1 &
    recorder=$!
    wait_log "$out/janus-recorder-uploads-$name.log" "serving the HTTP API" 20
    for _ in $(seq 600); do
        [ -z "$(ls -A "$out/state-$name/uploads/queue" 2>/dev/null)" ] && break
        sleep 0.1
    done
    kill -TERM "$recorder"
    wait "$recorder" || true
done

echo "== recordings (and who recorded each part, why it ended, from its sidecar)"
find "$out/recordings" -type f | sort
for f in "$out"/recordings/*/*.json; do
    case "$f" in *.room.json) continue ;; esac
    python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))
print("%s part %s: recorded by %s, ended: %s%s" % (s["file"], s.get("part"), s.get("recorded_by"),
      s.get("end_reason"), ", after " + s["previous_part"] if s.get("previous_part") else ""))' "$f"
done
echo
for f in $(find "$out/recordings" -name '*.webm' | sort); do
    ffprobe -v error -show_entries stream=codec_name,width,height:format=duration -of compact "$f"
done
echo
echo "== janus-recorder check"
"$bin" check "$out/recordings"
echo
echo "== the bucket (S3 ListObjectsV2 with curl, signed with the demo's key)"
garage_s3 "$ns" "$out" "recordings?list-type=2" | python3 -c '
import sys, xml.etree.ElementTree as ET
ns = {"s3": "http://s3.amazonaws.com/doc/2006-03-01/"}
for c in ET.parse(sys.stdin).getroot().findall("s3:Contents", ns):
    print("%10d  %s" % (int(c.find("s3:Size", ns).text), c.find("s3:Key", ns).text))'
echo "($(cat "$out"/janus-recorder*.log | grep -c 'uploaded and verified') uploads verified, $files files recorded)"
