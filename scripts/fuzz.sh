#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time each, seeded with the Janus
# messages of tests/fixtures/janus, their SDP offers, and small WebM files made by ffmpeg.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60; FUZZ_TARGETS="a b" picks targets)
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP lets it use the stable
# toolchain's instrumentation flags. Crashes are saved under fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
export RUSTC_BOOTSTRAP=1

corpus=fuzz/corpus
mkdir -p "$corpus/janus_message" "$corpus/sdp_offer" "$corpus/webm_check" "$corpus/ice_candidate" \
    "$corpus/svg_timeline" "$corpus/webm_writer" "$corpus/api_input" "$corpus/secret_source"
cp tests/fixtures/janus/*.json "$corpus/janus_message/"
python3 - "$corpus/sdp_offer" "$corpus/ice_candidate" <<'PY'
import json, pathlib, sys
out, candidates = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for f in pathlib.Path("tests/fixtures/janus").glob("*.json"):
    msg = json.loads(f.read_text())
    jsep = msg.get("jsep") or msg.get("janusSdp")
    if jsep and jsep.get("sdp"):
        (out / f.stem).write_text(jsep["sdp"])
        lines = [l[2:] for l in jsep["sdp"].splitlines() if l.startswith("a=candidate:")]
        if lines:
            (candidates / f.stem).write_text("\n".join(lines))
    c = msg.get("candidate")
    if isinstance(c, dict) and c.get("candidate"):
        (candidates / f.stem).write_text(c["candidate"])
PY
if [ ! -s "$corpus/webm_check/vp8-opus.webm" ]; then
    ffmpeg -nostdin -v error -y -f lavfi -i testsrc=size=64x48:rate=10 -f lavfi \
        -i sine=sample_rate=48000 -t 1 -c:v libvpx -c:a libopus -ac 2 "$corpus/webm_check/vp8-opus.webm"
    ffmpeg -nostdin -v error -y -f lavfi -i sine=sample_rate=48000 -t 1 -c:a libopus \
        "$corpus/webm_check/opus.webm"
fi
# api_input: a path segment or query on the first line, a request body after it.
printf '1234\n{"pin": "42", "max_duration": "2h", "split_after": "1h", "relay": {"room": 5}}' \
    >"$corpus/api_input/put"
printf 'room=1234&since=2026-12-01T00:00:00Z&state=finished&limit=10&cursor=1.1234~x\n{"until": "2026-12-01T00:00:00Z"}' \
    >"$corpus/api_input/query"
printf 'ws://user:pw@host:8188/?token=x\na=candidate:1 1 udp 1 10.0.0.1 9 typ host\r\n' \
    >"$corpus/api_input/url"
# secret_source: TOML `s = ...` (a credential name when it is not TOML).
printf 's = { credential = "api_secret" }' >"$corpus/secret_source/credential"
printf 's = { file = "/run/x" }' >"$corpus/secret_source/file"
printf 's = "inline"' >"$corpus/secret_source/inline"
printf '../etc/shadow' >"$corpus/secret_source/name"
# svg_timeline: a first byte with its lowest bit clear reads the rest as a WebM file.
for f in "$corpus"/webm_check/*.webm; do
    { printf '\0'; cat "$f"; } >"$corpus/svg_timeline/$(basename "$f")"
done

for target in ${FUZZ_TARGETS:-janus_message sdp_offer webm_check ice_candidate svg_timeline webm_writer api_input secret_source}; do
    echo "== $target for ${secs}s"
    cargo fuzz run -s none -a "$target" "$corpus/$target" -- \
        -max_total_time="$secs" -max_len=65536 -print_final_stats=1 2>&1 |
        grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss|==|SUMMARY)|panicked|Crash|crash-" || true
done
