#!/usr/bin/env bash
# Makes the synthetic publisher's media: by default media/clip.webm, 10 s of ffmpeg's test
# pattern (VP8, 640x480 at 20 fps, about 400 kb/s, a keyframe every 2 s, as a webcam sends)
# and a tone (Opus, 20 ms frames). Made at set-up rather than kept in the repository.
# Other video codecs for load tests of those rooms, same shape: h264 (constrained baseline,
# no B-frames, .mkv), h265 (no B-frames, .mkv), av1 (.webm), vp9 (.webm).
# SIZE (e.g. 1920x1080, 3840x2160) and BITRATE (ffmpeg's form: 400k, 12M) make larger
# clips, as screen shares, 1080p and 4K cameras and hardware encoders send. A BITRATE given
# is held constant (minrate = maxrate), and the pattern gets a fixed grain (the same in every
# frame: costly in a keyframe, free in the frames after it, as a screen share's text is). The
# bare test pattern is so easy to code that the encoders stayed far below the rate (VP8 1080p
# asked for 12M: 5 Mb/s) and its keyframes small (70 KB); with the grain, VP8 1080p at 12M has
# keyframes of 500-800 KB (400-700 packets) as real sources at these rates do.
# Usage: scripts/make-clip.sh [OUT] [vp8|vp9|h264|h265|av1] [SIZE] [BITRATE]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-media/clip.webm}
codec=${2:-vp8}
size=${3:-640x480}
rate=${4:-400k}
[[ "$size" =~ ^[0-9]+x[0-9]+$ ]] || { echo "make-clip.sh: SIZE is WIDTHxHEIGHT, not $size" >&2; exit 2; }
[[ "$rate" =~ ^[0-9]+[kM]?$ ]] || { echo "make-clip.sh: BITRATE is like 400k or 12M, not $rate" >&2; exit 2; }
constant=()
pattern="testsrc2=size=$size:rate=20"
if [ -n "${4:-}" ]; then
    constant=(-minrate "$rate" -maxrate "$rate" -bufsize "$rate")
    pattern="$pattern,noise=alls=30:allf=u"
fi
case "$codec" in
    vp8) video=(-c:v libvpx -b:v "$rate" -g 40 -deadline realtime -cpu-used 8) ;;
    vp9) video=(-c:v libvpx-vp9 -b:v "$rate" -g 40 -deadline realtime -cpu-used 8) ;;
    h264) video=(-c:v libx264 -profile:v baseline -preset veryfast -tune zerolatency -b:v "$rate"
                 -g 40 -keyint_min 40 -sc_threshold 0 -pix_fmt yuv420p) ;;
    h265) video=(-c:v libx265 -preset veryfast -b:v "$rate" -pix_fmt yuv420p
                 -x265-params log-level=error:bframes=0:keyint=40:min-keyint=40:scenecut=0) ;;
    av1) video=(-c:v libaom-av1 -usage realtime -cpu-used 8 -b:v "$rate" -g 40 -keyint_min 40) ;;
    *) echo "make-clip.sh: unknown codec $codec (vp8, vp9, h264, h265, av1)" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$out")"
ffmpeg -nostdin -v error -y \
    -f lavfi -i "$pattern" \
    -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000" \
    -t 10 -shortest \
    "${video[@]}" "${constant[@]}" \
    -c:a libopus -b:a 32k -frame_duration 20 -ac 2 \
    "$out"
echo "made $out"
