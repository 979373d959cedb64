// The recordings page of janus-recorder: meetings, a meeting played on its room clock, a
// recording, and what is being recorded now. Plain JavaScript, no build step. Every text
// from Janus or publishers (display names, reasons) goes into the page as text nodes
// (`el` below), never as markup.
'use strict';

const API = '/api/v1';

/** An element with attributes and children; strings become text nodes (never markup). */
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v; // CSSOM: allowed by the page's CSP
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

async function getJSON(path) {
  const r = await fetch(API + path, { credentials: 'same-origin' });
  if (!r.ok) {
    let msg = r.status + ' ' + r.statusText;
    try { msg = (await r.json()).error.message; } catch (_) { /* not JSON */ }
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return r.json();
}

/** 3725.5 -> "1:02:05" */
function clock(secs) {
  const s = Math.max(0, Math.floor(secs));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  return (h ? h + ':' + two(m) : String(m)) + ':' + two(r);
}

function bytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : String(n)) + ' ' + units[i];
}

function localTime(rfc3339) {
  const d = new Date(rfc3339);
  return isNaN(d) ? rfc3339 : d.toLocaleString();
}

/** `1h10m5s`, `75s`, `4205`, `1:10:05` -> seconds; null if not a time. */
function parseT(s) {
  if (!s) return null;
  if (/^\d+(\.\d+)?$/.test(s)) return parseFloat(s);
  const hms = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$/.exec(s);
  if (hms && s.length) return (+(hms[1] || 0)) * 3600 + (+(hms[2] || 0)) * 60 + parseFloat(hms[3] || 0);
  const colon = s.split(':').map(Number);
  if (colon.every((n) => !isNaN(n)) && colon.length <= 3) return colon.reduce((a, n) => a * 60 + n, 0);
  return null;
}

/** seconds -> `1h10m5s` */
function formatT(secs) {
  const s = Math.max(0, Math.round(secs));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, r = s % 60;
  return (h ? h + 'h' : '') + (h || m ? m + 'm' : '') + r + 's';
}

function fileUrl(id) { return API + '/recordings/' + encodeURIComponent(id).replace(/%7E/gi, '~') + '/file'; }
function idPath(id) { return encodeURIComponent(id).replace(/%7E/gi, '~'); }

const main = () => document.getElementById('main');

function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}

function failure(e) {
  if (e.status === 401) {
    show(el('p', { class: 'error' }, 'This is not open to you: log in, or ask for a share link that opens it.'),
      el('p', {}, el('a', { href: '/login', 'data-full': '' }, 'Log in')));
    return;
  }
  show(el('p', { class: 'error' }, 'Cannot load: ' + e.message));
}

// ---- Meetings ------------------------------------------------------------------------

async function meetingsView() {
  const params = new URLSearchParams(location.search);
  const form = el('form', { class: 'filters', id: 'filters' },
    el('label', {}, 'Room', el('input', { name: 'room', value: params.get('room') || '', size: 10 })),
    el('label', {}, 'Participant', el('input', { name: 'participant', value: params.get('participant') || '', size: 16 })),
    el('label', {}, 'Date', el('input', { name: 'date', type: 'date', value: params.get('date') || '' })),
    el('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const name of ['room', 'participant', 'date']) {
      const v = form.elements[name].value.trim();
      if (v) q.set(name, v);
    }
    if (params.get('shared')) q.set('shared', '1');
    history.pushState(null, '', '/meetings' + (q.toString() ? '?' + q : ''));
    route();
  });
  const api = new URLSearchParams();
  for (const name of ['room', 'participant']) if (params.get(name)) api.set(name, params.get(name));
  const date = params.get('date');
  if (date) {
    const from = new Date(date + 'T00:00:00');
    if (!isNaN(from)) {
      api.set('since', from.toISOString());
      api.set('until', new Date(from.getTime() + 86400000).toISOString());
    }
  }
  show(el('h1', {}, 'Meetings'), form, el('p', { class: 'note' }, 'Loading…'));
  let list;
  try {
    list = await getJSON('/meetings' + (api.toString() ? '?' + api : ''));
  } catch (e) { return failure(e); }
  const rows = list.meetings.map((m) => {
    const v = m.verdict;
    const row = el('tr', { class: 'meeting', 'data-id': m.id },
      el('td', {}, el('a', { href: '/meeting/' + idPath(m.id) }, String(m.room))),
      el('td', {}, localTime(m.started_at)),
      el('td', {}, clock(m.duration_ms / 1000)),
      el('td', { class: 'participants' }, m.participants.join(', ')),
      el('td', {}, bytes(m.bytes)),
      el('td', { class: 'state state-' + m.state }, m.state),
      el('td', { class: 'verdict' + (v ? ' verdict-' + v.status : '') },
        v ? (v.status === 'ok' ? 'ok' : v.status + ' (' + v.files_with_problems + ' files)') : '—'));
    row.addEventListener('click', (ev) => {
      if (ev.target.closest('a')) return;
      go('/meeting/' + idPath(m.id));
    });
    return row;
  });
  const table = el('table', { id: 'meetings' },
    el('thead', {}, el('tr', {}, ['Room', 'Start', 'Duration', 'Participants', 'Size', 'State', 'Check'].map((h) => el('th', {}, h)))),
    el('tbody', {}, rows));
  show(el('h1', {}, 'Meetings'), form,
    rows.length ? table : el('p', { class: 'note' }, 'No meetings match.'));
}

// ---- A meeting on its room clock ----------------------------------------------------

/** The transport's clock: room seconds, running from `at` (performance.now()) while playing. */
class RoomClock {
  constructor() { this.base = 0; this.at = null; this.speed = 1; this.playing = false; }
  now() { return this.at === null ? this.base : this.base + (performance.now() - this.at) / 1000 * this.speed; }
  hold() { this.base = this.now(); this.at = null; }
  run() { if (this.at === null) this.at = performance.now(); }
  seek(t) { this.base = t; if (this.at !== null) this.at = performance.now(); }
  setSpeed(s) { const t = this.now(); this.speed = s; this.base = t; if (this.at !== null) this.at = performance.now(); }
}

/** Largest error (seconds) corrected by playback rate; past it, a seek. */
const SEEK_PAST = 0.3;
/** Errors under this are left alone while paused. */
const PAUSED_SLACK = 0.005;

async function meetingView(id) {
  let m;
  try { m = await getJSON('/meetings/' + idPath(id)); } catch (e) { return failure(e); }
  const total = m.duration_ms / 1000;
  // A tile per person (display name, or feed): a republished feed is the same person's
  // next part; each part its own <video>, shown while the room clock is within it.
  const people = new Map();
  for (const r of m.recordings) {
    const key = r.display !== null && r.display !== undefined ? 'd:' + r.display : 'f:' + r.feed;
    if (!people.has(key)) people.set(key, { name: r.display ?? ('feed ' + r.feed), parts: [] });
    people.get(key).parts.push(r);
  }
  const clockState = new RoomClock();
  const tiles = [];
  const videos = []; // {video, offset, duration, tile}
  for (const person of people.values()) {
    const tile = el('div', { class: 'tile absent' });
    const t = { tile, parts: [] };
    for (const r of person.parts) {
      const offset = r.offset_ms / 1000;
      const duration = (r.duration_ms ?? 0) / 1000;
      if (r.unplayable) {
        tile.append(el('div', { class: 'unplayable' },
          el('p', {}, r.unplayable),
          el('a', { href: fileUrl(r.id), download: '' }, 'Download the file')));
        t.parts.push({ offset, duration, video: null });
        continue;
      }
      const video = el('video', { preload: 'auto', playsinline: true, class: 'hidden', 'data-id': r.id, 'data-offset': offset });
      video.src = fileUrl(r.id);
      tile.append(video);
      const part = { video, offset, duration, tile, rec: r };
      t.parts.push(part);
      videos.push(part);
    }
    tile.append(el('span', { class: 'name' }, person.name));
    t.name = person.name;
    tiles.push(t);
  }

  const playBtn = el('button', { type: 'button', id: 'play', title: 'Play/pause (space, k)' }, 'Play');
  const range = el('input', { type: 'range', id: 'seek', min: 0, max: total.toFixed(3), step: '0.1', value: 0 });
  const time = el('span', { class: 'time', id: 'time' });
  const speed = el('select', { id: 'speed', title: 'Speed (< and >)' },
    [0.5, 0.75, 1, 1.25, 1.5, 1.75, 2].map((s) => el('option', { value: s, selected: s === 1 }, s + '×')));
  const cursor = el('div', { class: 'cursor' });
  const lanes = el('div', { class: 'lanes', id: 'lanes' });
  for (const t of tiles) {
    const lane = el('div', { class: 'lane' }, el('span', { class: 'who' }, t.name));
    for (const p of t.parts) {
      lane.append(el('div', {
        class: 'here',
        style: `left:${(p.offset / total * 100).toFixed(3)}%;width:${(p.duration / total * 100).toFixed(3)}%`,
      }));
    }
    t.lane = lane;
    lane.addEventListener('click', (ev) => {
      const box = lane.getBoundingClientRect();
      seek((ev.clientX - box.left) / box.width * total);
    });
    lanes.append(lane);
  }

  /** Whether part `p` is on at room time `t` (its file's own length, once known, bounds it:
   * the clock never waits for a video past its end). */
  function active(p, t) {
    const d = p.video && isFinite(p.video.duration) && p.video.duration > 0
      ? Math.min(p.duration, p.video.duration) : p.duration;
    return t >= p.offset && t < p.offset + d;
  }

  function seek(t) {
    t = Math.min(Math.max(0, t), total);
    clockState.seek(t);
    for (const p of videos) {
      const local = Math.min(Math.max(0, t - p.offset), Math.max(0, p.duration - 0.05));
      p.video.currentTime = local;
    }
    sync();
    remember();
  }

  let stalled = false;
  async function setPlaying(on) {
    clockState.playing = on;
    playBtn.textContent = on ? 'Pause' : 'Play';
    if (!on) {
      clockState.hold();
      for (const p of videos) { p.video.pause(); p.video.playbackRate = clockState.speed; }
      sync();
      remember();
    } else {
      stalled = true; // started by sync() once every active video can play
      sync();
    }
  }

  /** Brings every video to the room clock: shows the active part of each tile, greys the
   * rest, and corrects drift while playing (rate for small errors, a seek for large). */
  function sync() {
    const t = clockState.now();
    for (const tile of tiles) {
      const on = tile.parts.some((p) => active(p, t));
      tile.tile.classList.toggle('absent', !on);
      let shown = tile.parts.find((p) => active(p, t)) || tile.parts.reduce((best, p) => (p.offset <= t ? p : best), tile.parts[0]);
      for (const p of tile.parts) if (p.video) p.video.classList.toggle('hidden', p !== shown);
    }
    const live = videos.filter((p) => active(p, t));
    for (const p of videos) {
      if (!live.includes(p) && !p.video.paused) p.video.pause();
    }
    if (!clockState.playing) {
      for (const p of live) {
        const want = t - p.offset;
        if (Math.abs(p.video.currentTime - want) > PAUSED_SLACK && !p.video.seeking) p.video.currentTime = want;
      }
    } else {
      const waiting = live.some((p) => !p.video.error && !p.video.ended && (p.video.seeking || p.video.readyState < 3));
      if (waiting) {
        if (!stalled) {
          stalled = true;
          clockState.hold();
          for (const p of live) p.video.pause();
        }
      } else if (stalled) {
        // Every active video can play: start them together from the clock.
        stalled = false;
        const now = clockState.now();
        for (const p of live) {
          p.video.playbackRate = clockState.speed;
          const want = now - p.offset;
          if (Math.abs(p.video.currentTime - want) > PAUSED_SLACK) p.video.currentTime = want;
        }
        if (live.some((p) => p.video.seeking)) { stalled = true; } else {
          Promise.all(live.map((p) => p.video.play().catch(() => null))).then(() => {
            if (clockState.playing && !stalled) clockState.run();
          });
          if (!live.length) clockState.run();
        }
      } else {
        for (const p of live) {
          const want = t - p.offset;
          if (p.video.paused) {
            p.video.currentTime = want;
            p.video.playbackRate = clockState.speed;
            p.video.play().catch(() => null);
            continue;
          }
          const err = want - p.video.currentTime;
          if (Math.abs(err) > SEEK_PAST) {
            p.video.currentTime = want;
          } else {
            const k = Math.max(-0.1, Math.min(0.1, err * 2));
            p.video.playbackRate = clockState.speed * (1 + k);
          }
        }
      }
      if (t >= total) setPlaying(false);
    }
    if (document.activeElement !== range) range.value = t.toFixed(1);
    time.textContent = clock(t) + ' / ' + clock(total);
    cursor.style.left = (t / total * 100).toFixed(3) + '%';
  }

  function remember() {
    const q = new URLSearchParams(location.search);
    q.set('t', formatT(clockState.now()));
    history.replaceState(null, '', location.pathname + '?' + q);
  }

  playBtn.addEventListener('click', () => setPlaying(!clockState.playing));
  range.addEventListener('input', () => seek(parseFloat(range.value)));
  speed.addEventListener('change', () => {
    clockState.setSpeed(parseFloat(speed.value));
    for (const p of videos) p.video.playbackRate = clockState.speed;
  });
  const onKey = (ev) => {
    if (ev.target instanceof HTMLInputElement || ev.target instanceof HTMLSelectElement) return;
    const step = ev.shiftKey ? 30 : 5;
    const speeds = [...speed.options].map((o) => parseFloat(o.value));
    const at = speeds.indexOf(clockState.speed);
    switch (ev.key) {
      case ' ': case 'k': setPlaying(!clockState.playing); break;
      case 'ArrowLeft': case 'j': seek(clockState.now() - step); break;
      case 'ArrowRight': case 'l': seek(clockState.now() + step); break;
      case 'Home': seek(0); break;
      case 'End': seek(total); break;
      case '<': case '>': {
        const next = speeds[Math.max(0, Math.min(speeds.length - 1, at + (ev.key === '>' ? 1 : -1)))];
        speed.value = String(next);
        speed.dispatchEvent(new Event('change'));
        break;
      }
      default: return;
    }
    ev.preventDefault();
  };
  document.addEventListener('keydown', onKey);
  leaving = () => { document.removeEventListener('keydown', onKey); clearInterval(timer); for (const p of videos) p.video.pause(); };

  const timer = setInterval(sync, 100);
  for (const p of videos) p.video.addEventListener('seeked', sync);

  const title = el('h1', {}, 'Room ', String(m.room), ' — ', localTime(m.zero_at));
  const info = el('p', { class: 'note' }, m.participants.join(', '), ' · ', clock(total), ' · ', bytes(m.bytes),
    ' · ', m.state, m.verdict ? ' · check: ' + m.verdict.status : '');
  const list = el('ul', { class: 'parts' }, m.recordings.map((r) => el('li', {},
    el('a', { href: '/recording/' + idPath(r.id) }, r.display ?? ('feed ' + r.feed)),
    ' from ', clock(r.offset_ms / 1000), ' for ', clock((r.duration_ms ?? 0) / 1000),
    ' (', [r.video_codec, r.audio_codec].filter(Boolean).join(' + '), ')')));
  show(title, info, el('div', { class: 'tiles', id: 'tiles' }, tiles.map((t) => t.tile)),
    el('div', { class: 'transport' }, playBtn, range, time, speed),
    lanes, el('h2', {}, 'Recordings'), list,
    el('p', { class: 'downloads' }, m.recordings.every((r) => r.local)
      ? el('a', { id: 'room-file', href: API + '/meetings/' + idPath(m.id) + '/room.mkv', download: '' },
        'The whole room as one Matroska file (every track on the room clock, nothing re-encoded)')
      : 'The files are in object storage: download them one by one from each recording.'));
  lanes.style.position = 'relative';
  lanes.append(cursor);
  for (const t of tiles) drawSpeech(t, total);

  window.player = {
    time: () => clockState.now(),
    playing: () => clockState.playing && !stalled,
    seek, play: () => setPlaying(true), pause: () => setPlaying(false),
    videos: () => videos.map((p) => ({ id: p.rec.id, offset: p.offset, duration: p.duration, video: p.video, active: active(p, clockState.now()) })),
  };
  const t0 = parseT(new URLSearchParams(location.search).get('t'));
  seek(t0 ?? 0);
}

/** Loudness (127 - dBov) from which a person counts as speaking: -60 dBov and louder. */
const SPEAKING = 67;

/** Draws when the person of tile `t` spoke into their lane, from each part's audio levels
 * (one byte per 100 ms; parts without levels draw nothing). */
async function drawSpeech(t, total) {
  const canvas = el('canvas', { class: 'speech' });
  t.lane.append(canvas);
  const width = Math.max(1, t.lane.clientWidth), height = Math.max(1, t.lane.clientHeight);
  canvas.width = width;
  canvas.height = height;
  const g = canvas.getContext('2d');
  g.fillStyle = '#1d3f8f';
  let spoken = 0;
  for (const p of t.parts) {
    if (!p.rec) continue;
    const r = await fetch(API + '/recordings/' + idPath(p.rec.id) + '/levels', { credentials: 'same-origin' });
    if (!r.ok) continue;
    const levels = new Uint8Array(await r.arrayBuffer());
    const w = Math.max(1, 0.1 / total * width);
    levels.forEach((v, i) => {
      if (v < SPEAKING) return;
      spoken++;
      g.fillRect((p.offset + i * 0.1) / total * width, height * 0.2, w, height * 0.6);
    });
  }
  t.lane.dataset.spoken = String(spoken);
}

// ---- One recording ------------------------------------------------------------------

async function recordingView(id) {
  let r;
  try { r = await getJSON('/recordings/' + idPath(id)); } catch (e) { return failure(e); }
  const s = r.sidecar;
  const row = (k, v) => el('tr', {}, el('td', {}, k), el('td', {}, v ?? '—'));
  const c = r.check;
  const problems = c.problems.length
    ? el('ul', { class: 'problems' }, c.problems.map((p) => el('li', {}, p)))
    : el('p', { class: 'verdict-ok' }, 'No problems.');
  const h265 = (s.video_codec || '').toLowerCase() === 'h265';
  const player = h265
    ? el('p', { class: 'error' }, 'H.265 video: Chromium and Firefox cannot play it; download the file and play it with VLC or mpv.')
    : el('video', { controls: true, preload: 'metadata', src: fileUrl(r.id), style: 'max-width:640px;width:100%' });
  show(
    el('h1', {}, s.display ?? ('feed ' + s.feed), ' in room ', String(s.room)),
    player,
    el('table', { class: 'details' }, el('tbody', {},
      row('Display name', s.display), row('Feed', String(s.feed)), row('Room', String(s.room)),
      row('State', r.state), row('Started', localTime(s.started_at)),
      row('Ended', s.ended_at ? localTime(s.ended_at) : null), row('End reason', s.end_reason),
      row('Duration', r.duration_ms !== null ? clock(r.duration_ms / 1000) : null),
      row('Size', bytes(r.bytes)),
      row('Stored', r.local ? (r.uploaded ? 'here and in object storage' : 'here') : 'in object storage (played from there)'),
      row('Codecs', [s.video_codec, s.audio_codec].filter(Boolean).join(' + ')),
      row('Container', s.container), row('Part', String(s.part)),
      row('Clocks', [s.video_clock, s.audio_clock].filter(Boolean).join(', ')))),
    el('h2', {}, 'Check: ', el('span', { class: 'verdict-' + c.status }, c.status)),
    problems,
    r.local ? el('div', { class: 'timeline' }, el('img', { alt: 'timeline of the file', src: API + '/recordings/' + idPath(r.id) + '/timeline.svg' })) : '',
    el('h2', {}, 'Downloads'),
    el('p', { class: 'downloads', id: 'downloads' },
      el('a', { href: fileUrl(r.id), download: r.file }, 'The file (' + bytes(r.bytes) + ')'),
      el('a', { href: API + '/recordings/' + idPath(r.id) + '/sidecar', download: '' }, 'The sidecar (JSON)')));
  // Its meeting, when this viewer may see the room's meetings (a link shared for one
  // recording may not).
  try {
    const list = await getJSON('/meetings?room=' + encodeURIComponent(r.id.split('~')[0]));
    const m = list.meetings.find((x) => x.recordings.some((x2) => x2.id === r.id));
    if (m && m.recordings.every((x) => x.local)) {
      document.getElementById('downloads').append(
        el('a', { id: 'room-file', href: API + '/meetings/' + idPath(m.id) + '/room.mkv', download: '' }, 'The whole room (one Matroska file)'));
    }
    if (m) {
      const offset = m.recordings.find((x) => x.id === r.id).offset_ms / 1000;
      document.getElementById('downloads').append(
        el('a', { id: 'in-meeting', href: '/meeting/' + idPath(m.id) + '?t=' + formatT(offset) }, 'Watch it in its meeting'));
    }
  } catch (_) { /* not shared with this viewer */ }
}

// ---- Now ----------------------------------------------------------------------------

/** The MSE type of a live WebM recording, or null if this browser cannot play it live. */
function liveType(r) {
  if (r.container !== 'webm') return null;
  const v = { vp8: 'vp8', vp9: 'vp9', av1: 'av01.0.08M.08' }[(r.video_codec || '').toLowerCase()];
  const codecs = [v, r.audio_codec === 'opus' ? 'opus' : null].filter(Boolean);
  if (!codecs.length) return null;
  const type = `video/webm; codecs="${codecs.join(',')}"`;
  return window.MediaSource && MediaSource.isTypeSupported(type) ? type : null;
}

/** The bytes of a WebM file's start with the Segment's top-level Void elements (before its
 * first Cluster) left out: Chromium's MediaSource parser refuses a Void there, and the
 * recorder reserves room with them. Returns null until the first Cluster has begun. */
function stripVoids(bytes) {
  const vint = (at, keepMarker) => {
    const first = bytes[at];
    if (first === undefined) return null;
    let len = 1;
    while (len <= 8 && !(first & (0x80 >> (len - 1)))) len++;
    if (len > 8 || at + len > bytes.length) return null;
    let value = keepMarker ? first : first & (0xff >> len);
    let unknown = (first & (0xff >> len)) === (0xff >> len);
    for (let i = 1; i < len; i++) {
      value = value * 256 + bytes[at + i];
      if (bytes[at + i] !== 0xff) unknown = false;
    }
    return { len, value, unknown };
  };
  const element = (at) => {
    const id = vint(at, true);
    if (!id) return null;
    const size = vint(at + id.len, false);
    if (!size) return null;
    return { id: id.value, head: id.len + size.len, size: size.unknown ? null : size.value };
  };
  const ebml = element(0);
  if (!ebml || ebml.size === null) return null;
  const segAt = ebml.head + ebml.size;
  const seg = element(segAt);
  if (!seg) return null;
  const keep = [bytes.subarray(0, segAt + seg.head)];
  let at = segAt + seg.head;
  for (;;) {
    const e = element(at);
    if (!e) return null;
    if (e.id === 0x1F43B675) break; // the first Cluster: everything from here as it is
    if (e.size === null || at + e.head + e.size > bytes.length) return null;
    if (e.id !== 0xEC) keep.push(bytes.subarray(at, at + e.head + e.size));
    at += e.head + e.size;
  }
  keep.push(bytes.subarray(at));
  const out = new Uint8Array(keep.reduce((n, k) => n + k.length, 0));
  let o = 0;
  for (const k of keep) { out.set(k, o); o += k.length; }
  return out;
}

/** Plays a growing file a few seconds behind its end: its bytes are fetched by range as they
 * are written and appended to a MediaSource. Returns a function that stops it. */
function playLive(video, r, type) {
  const ms = new MediaSource();
  video.src = URL.createObjectURL(ms);
  video.muted = true;
  let pos = 0, stop = false, sb = null;
  const appended = () => new Promise((ok) => sb.addEventListener('updateend', ok, { once: true }));
  async function pull() {
    const resp = await fetch(fileUrl(r.id), { headers: { Range: `bytes=${pos}-` }, credentials: 'same-origin' });
    if (resp.status === 416 || !(resp.status === 206 || (resp.status === 200 && pos === 0))) return;
    let buf = new Uint8Array(await resp.arrayBuffer());
    if (!buf.byteLength) return;
    if (pos === 0) {
      const head = stripVoids(buf);
      if (!head) return; // no cluster yet: ask again from the start
      pos = buf.byteLength;
      buf = head;
    } else {
      pos += buf.byteLength;
    }
    sb.appendBuffer(buf);
    await appended();
    const b = video.buffered;
    if (b.length) {
      const end = b.end(b.length - 1);
      if (video.currentTime < end - 8 || video.currentTime > end) video.currentTime = Math.max(b.start(b.length - 1), end - 3);
      if (b.start(0) < video.currentTime - 60 && !sb.updating) { sb.remove(0, video.currentTime - 30); await appended(); }
      if (video.paused) video.play().catch(() => null);
    }
  }
  ms.addEventListener('sourceopen', async () => {
    sb = ms.addSourceBuffer(type);
    while (!stop) {
      try { await pull(); } catch (_) { /* next time */ }
      // The recorder flushes once a second; pulling twice a second appends bytes at most 1.5 s old.
      await new Promise((ok) => setTimeout(ok, 500));
    }
  }, { once: true });
  return () => { stop = true; video.pause(); };
}

async function nowView() {
  show(el('h1', {}, 'Now'), el('p', { class: 'note' }, 'Loading…'));
  const players = new Map(); // recording id -> {tile, stop, info}
  const container = el('div', { class: 'live', id: 'live' });
  const summary = el('div', { id: 'rooms' });
  show(el('h1', {}, 'Now: rooms being recorded'), summary, container);
  async function refresh() {
    let list;
    try { list = await getJSON('/meetings?state=recording'); } catch (e) {
      if (e.status === 401) { leaving(); failure(e); } else summary.replaceChildren(el('p', { class: 'error' }, e.message));
      return;
    }
    const liveIds = new Set();
    summary.replaceChildren(list.meetings.length ? el('table', {},
      el('thead', {}, el('tr', {}, ['Room', 'Publishing', 'For', 'Bytes'].map((h) => el('th', {}, h)))),
      el('tbody', {}, list.meetings.map((m) => {
        const pubs = m.recordings.filter((r) => r.state === 'recording');
        return el('tr', {},
          el('td', {}, el('a', { href: '/meeting/' + idPath(m.id) }, String(m.room))),
          el('td', {}, pubs.map((r) => r.display ?? ('feed ' + r.feed)).join(', ') || 'nobody'),
          el('td', {}, clock(m.duration_ms / 1000)),
          el('td', {}, bytes(m.bytes)));
      }))) : el('p', { class: 'note' }, 'Nothing is being recorded.'));
    for (const m of list.meetings) {
      for (const r of m.recordings.filter((x) => x.state === 'recording')) {
        liveIds.add(r.id);
        let p = players.get(r.id);
        if (!p) {
          const video = el('video', { playsinline: true, muted: true, 'data-id': r.id });
          const info = el('span', { class: 'name' });
          const tile = el('div', { class: 'tile' }, video, info);
          const type = liveType(r);
          let stop = () => {};
          if (type) stop = playLive(video, r, type);
          else tile.replaceChildren(el('div', { class: 'unplayable' }, el('p', {}, r.unplayable || 'This browser cannot play this file while it is written (only WebM plays live).')), info);
          p = { tile, stop, info };
          players.set(r.id, p);
          container.append(tile);
        }
        p.info.textContent = (r.display ?? ('feed ' + r.feed)) + ' · room ' + m.room + ' · ' + clock((r.duration_ms ?? 0) / 1000) + ' · ' + bytes(r.bytes);
      }
    }
    for (const [id, p] of players) {
      if (!liveIds.has(id)) { p.stop(); p.tile.remove(); players.delete(id); }
    }
  }
  const timer = setInterval(refresh, 2000);
  leaving = () => { clearInterval(timer); for (const p of players.values()) p.stop(); };
  await refresh();
}

// ---- Routing and login --------------------------------------------------------------

let leaving = () => {};

function go(path) {
  history.pushState(null, '', path);
  route();
}

function route() {
  leaving();
  leaving = () => {};
  const path = location.pathname;
  let m;
  if ((m = /^\/meeting\/([^/]+)$/.exec(path))) return meetingView(decodeURIComponent(m[1]));
  if ((m = /^\/recording\/([^/]+)$/.exec(path))) return recordingView(decodeURIComponent(m[1]));
  if (path === '/now') return nowView();
  return meetingsView();
}

function login() {
  const form = document.getElementById('login');
  const message = document.getElementById('message');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = document.getElementById('token').value.trim();
    const r = await fetch('/login', {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ token }),
    });
    if (r.ok) location.href = location.pathname === '/login' ? '/' : location.href;
    else message.textContent = 'That token is not accepted.';
  });
}

document.addEventListener('DOMContentLoaded', () => {
  if (document.getElementById('login')) return login();
  document.getElementById('logout').addEventListener('click', async () => {
    await fetch('/logout', { method: 'POST', credentials: 'same-origin' });
    location.href = '/';
  });
  document.querySelector('header nav').addEventListener('click', (ev) => {
    const a = ev.target.closest('a');
    if (!a) return;
    ev.preventDefault();
    go(a.getAttribute('href'));
  });
  main().addEventListener('click', (ev) => {
    const a = ev.target.closest('a');
    if (!a || a.hasAttribute('download') || a.hasAttribute('data-full') || !a.getAttribute('href').startsWith('/') || a.getAttribute('href').startsWith('/api/')) return;
    ev.preventDefault();
    go(a.getAttribute('href'));
  });
  window.addEventListener('popstate', route);
  route();
});
