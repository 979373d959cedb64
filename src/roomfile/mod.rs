//! `janus-recorder room`: one Matroska file with every recording of a room directory.
//!
//! Each recording's tracks are placed at its offset on the room clock (its sidecar's
//! `started_at` minus the file's time zero, which is the earliest recording's start, or
//! `--from`) and copied block by block, never re-encoded (`mux`). The inputs are read as
//! streams, one block each at a time, and interleaved in time order by a k-way merge
//! (`merge`), so memory does not grow with the recordings' length. `--grid` then has ffmpeg
//! make a watchable composite of the room file (`grid`).

mod grid;
mod merge;
mod mux;
mod source;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use grid::GridError;
pub use merge::{Merge, Timed};
pub use mux::{MuxError, OutBlock, TrackStats, date_utc};
pub use source::{Recording, SourceError, find_recordings};

use crate::media::MediaKind;
use mux::{OutTrack, RoomWriter};
use source::{InputReader, InputTrack, TrackSignature};

/// Command-line arguments of `janus-recorder room`.
#[derive(Debug, clap::Args)]
pub struct RoomArgs {
    /// A room's directory of recordings (`<output dir>/<room>`), each with its `.json` sidecar.
    pub dir: PathBuf,
    /// Start here: an RFC 3339 time (`2026-11-25T10:15:00Z`) or an offset from the room's
    /// first recording (`HH:MM:SS[.fff]`). Video tracks start at their first keyframe from
    /// then on.
    #[arg(long, value_name = "TIME")]
    pub from: Option<TimeArg>,
    /// Stop here (same forms as --from).
    #[arg(long, value_name = "TIME")]
    pub to: Option<TimeArg>,
    /// The room file to write (Matroska).
    #[arg(long, value_name = "FILE.mkv")]
    pub out: PathBuf,
    /// Also make a composite video of the room with ffmpeg (.mp4: H.264 and AAC; .webm: VP8
    /// and Opus): a tile per recording with the name drawn, black while absent, audio mixed.
    #[arg(long, value_name = "OUT.mp4|OUT.webm")]
    pub grid: Option<PathBuf>,
    /// Make the grid even past its limits (12 h, 36 tiles) without a --from/--to window.
    #[arg(long)]
    pub force: bool,
}

/// A time given to `--from` or `--to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    /// A moment in UTC.
    At(OffsetDateTime),
    /// An offset from the start of the room's first recording.
    Offset(Duration),
}

/// A `--from` or `--to` value that is not a time: the text given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither an RFC 3339 time nor HH:MM:SS[.fff]")]
pub struct TimeArgError(pub String);

impl FromStr for TimeArg {
    type Err = TimeArgError;

    fn from_str(s: &str) -> Result<TimeArg, TimeArgError> {
        if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(TimeArg::At(t));
        }
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || TimeArgError(s.to_string());
        let [h, m, sec] = parts[..] else {
            return Err(bad());
        };
        let whole = |x: &str| x.parse::<u64>().ok().filter(|_| !x.is_empty());
        let (h, m) = (whole(h).ok_or_else(bad)?, whole(m).ok_or_else(bad)?);
        let sec: f64 = sec
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0 && *v < 60.0)
            .ok_or_else(bad)?;
        if m >= 60 {
            return Err(bad());
        }
        let secs = (h * 3600 + m * 60) as f64 + sec;
        Ok(TimeArg::Offset(Duration::from_secs_f64(secs)))
    }
}

impl TimeArg {
    fn resolve(self, room_start: OffsetDateTime) -> OffsetDateTime {
        match self {
            TimeArg::At(t) => t,
            TimeArg::Offset(d) => room_start + d,
        }
    }
}

/// Why a room file could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("cannot read the room directory {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Nothing to put in the file; `skipped` says why each candidate was left out (a sidecar
    /// too large or broken, a missing media file), so the reason is not lost behind this.
    #[error("no recordings with a sidecar in {}{}{}", path.display(),
        if *windowed { " between --from and --to" } else { "" },
        skipped.iter().map(|s| format!("\n  skipped: {s}")).collect::<String>())]
    NoRecordings {
        path: PathBuf,
        windowed: bool,
        skipped: Vec<String>,
    },
    #[error("--from must be before --to")]
    EmptyWindow,
    #[error("--out {} is one of the recordings", .0.display())]
    OutputIsInput(PathBuf),
    /// More recordings in the window than one room file takes (players choke on thousands of
    /// tracks).
    #[error(
        "{0} recordings in the window, more than {MAX_ROOM_RECORDINGS} in one room file: choose a \
         window with --from/--to"
    )]
    TooManyRecordings(usize),
    /// More recordings overlap at one time than this process may hold open.
    #[error(
        "more recordings overlap {:.1} s into the room than the open-file limit ({}) lets \
         room hold open at once: raise it (ulimit -n) or choose a window with --from/--to",
        *at_ms as f64 / 1000.0,
        limit.map_or("unknown".to_string(), |l| l.to_string())
    )]
    TooManyOpen { at_ms: i64, limit: Option<u64> },
    /// A recording's media file cannot be read.
    #[error("reading {}: {cause}", path.display())]
    Input {
        path: PathBuf,
        #[source]
        cause: SourceError,
    },
    /// Writing the room file failed.
    #[error("writing {}: {cause}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        cause: MuxError,
    },
}

impl RoomError {
    /// Out of file descriptors with the recordings open at `at_ms`, against this process's
    /// open-file limit.
    fn too_many_open(at_ms: i64) -> RoomError {
        RoomError::TooManyOpen {
            at_ms,
            limit: crate::limits::machine().0,
        }
    }

    /// The process (or the system) is out of file descriptors.
    fn is_out_of_files(&self) -> bool {
        matches!(
            self,
            RoomError::Input { cause: SourceError::Io(e), .. }
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        )
    }

    /// 2 for bad input (the command's arguments or the directory), 1 for a failure while
    /// writing.
    pub fn exit_code(&self) -> i32 {
        match self {
            RoomError::Output { .. } => 1,
            _ => 2,
        }
    }
}

/// The most recordings one room file takes: each brings up to two tracks, and players
/// struggle long before thousands (only the recordings that overlap are open at once).
pub const MAX_ROOM_RECORDINGS: usize = 2000;

/// The window of the room to put in the file.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub from: Option<TimeArg>,
    pub to: Option<TimeArg>,
}

/// A track of a finished room file.
#[derive(Debug, Clone)]
pub struct RoomTrack {
    pub number: u64,
    pub kind: MediaKind,
    pub name: String,
    /// Whose it is: the display name, numbered (`Alice #2`) for a later recording of the same.
    pub who: String,
    /// The recording it comes from.
    pub recording: PathBuf,
    /// Where the recording's time zero is on the room file's timeline (ms).
    pub offset_ms: i64,
    pub stats: TrackStats,
}

/// What a room file holds.
#[derive(Debug, Clone)]
pub struct RoomFile {
    pub path: PathBuf,
    /// The file's time zero (its DateUTC).
    pub zero: OffsetDateTime,
    pub duration_ms: i64,
    pub tracks: Vec<RoomTrack>,
    pub recordings: usize,
    /// Recordings skipped or cut short, and why.
    pub warnings: Vec<String>,
    pub elapsed: Duration,
}

/// A part of a publication: one file, placed.
struct Part {
    /// Open only while the merge is inside this part: its header was read (and the file
    /// closed) when the room file's tracks were laid out, and it is opened again when the
    /// merge reaches its start. A room of thousands of recordings holds open only those that
    /// overlap, not one file per recording.
    reader: Option<InputReader>,
    /// The media file.
    path: PathBuf,
    /// The placeholder at its start has gone out (see `Placed::next`).
    announced: bool,
    offset_ms: i64,
    /// (input track number, room file track number).
    map: Vec<(u64, u64)>,
}

/// One publication placed on the room file's timeline: its parts (one file, or the files of
/// a split recording, whose tracks match) one after the other, with the room file's track
/// numbers and times.
struct Placed {
    parts: VecDeque<Part>,
    /// Parts already read to their end.
    done: usize,
    /// The latest time of each room file track so far.
    last: HashMap<u64, i64>,
    /// Parts that stopped before their end, and why.
    stopped: Vec<String>,
    /// A part could not be opened for want of file descriptors, at this time (ms): the merge
    /// stops (skipping it would leave a room file silently missing people).
    out_of_files: Option<i64>,
}

impl Iterator for Placed {
    type Item = OutBlock;

    fn next(&mut self) -> Option<OutBlock> {
        loop {
            let part = self.parts.front_mut()?;
            if part.reader.is_none() {
                if !part.announced {
                    // The merge takes one item of every stream at once: a placeholder at the
                    // part's start, so its file is opened only when the merge gets there.
                    part.announced = true;
                    return Some(OutBlock::placeholder(part.offset_ms));
                }
                match InputReader::open(&part.path) {
                    Ok(r) => part.reader = Some(r),
                    Err(e) if e.is_out_of_files() => {
                        self.out_of_files = Some(part.offset_ms);
                        return None;
                    }
                    Err(e) => {
                        self.stopped.push(format!("{e}; skipped"));
                        self.parts.pop_front();
                        self.done += 1;
                        continue;
                    }
                }
            }
            let reader = part.reader.as_mut().expect("opened above");
            let Some(b) = reader.next_block() else {
                if let Some(why) = &reader.stopped {
                    let path = reader.path().display();
                    self.stopped
                        .push(format!("{path}: {why}; read up to there"));
                }
                // Dropped: its file is closed.
                self.parts.pop_front();
                self.done += 1;
                continue;
            };
            let Some(&(_, track)) = part.map.iter().find(|(n, _)| *n == b.track) else {
                continue;
            };
            let mut ms = b.ms + part.offset_ms;
            let last = self.last.entry(track).or_insert(ms);
            // Where parts meet, the next part's start (from its sidecar) may be a millisecond
            // before the previous part's last frame: keep the track going forward.
            if self.done > 0 && ms <= *last {
                ms = *last + 1;
            }
            *last = (*last).max(ms);
            return Some(OutBlock {
                track,
                ms,
                flags: b.flags,
                payload: b.payload,
            });
        }
    }
}

/// The recordings grouped by publication: a split recording's parts (linked by
/// `previous_part`) in one group, in order; groups in the order of their first part.
fn publications(all: &[Recording]) -> Vec<Vec<&Recording>> {
    let mut groups: Vec<Vec<&Recording>> = Vec::new();
    for r in all {
        let previous = r.sidecar.previous_part.as_deref();
        let group = previous.and_then(|p| {
            groups
                .iter_mut()
                .find(|g| g.last().is_some_and(|l| l.sidecar.file == p))
        });
        match group {
            Some(g) => g.push(r),
            None => groups.push(vec![r]),
        }
    }
    groups
}

impl Timed for OutBlock {
    fn time_ms(&self) -> i64 {
        self.ms
    }
}

/// Milliseconds from `zero` to `t`, rounded to the nearest.
fn ms_between(zero: OffsetDateTime, t: OffsetDateTime) -> i64 {
    let ns = (t - zero).whole_nanoseconds();
    i64::try_from((ns + 500_000).div_euclid(1_000_000)).unwrap_or(i64::MAX)
}

/// Whose each publication is, by its first recording: "Alice", and "Alice #2" for Alice's
/// second publication.
fn numbered_names<'a>(first: impl Iterator<Item = &'a Recording>) -> Vec<String> {
    let mut seen: HashMap<String, u32> = HashMap::new();
    first
        .map(|r| {
            let who = r.who();
            let n = seen.entry(who.clone()).or_default();
            *n += 1;
            if *n == 1 { who } else { format!("{who} #{n}") }
        })
        .collect()
}

/// Makes the room file `out` from the recordings in `dir`.
pub fn make_room_file(dir: &Path, window: Window, out: &Path) -> Result<RoomFile, RoomError> {
    make_room(dir, window, RoomOutput::File(out))
}

/// Where a room file goes.
pub enum RoomOutput<'a> {
    /// A file, created (replacing one there), its header completed at the end.
    File(&'a Path),
    /// A stream, written as the file is made (the recordings page's download): nothing is
    /// gone back over, the duration in its header is the window's as the sidecars say.
    Stream(Box<dyn std::io::Write + Send>),
}

/// Makes the room file from the recordings in `dir` into `output`.
pub fn make_room(dir: &Path, window: Window, output: RoomOutput) -> Result<RoomFile, RoomError> {
    let out = match &output {
        RoomOutput::File(path) => *path,
        RoomOutput::Stream(_) => Path::new(""),
    };
    let started = Instant::now();
    let (all, mut warnings) = find_recordings(dir)?;
    let skipped = warnings.clone();
    let no_recordings = |windowed| RoomError::NoRecordings {
        path: dir.to_path_buf(),
        windowed,
        skipped: skipped.clone(),
    };
    let room_start = all.first().ok_or_else(|| no_recordings(false))?.start;
    let groups = publications(&all);
    let names = numbered_names(groups.iter().map(|g| g[0]));
    let from = window.from.map(|t| t.resolve(room_start));
    let to = window.to.map(|t| t.resolve(room_start));
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(RoomError::EmptyWindow);
    }
    let in_window = |r: &&Recording| {
        from.is_none_or(|f| r.end.is_none_or(|e| e > f)) && to.is_none_or(|t| r.start < t)
    };
    let chosen: Vec<(Vec<&Recording>, &String)> = groups
        .into_iter()
        .map(|g| g.into_iter().filter(in_window).collect::<Vec<_>>())
        .zip(&names)
        .filter(|(g, _)| !g.is_empty())
        .collect();
    let zero = match (from, chosen.iter().map(|(g, _)| g[0].start).min()) {
        (Some(f), _) => f,
        (None, Some(first)) => first,
        (None, None) => return Err(no_recordings(true)),
    };
    let to_ms = to.map(|t| ms_between(zero, t));

    // File::create would empty a recording named as the output.
    let out_canonical = out.canonicalize().ok();
    if let Some(r) = all
        .iter()
        .find(|r| out_canonical.is_some() && r.media.canonicalize().ok() == out_canonical)
    {
        return Err(RoomError::OutputIsInput(r.media.clone()));
    }
    let chosen_count: usize = chosen.iter().map(|(g, _)| g.len()).sum();
    if chosen_count > MAX_ROOM_RECORDINGS {
        return Err(RoomError::TooManyRecordings(chosen_count));
    }
    let mut inputs: Vec<Placed> = Vec::new();
    let mut tracks: Vec<OutTrack> = Vec::new();
    let mut room_tracks = Vec::new();
    let mut recordings = 0;
    for (group, who) in chosen {
        // Each file's header is read and the file closed at once: a publication split into
        // more parts than the open-file limit is laid out too.
        let mut opened = Vec::new();
        for rec in group {
            match InputReader::open(&rec.media) {
                Ok(r) => {
                    if r.ignored_tracks > 0 {
                        warnings.push(format!(
                            "{}: {} tracks past its first audio and video ignored",
                            rec.media.display(),
                            r.ignored_tracks
                        ));
                    }
                    opened.push((rec, r.tracks));
                }
                Err(e) if e.is_out_of_files() => {
                    return Err(RoomError::too_many_open(ms_between(zero, rec.start)));
                }
                Err(e) => warnings.push(format!("{e}; skipped")),
            }
        }
        recordings += opened.len();
        // Parts whose tracks match the first's join its tracks; a part that differs (another
        // codec, a new CodecPrivate) starts tracks of its own.
        let mut current: Option<(Vec<u64>, Vec<TrackSignature>)> = None;
        for (rec, rec_tracks) in opened {
            let offset_ms = ms_between(zero, rec.start);
            let joins = current.as_ref().is_some_and(|(_, first)| {
                rec_tracks
                    .iter()
                    .map(InputTrack::signature)
                    .eq(first.iter().cloned())
            });
            if !joins {
                let who = match current {
                    None => who.clone(),
                    Some(_) => format!("{who} part {}", rec.sidecar.part.unwrap_or(0)),
                };
                let first_pair = tracks.is_empty();
                let mut numbers = Vec::new();
                for t in &rec_tracks {
                    let number = tracks.len() as u64 + 1;
                    let name = format!("{who} ({})", t.kind);
                    numbers.push(number);
                    tracks.push(OutTrack {
                        number,
                        kind: t.kind,
                        name: name.clone(),
                        default: first_pair,
                        entry: t.entry.clone(),
                    });
                    room_tracks.push(RoomTrack {
                        number,
                        kind: t.kind,
                        name,
                        who: who.clone(),
                        recording: rec.media.clone(),
                        offset_ms,
                        stats: TrackStats::default(),
                    });
                }
                let signature = rec_tracks.iter().map(InputTrack::signature).collect();
                current = Some((numbers, signature));
                inputs.push(Placed {
                    parts: VecDeque::new(),
                    done: 0,
                    last: HashMap::new(),
                    stopped: Vec::new(),
                    out_of_files: None,
                });
            }
            let (numbers, _) = current.as_ref().expect("set above");
            let map = rec_tracks
                .iter()
                .map(|t| t.number)
                .zip(numbers.iter().copied())
                .collect();
            inputs
                .last_mut()
                .expect("pushed above")
                .parts
                .push_back(Part {
                    path: rec.media.clone(),
                    // Closed until the merge reaches it.
                    reader: None,
                    announced: false,
                    offset_ms,
                    map,
                });
        }
    }
    if inputs.is_empty() {
        return Err(no_recordings(from.is_some() || to.is_some()));
    }
    let title = format!("Room {}", all[0].sidecar.room);
    let mut writer = match output {
        RoomOutput::File(path) => RoomWriter::create(path, &title, zero, &tracks)?,
        RoomOutput::Stream(w) => {
            let end = all.iter().filter_map(|r| r.end).max().unwrap_or(zero);
            let end = to.map_or(end, |t| t.min(end));
            RoomWriter::stream(
                w,
                &title,
                zero,
                &tracks,
                ms_between(zero, end).max(0) as f64,
            )?
        }
    };

    // Video tracks wait for a keyframe in the window; audio starts at once.
    let mut started_track = vec![false; tracks.len()];
    let mut merge = Merge::new(inputs);
    let mut limit = None;
    let out_of_files = |merge: &Merge<Placed>| merge.streams().iter().find_map(|p| p.out_of_files);
    while let Some(block) = merge.next() {
        if block.is_placeholder() {
            // A part is opened as its placeholder goes out (or at the merge's start).
            if let Some(at_ms) = out_of_files(&merge) {
                limit = Some(at_ms);
                break;
            }
            continue;
        }
        if let Some(to_ms) = to_ms
            && block.ms >= to_ms
        {
            // Blocks come nearly in time order; stop once well past the end.
            if block.ms >= to_ms + mux::MAX_CLUSTER_MS * 3 {
                break;
            }
            continue;
        }
        if block.ms < 0 {
            continue;
        }
        let i = (block.track - 1) as usize;
        if !started_track[i] {
            if tracks[i].kind == MediaKind::Video && !block.keyframe() {
                continue;
            }
            started_track[i] = true;
        }
        writer.write(block)?;
    }
    if let Some(at_ms) = limit.or_else(|| out_of_files(&merge)) {
        // Not a room file to keep: some people would be missing from it.
        drop(writer);
        if !out.as_os_str().is_empty() {
            let _ = std::fs::remove_file(out);
        }
        return Err(RoomError::too_many_open(at_ms));
    }
    for placed in merge.into_streams() {
        warnings.extend(placed.stopped);
    }
    let duration_ms = writer.duration_ms();
    let stats = writer.finish()?;
    for (t, s) in room_tracks.iter_mut().zip(stats) {
        t.stats = s;
    }
    Ok(RoomFile {
        path: out.to_path_buf(),
        zero,
        duration_ms,
        tracks: room_tracks,
        recordings,
        warnings,
        elapsed: started.elapsed(),
    })
}

impl RoomFile {
    /// A few lines for the terminal: the file, then one line per track.
    pub fn human(&self) -> String {
        let mut s = format!(
            "{}  {} recordings, {} tracks, {:.1} s from {}, made in {:.2} s\n",
            self.path.display(),
            self.recordings,
            self.tracks.len(),
            self.duration_ms as f64 / 1000.0,
            self.zero.format(&Rfc3339).unwrap_or_default(),
            self.elapsed.as_secs_f64()
        );
        for t in &self.tracks {
            let first = t
                .stats
                .first_ms
                .map_or("-".into(), |f| format!("{:.3} s", f as f64 / 1000.0));
            // Names are stripped already (`Recording::who`); escaped again for the terminal.
            let name = crate::text::escape_control(&t.name);
            s.push_str(&format!(
                "  track {} {:<5} {:<30} from {first:>9}  {} frames\n",
                t.number, t.kind, name, t.stats.frames
            ));
        }
        s
    }
}

/// Prints `what` on stderr, escaped: it may hold file names and text from recordings.
fn say(what: &dyn std::fmt::Display) {
    eprintln!("room: {}", crate::text::escape_lines(&what.to_string()));
}

/// Runs `janus-recorder room`; returns the exit status: 0 done, 2 bad input (no recordings,
/// an unreadable directory, a bad window), 1 writing failed or ffmpeg failed for `--grid`.
pub fn run(args: &RoomArgs) -> i32 {
    if let Some(grid) = &args.grid
        && let Err(e) = grid::GridFormat::of(grid)
    {
        say(&e);
        return 2;
    }
    let window = Window {
        from: args.from,
        to: args.to,
    };
    // Only the recordings that overlap are open at once, but a busy room may overlap more
    // than a 1024 soft limit allows.
    crate::limits::raise_open_files();
    let room = match make_room_file(&args.dir, window, &args.out) {
        Ok(r) => r,
        Err(e) => {
            say(&e);
            return e.exit_code();
        }
    };
    for w in &room.warnings {
        say(w);
    }
    print!("{}", room.human());
    if let Some(out) = &args.grid {
        let windowed = args.from.is_some() || args.to.is_some();
        if let Err(e) = grid::check_size(&room, args.force || windowed) {
            say(&e);
            return 2;
        }
        let started = Instant::now();
        match grid::make_grid(&room, out) {
            Ok(()) => println!(
                "{}  grid made in {:.1} s",
                out.display(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                say(&e);
                return 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// When every recording is skipped, the error says why each was (before: only "no
    /// recordings", the warnings lost).
    #[test]
    fn no_recordings_says_why_each_was_skipped() {
        let dir = std::env::temp_dir().join(format!("jr-room-skipped-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1-A-x.webm"), b"x").unwrap();
        let big = std::fs::File::create(dir.join("1-A-x.json")).unwrap();
        big.set_len(300 << 20).unwrap();
        let e = make_room_file(&dir, Window::default(), &dir.join("out.mkv")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("no recordings"), "{text}");
        assert!(
            text.contains("skipped:") && text.contains("larger than a sidecar"),
            "{text}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn times_parse_as_rfc3339_or_offsets() {
        assert_eq!(
            "2026-11-25T10:15:00.5Z".parse::<TimeArg>(),
            Ok(TimeArg::At(datetime!(2026-11-25 10:15:00.5 UTC)))
        );
        assert_eq!(
            "01:02:03.25".parse::<TimeArg>(),
            Ok(TimeArg::Offset(Duration::from_millis(3_723_250)))
        );
        assert_eq!(
            "0:00:07".parse::<TimeArg>(),
            Ok(TimeArg::Offset(Duration::from_secs(7)))
        );
        for bad in [
            "",
            "7",
            "1:2",
            "00:60:00",
            "00:00:60",
            "a:b:c",
            "-1:00:00",
            "2026-11-25",
        ] {
            assert!(bad.parse::<TimeArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets_round_to_the_nearest_millisecond() {
        let zero = datetime!(2026-11-25 10:15:00 UTC);
        assert_eq!(
            ms_between(zero, datetime!(2026-11-25 10:15:02.0004 UTC)),
            2_000
        );
        assert_eq!(
            ms_between(zero, datetime!(2026-11-25 10:15:02.0005 UTC)),
            2_001
        );
        assert_eq!(ms_between(zero, datetime!(2026-11-25 10:14:59.9996 UTC)), 0);
        assert_eq!(
            ms_between(zero, datetime!(2026-11-25 10:14:58.5 UTC)),
            -1_500
        );
    }
}
