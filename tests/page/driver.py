"""Drives the recordings page in headless Chromium (Playwright for Python, the system's
Chromium) for tests/page.rs. One phase per run:

    driver.py live     BASE TOKEN ARTIFACTS
    driver.py finished BASE TOKEN ARTIFACTS ROOM T_SECS SHARE_OK SHARE_EXPIRED
    driver.py codecs   BASE TOKEN ARTIFACTS

Asserts what the page must do (exit 1 with the reason) and prints one JSON line of what it
measured, prefixed with `JRT-RESULT `. Screenshots go to ARTIFACTS.
"""

import json
import os
import sys
import time

from playwright.sync_api import sync_playwright

# Chromium's flags, as every test runs it (tests/support: CHROMIUM_FLAGS).
ARGS = os.environ["JRT_CHROMIUM_FLAGS"].split()
# The page's Content-Security-Policy would refuse Playwright's own evaluated functions; it is
# bypassed here, so the escaping of display names is tested on its own (the policy is checked
# apart, on the headers).
CONTEXT = {"viewport": {"width": 1280, "height": 900}, "bypass_csp": True}


CONSOLE = []

# Every video the meeting's clock has on now can play.
READY = """() => player.videos().filter(p => p.active)
    .every(p => p.video.readyState >= 2 && !p.video.seeking)"""

# Each video against the room clock, read in one go.
MEASURE = """() => { const t = player.time(); return player.videos().map(p => ({
    id: p.id, offset: p.offset, duration: p.duration, active: p.active,
    err_ms: (p.video.currentTime - (t - p.offset)) * 1000,
    frames: p.video.getVideoPlaybackQuality().totalVideoFrames,
    paused: p.video.paused, t })); }"""

# What every <video> of the page is doing, for failure messages.
VIDEO_STATES = """() => [...document.querySelectorAll('video')].map(v => ({id: v.dataset.id,
    t: v.currentTime, paused: v.paused, ready: v.readyState, net: v.networkState,
    error: v.error && (v.error.code + ' ' + v.error.message),
    buffered: v.buffered.length ? [v.buffered.start(0), v.buffered.end(v.buffered.length - 1)] : null}))"""


def watch(page):
    """Keeps the page's console and errors for failure messages."""
    page.on("console", lambda m: CONSOLE.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: CONSOLE.append(f"pageerror: {e}"))


def fail(msg):
    print("JRT-FAIL " + msg, flush=True)
    print("console:\n" + "\n".join(CONSOLE[-40:]), flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def login(page, base, token, artifacts):
    resp = page.goto(base + "/")
    check(resp.status == 200, f"GET / without a token: {resp.status}")
    csp = resp.headers.get("content-security-policy", "")
    check("script-src 'self'" in csp, f"the page's policy: {csp!r}")
    check(page.locator("#login").count() == 1, "no token: the login page is not shown")
    page.screenshot(path=f"{artifacts}/login.png")
    page.fill("#token", "wrong-token-0123456789")
    page.click("button[type=submit]")
    page.wait_for_function("document.getElementById('message').textContent.length > 0")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#main")
    cookies = page.context.cookies()
    jr = [c for c in cookies if c["name"] == "jr_token"]
    check(jr and jr[0]["httpOnly"] and jr[0]["sameSite"] == "Strict", f"login cookie {jr}")


def live(base, token, artifacts):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_context(**CONTEXT).new_page()
        watch(page)
        login(page, base, token, artifacts)
        page.goto(base + "/now")
        page.wait_for_selector("#live video", timeout=20000)
        try:
            page.wait_for_function(
                "[...document.querySelectorAll('#live video')].some(v => v.currentTime > 0 && !v.paused)",
                timeout=20000,
            )
        except Exception:
            page.screenshot(path=f"{artifacts}/now-failed.png")
            fail("the live view does not play: " + json.dumps(page.evaluate(VIDEO_STATES)))
        # Plays: time and decoded frames advance, a few seconds behind the file's end.
        first = page.wait_for_function(
            """() => { const v = [...document.querySelectorAll('#live video')]
                .filter(v => v.currentTime > 0 && !v.paused);
              return v.length ? v.map(v => [v.dataset.id, v.currentTime,
                v.getVideoPlaybackQuality().totalVideoFrames]) : null; }""",
            timeout=20000,
        ).json_value()
        # Over 6 s: two Chromium publishers, Janus, the daemon and this browser share two
        # cores, and a second's stall of one of them is not the page failing to play live.
        time.sleep(6)
        later = page.evaluate(
            """() => [...document.querySelectorAll('#live video')].map(v => [v.dataset.id,
                v.currentTime, v.getVideoPlaybackQuality().totalVideoFrames,
                v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : null])"""
        )
        page.screenshot(path=f"{artifacts}/now.png")
        by_id = {v[0]: v for v in later}
        behind = []
        for vid, t, frames in first:
            check(vid in by_id, f"live video {vid} went away")
            _, t2, frames2, lag = by_id[vid]
            check(t2 > t + 3, f"live video {vid}: time {t} -> {t2} in 6 s")
            check(frames2 > frames + 40, f"live video {vid}: frames {frames} -> {frames2} in 6 s")
            behind.append(lag)
        rooms = page.inner_text("#rooms")
        browser.close()
    return {"live_videos": len(first), "behind_s": behind, "rooms_text": rooms}


def finished(base, token, artifacts, room, t, share_ok, share_expired):
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        ctx = browser.new_context(**CONTEXT)
        page = ctx.new_page()
        watch(page)
        pwned = []
        page.on("dialog", lambda d: (pwned.append(d.message), d.dismiss()))
        login(page, base, token, artifacts)
        page.goto(base + "/meetings")
        row = page.wait_for_selector("#meetings tr.meeting")
        cells = page.eval_on_selector(
            "#meetings tr.meeting",
            "r => [...r.children].map(td => td.textContent)",
        )
        out["row"] = cells
        check(cells[0] == str(room), f"meetings list: room {cells[0]!r}, not {room}")
        check("Alice" in cells[3], f"participants {cells[3]!r} lack Alice")
        check("<img src=x onerror=" in cells[3], f"participants {cells[3]!r}: the hostile name is not shown as text")
        check(cells[6] == "ok", f"check verdict {cells[6]!r}")
        check(page.locator("#meetings img").count() == 0, "a display name became an <img>")
        check(page.evaluate("window.__pwned") is None and not pwned, "a display name ran script")
        page.screenshot(path=f"{artifacts}/meetings.png")
        # Filters: participant and room.
        page.fill("input[name=participant]", "alice")
        page.click("#filters button")
        page.wait_for_function("location.search.includes('participant=alice')")
        page.wait_for_selector("#meetings tr.meeting")
        page.fill("input[name=participant]", "nobody-like-this")
        page.click("#filters button")
        page.wait_for_selector("text=No meetings match.")

        # The meeting, deep-linked to t.
        page.goto(base + "/meetings")
        row = page.wait_for_selector("#meetings tr.meeting")
        meeting = row.get_attribute("data-id")
        page.goto(f"{base}/meeting/{meeting}?t={t}s")
        page.wait_for_function("window.player !== undefined")
        page.wait_for_function(READY, timeout=20000)
        measure = MEASURE
        at_seek = page.evaluate(measure)
        out["at_seek"] = at_seek
        active = [v for v in at_seek if v["active"]]
        check(len(active) == 2, f"at t={t} two videos play: {at_seek}")
        check(abs(at_seek[0]["t"] - t) < 0.001, f"the clock is at {at_seek[0]['t']}, not {t}")
        for v in active:
            check(abs(v["err_ms"]) <= 50, f"after the seek: {v}")
        # Speaker lanes: both people spoke (Chromium's fake microphone beeps), drawn from
        # their audio levels.
        page.wait_for_function(
            "[...document.querySelectorAll('#lanes .lane')].every(l => +(l.dataset.spoken || 0) > 0)",
            timeout=20000,
        )
        out["spoken_100ms"] = page.eval_on_selector_all("#lanes .lane", "ls => ls.map(l => +l.dataset.spoken)")
        page.screenshot(path=f"{artifacts}/meeting-seeked.png")
        page.click("#play")
        page.wait_for_function("player.playing()", timeout=10000)
        time.sleep(10)
        after = page.evaluate(measure)
        out["after_10s"] = after
        errs = []
        for v, v0 in zip(after, at_seek):
            if not v["active"]:
                continue
            check(not v["paused"], f"video {v['id']} is paused while playing")
            check(abs(v["err_ms"]) <= 50, f"after 10 s of play: {v}")
            check(v["frames"] > v0["frames"] + 100, f"frames did not advance: {v0['frames']} -> {v['frames']}")
            errs.append(v["err_ms"])
        check(after[0]["t"] > t + 9, f"the clock went from {t} to {after[0]['t']} in 10 s")
        out["max_err_ms"] = max(abs(e) for e in errs)
        # Every 100 ms for 3 s more, the worst error.
        worst = 0
        for _ in range(30):
            for v in page.evaluate(measure):
                if v["active"]:
                    worst = max(worst, abs(v["err_ms"]))
            time.sleep(0.1)
        out["worst_err_ms_3s"] = worst
        check(worst <= 50, f"an error of {worst} ms while playing")
        page.screenshot(path=f"{artifacts}/meeting-playing.png")
        page.keyboard.press("Space")
        page.wait_for_function("!player.playing()")
        check("t=" in page.url, f"the deep link is not kept: {page.url}")
        # Speed.
        page.select_option("#speed", "2")
        page.keyboard.press("Space")
        page.wait_for_function("player.playing()", timeout=10000)
        t0 = page.evaluate("player.time()")
        time.sleep(2)
        t1 = page.evaluate("player.time()")
        out["speed2_advance_s"] = t1 - t0
        check(3.5 < t1 - t0 < 4.6, f"at 2x the clock advanced {t1 - t0} s in 2 s")
        page.keyboard.press("Space")
        page.wait_for_function("!player.playing()")
        # Before the second person joined, their tile is grey; Home seeks to the start.
        page.keyboard.press("Home")
        page.wait_for_function("player.time() === 0")
        absent = page.eval_on_selector_all(".tile.absent .name", "ns => ns.map(n => n.textContent)")
        check(len(absent) == 1 and "<img" in absent[0], f"absent at 0 s: {absent}")
        page.screenshot(path=f"{artifacts}/meeting-start.png")

        # The whole room as one Matroska file, streamed.
        href = page.get_attribute("#room-file", "href")
        resp = page.request.get(base + href)
        check(resp.status == 200, f"room file: {resp.status} {resp.text()[:200]}")
        check(resp.headers["content-type"] == "video/x-matroska", f"room file: {resp.headers}")
        room_file = f"{artifacts}/room.mkv"
        with open(room_file, "wb") as f:
            f.write(resp.body())
        out["room_file"] = room_file

        # A recording.
        rec = after[1]["id"]
        page.goto(f"{base}/recording/{rec}")
        page.wait_for_selector("table.details")
        page.wait_for_function(
            "document.querySelector('.timeline img').complete && document.querySelector('.timeline img').naturalWidth > 0",
            timeout=20000,
        )
        text = page.inner_text("main")
        check("<img src=x onerror=" in text or "Alice" in text, "the recording page shows no name")
        check(page.locator("main img").count() == 1, "only the timeline is an image")
        page.wait_for_selector("#in-meeting")
        check(page.locator("#room-file").count() == 1, "no room download on the recording page")
        page.screenshot(path=f"{artifacts}/recording.png", full_page=True)
        check(page.evaluate("window.__pwned") is None and not pwned, "a display name ran script")

        # Logged out: the login page again.
        page.evaluate("fetch('/logout', {method: 'POST'})")
        page.goto(base + "/")
        check(page.locator("#login").count() == 1, "logged out, yet no login page")
        ctx.close()

        # Share links: a fresh browser without a token.
        ctx = browser.new_context(**CONTEXT)
        page = ctx.new_page()
        bad = share_ok.replace("sig=", "sig=0")
        for name, link in [("wrong", bad), ("expired", share_expired)]:
            resp = page.goto(link)
            check(resp.status == 401, f"{name} share link: {resp.status}")
        page.screenshot(path=f"{artifacts}/share-refused.png")
        resp = page.goto(share_ok)
        check(resp.status == 200, f"share link: {resp.status}")
        page.wait_for_selector("#meetings tr.meeting")
        page.screenshot(path=f"{artifacts}/shared-meetings.png")
        resp = page.request.get(base + "/api/v1/rooms")
        check(resp.status == 401, f"a share link opened /api/v1/rooms: {resp.status}")
        # What the link does not open says so, and offers the login.
        page.goto(base + "/now")
        page.wait_for_selector("text=This is not open to you")
        page.click("a[href=\"/login\"]")
        page.wait_for_selector("#login")
        ctx.close()
        browser.close()
    return out


def codecs(base, token, artifacts):
    """Every meeting (one per codec's room): seeked to 3 s, then 5 s of play; each video on
    the clock within 50 ms, its frames decoded."""
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_context(**CONTEXT).new_page()
        watch(page)
        login(page, base, token, artifacts)
        meetings = page.request.get(base + "/api/v1/meetings").json()["meetings"]
        for m in meetings:
            codec = m["recordings"][0]["video_codec"]
            page.goto(f"{base}/meeting/{m['id']}?t=3s")
            if codec == "h265":
                # Not played: the reason and a download link instead.
                tile = page.wait_for_selector(".tile .unplayable")
                text = tile.inner_text()
                check("H.265" in text and "Chromium" in text, f"h265 tile: {text!r}")
                href = page.get_attribute(".tile .unplayable a", "href")
                check(href.endswith("/file"), f"h265 download link: {href}")
                check(page.request.get(base + href).status == 200, "h265 download")
                check(page.locator(".tile video").count() == 0, "an H.265 <video>")
                page.screenshot(path=f"{artifacts}/meeting-h265.png")
                out[codec] = {"shown": text}
                continue
            page.wait_for_function("window.player !== undefined")
            try:
                page.wait_for_function(READY, timeout=20000)
            except Exception:
                fail(f"{codec}: the videos do not load: " + json.dumps(page.evaluate(VIDEO_STATES)))
            before = page.evaluate(MEASURE)
            check(before and all(abs(v["err_ms"]) <= 50 for v in before if v["active"]), f"{codec} seeked: {before}")
            page.click("#play")
            page.wait_for_function("player.playing()", timeout=10000)
            time.sleep(5)
            after = page.evaluate(MEASURE)
            page.screenshot(path=f"{artifacts}/meeting-{codec}.png")
            for v, v0 in zip(after, before):
                check(v["active"] and not v["paused"], f"{codec}: not playing: {v}")
                check(abs(v["err_ms"]) <= 50, f"{codec} after 5 s of play: {v}")
                check(v["frames"] > v0["frames"] + 50, f"{codec}: frames {v0['frames']} -> {v['frames']}")
            out[codec] = {"err_ms": [v["err_ms"] for v in after], "frames": [v["frames"] - v0["frames"] for v, v0 in zip(after, before)]}
        browser.close()
    return out


def main():
    phase, base, token, artifacts = sys.argv[1:5]
    if phase == "live":
        out = live(base, token, artifacts)
    elif phase == "codecs":
        out = codecs(base, token, artifacts)
    else:
        room, t, share_ok, share_expired = sys.argv[5:9]
        out = finished(base, token, artifacts, room, float(t), share_ok, share_expired)
    print("JRT-RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
