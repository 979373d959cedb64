#!/usr/bin/env bash
# Makes the synthetic publisher's default media, media/clip.webm: 10 s of ffmpeg's test
# pattern (VP8, 640x480 at 20 fps, about 400 kb/s, a keyframe every 2 s, as a webcam sends)
# and a tone (Opus, 20 ms frames). Made at set-up rather than kept in the repository.
# Usage: scripts/make-clip.sh [OUT.webm]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-media/clip.webm}
mkdir -p "$(dirname "$out")"
ffmpeg -v error -y \
    -f lavfi -i "testsrc2=size=640x480:rate=20" \
    -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000" \
    -t 10 -shortest \
    -c:v libvpx -b:v 400k -g 40 -deadline realtime -cpu-used 8 \
    -c:a libopus -b:a 32k -frame_duration 20 -ac 2 \
    "$out"
echo "made $out"
