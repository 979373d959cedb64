#!/usr/bin/env python3
"""The benchmark's arithmetic (scripts/bench.sh runs it; Python's standard library only).

measure DIR: runs janus-pp-rec over Janus's own recordings in DIR/janus-rec, timing its CPU
(getrusage of each child), and combines that with the daemon's figures (DIR/daemon.json), the
publishers' report (DIR/sent.json), the daemon's sidecars, and Janus's CPU and the publishers'
report of the pass without the daemon (DIR/baseline/) into DIR/result.json.
table OUT: prints one Markdown table of every OUT/n*/result.json.
"""
import glob
import json
import math
import os
import resource
import statistics
import subprocess
import sys

# Seconds one janus-pp-rec conversion may take before it is killed.
PP_REC_TIMEOUT = 120


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def duration_s(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", path],
        capture_output=True, text=True, check=False).stdout.strip()
    try:
        return float(out)
    except ValueError:
        return 0.0


def measure(d):
    stats = json.load(open(os.path.join(d, "daemon.json")))
    feeds = stats["feeds"]
    sent = {f["display"]: f for f in json.load(open(os.path.join(d, "sent.json")))["feeds"]}
    sidecars = {}
    for path in glob.glob(os.path.join(d, "recordings", "*", "*.json")):
        # The room's manifest (<start>.room.json) sits beside the feeds' sidecars.
        if path.endswith(".room.json"):
            continue
        s = json.load(open(path))
        sidecars[s.get("display")] = s

    # janus-pp-rec over Janus's recordings of the same feeds, one .mjr at a time.
    pp_cpu = 0.0
    pp_hung = []
    pp_video_s = 0.0
    pp_dir = os.path.join(d, "janus-pp-rec")
    os.makedirs(pp_dir, exist_ok=True)
    mjrs = sorted(glob.glob(os.path.join(d, "janus-rec", "*.mjr")))
    for mjr in mjrs:
        video = "-video-" in os.path.basename(mjr)
        target = os.path.join(pp_dir, os.path.basename(mjr)[:-4] + (".webm" if video else ".opus"))
        before = child_cpu()
        try:
            # janus-pp-rec 1.1.2 once sat in a futex wait forever on a video .mjr (0 CPU):
            # bounded, killed and counted, so one hung conversion cannot stall the run.
            subprocess.run(["janus-pp-rec", mjr, target], capture_output=True, check=False,
                           timeout=PP_REC_TIMEOUT)
        except subprocess.TimeoutExpired:
            pp_hung.append(os.path.basename(mjr))
        pp_cpu += child_cpu() - before
        if video:
            pp_video_s += duration_s(target)

    recorded_s = sum((s.get("duration_ms") or 0) / 1000 for s in sidecars.values())
    daemon_cpu = stats["daemon_cpu"][1] - stats["daemon_cpu"][0]
    janus_cpu = stats["janus_cpu"][1] - stats["janus_cpu"][0]
    lost = []
    video_sent = sum(f["video_frames"] for f in sent.values())
    video_written = sum((sidecars.get(name, {}).get("video_frames") or 0) for name in sent)
    for name, f in sent.items():
        s = sidecars.get(name, {})
        frames_sent = f["audio_frames"] + f["video_frames"]
        frames_written = (s.get("audio_frames") or 0) + (s.get("video_frames") or 0)
        lost.append((frames_sent - frames_written, frames_sent, frames_written, name))
    keys = sorted(s["first_keyframe_ms"] for s in sidecars.values()
                  if s.get("first_keyframe_ms") is not None)
    # Nearest rank: a time some feed really had, no interpolation between two feeds (with
    # fewer than 20 feeds it is the worst).
    key_p95 = keys[math.ceil(0.95 * len(keys)) - 1] if keys else None

    # Janus's CPU with and without our subscriptions. The two passes publish the same N feeds
    # for the same seconds, so both are divided by the same minutes of publishing; what the
    # daemon pass adds, per feed-minute, is what our subscriptions cost Janus (setting them up
    # included). The baseline's frames sent tell whether its publishers sent as much.
    base_dir = os.path.join(d, "baseline")
    base_cpu = None
    base_sent = []
    if os.path.exists(os.path.join(base_dir, "janus.json")):
        c = json.load(open(os.path.join(base_dir, "janus.json")))["janus_cpu"]
        base_cpu = c[1] - c[0]
    if os.path.exists(os.path.join(base_dir, "sent.json")):
        base_sent = json.load(open(os.path.join(base_dir, "sent.json")))["feeds"]
    minutes = stats["secs"] / 60
    janus_per_min = janus_cpu / minutes
    # The same over the steady window of both passes (bench.sh `steady_window`): every
    # subscription set up, none torn down; what carrying them costs Janus per minute.
    steady = steady_extra(d, base_dir, feeds)
    base_per_min = base_cpu / minutes if base_cpu is not None else None
    # RSS samples (seconds, KiB), and the RSS at 5 and 30 minutes: the first sample at or
    # after each, if the run lasted that long.
    samples = []
    rss_path = os.path.join(d, "rss.txt")
    if os.path.exists(rss_path):
        for line in open(rss_path):
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                samples.append((int(parts[0]), int(parts[1])))

    def rss_at(t):
        # Samples are 10 s apart: the last one of a run of exactly t seconds is just short of t.
        return next((kib / 1024 for s, kib in samples if s >= t - 15), None)

    finalize_ms = []
    for line in open(os.path.join(d, "janus-recorder.log"), errors="replace"):
        if "recording finished" in line and "finalize_ms=" in line:
            finalize_ms.append(int(line.split("finalize_ms=")[1].split()[0]))
    result = {
        "rss_mib_at_5_min": rss_at(300),
        "rss_mib_at_30_min": rss_at(1800),
        "rss_mib_last": samples[-1][1] / 1024 if samples else None,
        "finalize_ms_max": max(finalize_ms, default=None),
        "feeds": feeds,
        "secs": stats["secs"],
        "publishers_ok": sum(1 for f in sent.values() if not f.get("error")),
        "recordings": len(sidecars),
        "daemon_cpu_s": daemon_cpu,
        "daemon_feed_min": recorded_s / 60,
        "daemon_cpu_per_feed_min": daemon_cpu / (recorded_s / 60) if recorded_s else None,
        "pp_rec_files": len(mjrs),
        "pp_rec_cpu_s": pp_cpu,
        "pp_rec_hung": pp_hung,
        "pp_rec_feed_min": pp_video_s / 60,
        "pp_rec_cpu_per_feed_min": pp_cpu / (pp_video_s / 60) if pp_video_s else None,
        "janus_cpu_per_feed_min": janus_cpu / (recorded_s / 60) if recorded_s else None,
        "janus_cpu_s": janus_cpu,
        "janus_cpu_per_min": janus_per_min,
        "janus_baseline_cpu_s": base_cpu,
        "janus_baseline_cpu_per_min": base_per_min,
        "janus_extra_cpu_per_feed_min":
            (janus_per_min - base_per_min) / feeds if base_per_min is not None else None,
        "janus_steady_cpu_per_min": steady[0],
        "janus_steady_baseline_cpu_per_min": steady[1],
        "janus_steady_extra_cpu_per_feed_min": steady[2],
        "baseline_publishers_ok": sum(1 for f in base_sent if not f.get("error")),
        "baseline_frames_sent": sum(f["audio_frames"] + f["video_frames"] for f in base_sent),
        "base_mib": stats["base_kib"] / 1024,
        "rss_per_feed_mib": (stats["peak_kib"] - stats["base_kib"]) / 1024 / feeds,
        "anon_per_feed_mib": ((stats["peak_anon_kib"] - stats["base_anon_kib"]) / 1024 / feeds
                              if "peak_anon_kib" in stats else None),
        "video": stats.get("video"),
        "feeds_per_subscription": stats.get("feeds_per_subscription"),
        "video_frames_sent": video_sent,
        "video_frames_written": video_written,
        "frames_sent": sum(x[1] for x in lost),
        "frames_written": sum(x[2] for x in lost),
        "frames_lost": sum(max(0, x[0]) for x in lost),
        "worst_feed": max(lost, default=None),
        "first_keyframe_ms_median": statistics.median(keys) if keys else None,
        "first_keyframe_ms_p95": key_p95,
        "first_keyframe_ms_worst": keys[-1] if keys else None,
    }
    json.dump(result, open(os.path.join(d, "result.json"), "w"), indent=1)
    print(f"   N={feeds}: {result['recordings']} recordings, {result['frames_lost']} frames lost"
          f" (video {video_written} of {video_sent} written),"
          f" daemon {daemon_cpu:.2f} s CPU, janus-pp-rec {pp_cpu:.2f} s CPU,"
          f" Janus {janus_cpu:.2f} s CPU ({fmt(base_cpu, '.2f')} s without the daemon)")


def steady_extra(d, base_dir, feeds):
    """Janus's CPU per minute over the steady window with and without the daemon, and the
    difference per feed-minute; Nones where a pass has no window (runs under 45 s)."""
    def per_min(path):
        if not os.path.exists(path):
            return None
        c = json.load(open(path))
        return (c["janus_cpu"][1] - c["janus_cpu"][0]) / (c["window"] / 60)
    with_daemon = per_min(os.path.join(d, "janus-steady.json"))
    without = per_min(os.path.join(base_dir, "janus-steady.json"))
    if with_daemon is None or without is None:
        return with_daemon, without, None
    return with_daemon, without, (with_daemon - without) / feeds


def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)


def table(out):
    rows = []
    for pattern in [("n*", "result.json"), ("n*", "mode-*", "result.json")]:
        for path in glob.glob(os.path.join(out, *pattern)):
            rows.append(json.load(open(path)))
    def per_subscription(r):
        # A number of feeds per subscription (old runs wrote it as a number), or "forward".
        v = str(r.get("feeds_per_subscription") or 1)
        return -int(v) if v.isdigit() else 1

    rows.sort(key=lambda r: (r["feeds"], per_subscription(r)))
    videos = sorted({r.get("video") or "n/a" for r in rows})
    print(f"Video: {', '.join(videos)}\n")
    print("| feeds | per subscription | daemon CPU s/feed-min | janus-pp-rec CPU s/feed-min | ratio | daemon peak RSS MiB/feed (anonymous part)"
          " | frames sent / written (lost, worst feed) | video frames sent / written"
          " | first keyframe ms median / p95 / worst"
          " | Janus CPU s/min with / without the daemon | Janus's extra CPU for our subscriptions"
          " s/feed-min | the same, steady window: Janus CPU s/min with / without | extra s/feed-min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        d, p = r["daemon_cpu_per_feed_min"], r["pp_rec_cpu_per_feed_min"]
        ratio = d / p if d is not None and p else None
        worst = r["worst_feed"]
        worst_txt = f"{worst[3]}: {worst[0]}" if worst and worst[0] > 0 else "none"
        recs = "" if r["recordings"] == r["feeds"] else f", {r['recordings']}/{r['feeds']} recorded"
        print(f"| {r['feeds']} | {r.get('feeds_per_subscription') or 1} | {fmt(d, '.3f')} | {fmt(p, '.3f')} | {fmt(ratio, '.2f')}"
              f" | {r['rss_per_feed_mib']:.2f} (anon {fmt(r.get('anon_per_feed_mib'), '.2f')};"
              f" base {r['base_mib']:.1f})"
              f" | {r['frames_sent']} / {r['frames_written']} ({r['frames_lost']}, {worst_txt}{recs})"
              f" | {r.get('video_frames_sent', 'n/a')} / {r.get('video_frames_written', 'n/a')}"
              f" | {fmt(r['first_keyframe_ms_median'], '.0f')} / {fmt(r['first_keyframe_ms_p95'], '.0f')}"
              f" / {fmt(r['first_keyframe_ms_worst'], '.0f')}"
              f" | {fmt(r['janus_cpu_per_min'], '.1f')} / {fmt(r['janus_baseline_cpu_per_min'], '.1f')}"
              f" | {fmt(r['janus_extra_cpu_per_feed_min'], '.3f')}"
              f" | {fmt(r.get('janus_steady_cpu_per_min'), '.1f')}"
              f" / {fmt(r.get('janus_steady_baseline_cpu_per_min'), '.1f')}"
              f" | {fmt(r.get('janus_steady_extra_cpu_per_feed_min'), '.3f')} |")
    # The difference only means something if the baseline's publishers sent what the daemon
    # pass's did.
    for r in rows:
        ok, sent = r["baseline_publishers_ok"], r["baseline_frames_sent"]
        if ok != r["publishers_ok"] or abs(sent - r["frames_sent"]) > 0.01 * r["frames_sent"]:
            print(f"\nN={r['feeds']}: without the daemon {ok} publishers sent {sent} frames,"
                  f" with it {r['publishers_ok']} sent {r['frames_sent']}.")
    for r in rows:
        if r.get("pp_rec_hung"):
            print(f"\nN={r['feeds']}: janus-pp-rec hung on {len(r['pp_rec_hung'])} file(s) and was"
                  f" killed after {PP_REC_TIMEOUT} s (its CPU until then is counted): "
                  + ", ".join(r["pp_rec_hung"]))
    long = [r for r in rows if r.get("rss_mib_at_5_min") is not None]
    if long:
        print("\n| feeds | daemon RSS MiB at 5 min | at 30 min | at the end | longest finalize ms |")
        print("|---|---|---|---|---|")
        for r in long:
            print(f"| {r['feeds']} | {fmt(r['rss_mib_at_5_min'], '.1f')}"
                  f" | {fmt(r['rss_mib_at_30_min'], '.1f')} | {fmt(r['rss_mib_last'], '.1f')}"
                  f" | {fmt(r['finalize_ms_max'], '.0f')} |")
    print(f"\n{rows[0]['secs'] if rows else 0} s of publishing per run; janus-pp-rec converts each feed's"
          " audio and video .mjr (feed-minutes counted on its video output). Janus's CPU is per"
          " minute of publishing, in the run with the daemon and in one with the same publishers"
          " but no daemon; the difference, divided by the feeds, is what our subscriptions cost it"
          " (setting them up and tearing them down included). The steady window is the same from"
          " 15 s after the publishers start to 10 s before they stop, in both passes: what"
          " carrying the subscriptions costs per minute.")


def frames_lost(d, stats):
    """Frames sent minus frames written over every feed of one pass."""
    sent = json.load(open(os.path.join(d, "sent.json")))["feeds"]
    written = {}
    for path in glob.glob(os.path.join(d, "recordings", "*", "*.json")):
        if not path.endswith(".room.json"):
            s = json.load(open(path))
            written[s.get("display")] = (s.get("audio_frames") or 0) + (s.get("video_frames") or 0)
    return sum(f["audio_frames"] + f["video_frames"] - written.get(f["display"], 0) for f in sent)


def daemon_pass(sub):
    """One daemon pass's stats, its feed-minutes and its recording thread's CPU seconds."""
    stats = json.load(open(os.path.join(sub, "daemon.json")))
    feed_min = stats["feeds"] * stats["secs"] / 60
    rec = stats["recording_thread_cpu"][1] - stats["recording_thread_cpu"][0]
    return stats, feed_min, rec


def api(d):
    """The daemon pass with and without the HTTP API load (BENCH_API_RPS), side by side."""
    rows = []
    for name, sub in (("without requests", d), ("with requests", os.path.join(d, "api"))):
        stats, feed_min, rec = daemon_pass(sub)
        http = stats["http_thread_cpu"][1] - stats["http_thread_cpu"][0]
        rows.append((name, rec / feed_min, http, frames_lost(sub, stats)))
    load = json.load(open(os.path.join(d, "api", "api.json")))
    n = json.load(open(os.path.join(d, "daemon.json")))["feeds"]
    print(f"HTTP API under load at {n} feeds: {load['requests']} requests ({load['rps']}/s),"
          f" statuses {load['statuses']}, latency p50 {load['latency_ms']['p50']} ms,"
          f" p95 {load['latency_ms']['p95']} ms, p99 {load['latency_ms']['p99']} ms")
    print()
    print("| pass | recording thread CPU s/feed-min | HTTP thread CPU s | frames lost |")
    print("|---|---|---|---|")
    for name, rec, http, lost in rows:
        print(f"| {name} | {rec:.4f} | {http:.2f} | {lost} |")
    print(f"\nrecording thread with requests / without: {rows[1][1] / rows[0][1]:.3f}")


def upload(d):
    """The daemon pass with and without uploads to [storage] (BENCH_UPLOAD_MIB), side by side."""
    rows = []
    for name, sub in (("without uploads", d), ("uploading", os.path.join(d, "upload"))):
        stats, feed_min, rec = daemon_pass(sub)
        total = stats["daemon_cpu"][1] - stats["daemon_cpu"][0]
        # Every other thread (uploads, file writes, HTTP), exited ones included: what is not
        # the recording thread's in the process's own total.
        rows.append((name, rec / feed_min, total / feed_min, total - rec, frames_lost(sub, stats)))
    up = os.path.join(d, "upload")
    queued = glob.glob(os.path.join(up, "recordings", "upload", "old-*.webm"))
    mib = sum(os.path.getsize(f) for f in queued) / 2**20
    done = int(open(os.path.join(up, "uploaded-while-recording.txt")).read().split()[0] or 0)
    n = json.load(open(os.path.join(d, "daemon.json")))["feeds"]
    print(f"Uploading {len(queued)} finished recordings ({mib:.0f} MiB) while {n} feeds record:"
          f" {done} uploaded and verified while they recorded")
    print()
    print("| pass | recording thread CPU s/feed-min | daemon CPU s/feed-min | other threads' CPU s (uploads, disk, HTTP) | frames lost |")
    print("|---|---|---|---|---|")
    for name, rec, total, other, lost in rows:
        print(f"| {name} | {rec:.4f} | {total:.4f} | {other:.2f} | {lost} |")
    print(f"\nrecording thread uploading / without: {rows[1][1] / rows[0][1]:.3f}")


def subscribe(d):
    """Janus's CPU per subscription mode (BENCH_SUBSCRIBE_GROUPS), against no subscriber."""
    rows = []
    for sub in sorted(glob.glob(os.path.join(d, "subscribe-*", ""))):
        c = json.load(open(os.path.join(sub, "cpu.json")))
        minutes = c["window"] / 60
        janus = (c["janus_cpu"][1] - c["janus_cpu"][0]) / minutes
        probe = (c["probe_cpu"][1] - c["probe_cpu"][0]) / minutes / c["feeds"]
        report = os.path.join(sub, "probe.json")
        p = json.load(open(report)) if os.path.exists(report) else None
        rows.append((c["group"], c["feeds"], janus, probe, p))
    none = next((r for r in rows if r[0] == "none"), None)
    if none is None:
        return
    n = none[1]
    print(f"What subscriptions cost Janus at {n} feeds (nothing recorded; the same steady window"
          f" in each pass):")
    print()
    print("| feeds per subscription | subscriptions | Janus CPU s/min | Janus's extra CPU s/feed-min"
          " | subscriber CPU s/feed-min | frames received | first frame ms p50 / p95 | failed |")
    print("|---|---|---|---|---|---|---|---|")
    order = {"none": -1, "0": 10**6, "forward": 10**7}
    for group, feeds, janus, probe, p in sorted(rows, key=lambda r: order.get(r[0], int(r[0]) if r[0].isdigit() else 0)):
        label = {"none": "no subscriber", "0": f"all ({feeds})",
                 "forward": "none: RTP forwarders (plain RTP)"}.get(group, group)
        extra = (janus - none[2]) / feeds
        if p is None:
            print(f"| {label} | 0 | {janus:.1f} | - | - | - | - | - |")
            continue
        ff = p["first_frame_ms"] or [0]
        p50, p95 = ff[len(ff) // 2], ff[min(len(ff) - 1, int(len(ff) * 0.95))]
        print(f"| {label} | {p['subscriptions']} | {janus:.1f} | {extra:.3f} | {probe:.4f}"
              f" | {p['frames'] if group != 'forward' else str(p.get('packets', 0)) + ' RTP packets'}"
              f" | {p50} / {p95} | {len(p['failed'])} |")


if __name__ == "__main__":
    commands = {"measure": measure, "table": table, "api": api, "upload": upload,
                "subscribe": subscribe}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        sys.exit("usage: bench_report.py measure DIR | table OUT | api DIR | upload DIR | subscribe DIR")
    commands[sys.argv[1]](sys.argv[2])
