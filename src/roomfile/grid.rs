//! `--grid`: a watchable composite of a room file, made by ffmpeg run as a child process.
//!
//! One tile per recording, in a fixed grid: the recording's video scaled into the tile, black
//! before it starts and after it ends (so the grid shows who is there as people join and
//! leave), with the name drawn; a recording without video is a black tile with the name. The
//! audio tracks are mixed, each delayed to its place. The room file is the only input: its
//! tracks already sit at their room-clock offsets, which the filter graph restores after
//! ffmpeg's own start-time shifting (`setpts=PTS-STARTPTS` and a pad of the known offset).
//! Display names reach ffmpeg only through `textfile=` with `expansion=none`: never parsed as
//! filter syntax or as drawtext expressions.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use indicatif::{ProgressBar, ProgressStyle};

use super::{RoomFile, RoomTrack};
use crate::media::MediaKind;

/// Frame rate of the composite.
const FPS: u32 = 25;
/// The font drawtext uses (Debian's fonts-dejavu-core); without it, fontconfig's default.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Longest name drawn, in characters.
const MAX_NAME_CHARS: usize = 48;
/// ffmpeg's last lines of log kept for the error message.
const LOG_LINES: usize = 30;

/// The composite's container and codecs, from the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridFormat {
    /// H.264 and AAC in MP4.
    Mp4,
    /// VP8 and Opus in WebM.
    Webm,
}

impl GridFormat {
    /// The format an output name asks for (`.mp4` or `.webm`).
    pub fn of(path: &Path) -> Result<GridFormat, GridError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("mp4") => Ok(GridFormat::Mp4),
            Some(e) if e.eq_ignore_ascii_case("webm") => Ok(GridFormat::Webm),
            _ => Err(GridError::Format(path.to_path_buf())),
        }
    }

    /// ffmpeg's output options for the codecs.
    fn codec_args(self) -> std::str::SplitWhitespace<'static> {
        match self {
            GridFormat::Mp4 => {
                "-c:v libx264 -preset veryfast -crf 26 -pix_fmt yuv420p \
                 -c:a aac -b:a 128k -movflags +faststart"
            }
            GridFormat::Webm => {
                "-c:v libvpx -deadline realtime -cpu-used 8 -b:v 1500k \
                 -c:a libopus -b:a 96k"
            }
        }
        .split_whitespace()
    }
}

/// Why the composite could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("--grid {}: the name must end in .mp4 or .webm", .0.display())]
    Format(PathBuf),
    #[error("the room file has no track to draw")]
    Empty,
    #[error(
        "--grid needs ffmpeg, which cannot be run ({0}): install it (apt-get install -y ffmpeg)"
    )]
    NoFfmpeg(String),
    #[error("{0}")]
    Scratch(String),
    #[error(
        "a grid of {secs} s ({}) with {tiles} tiles is past the limit ({} h, {MAX_GRID_TILES} \
         tiles): choose a window with --from/--to, or pass --force",
        humantime::format_duration(std::time::Duration::from_secs(*secs)),
        MAX_GRID_SECS / 3600
    )]
    TooLarge { secs: u64, tiles: usize },
    #[error("ffmpeg failed making {} ({status}):\n{log}", path.display())]
    Failed {
        path: PathBuf,
        status: String,
        log: String,
    },
}

/// The longest grid made without `--force` or a window: a room directory holding meetings
/// days apart would otherwise be drawn as one video of days (65 million frames for 30).
pub const MAX_GRID_SECS: u64 = 12 * 3600;
/// The most tiles drawn without `--force`.
pub const MAX_GRID_TILES: usize = 36;

/// Refuses a grid past [`MAX_GRID_SECS`] or [`MAX_GRID_TILES`] unless `forced` (`--force`,
/// or a `--from`/`--to` window the operator chose).
pub fn check_size(room: &RoomFile, forced: bool) -> Result<(), GridError> {
    let secs = u64::try_from(room.duration_ms.max(0))
        .unwrap_or(0)
        .div_ceil(1000);
    let tiles = layout(&room.tracks).0.len();
    if !forced && (secs > MAX_GRID_SECS || tiles > MAX_GRID_TILES) {
        return Err(GridError::TooLarge { secs, tiles });
    }
    Ok(())
}

/// A tile: one recording's video (if any) and name; its audio goes to the mix.
#[derive(Debug, Clone, PartialEq)]
struct Tile {
    who: String,
    /// The video's index among the room file's video streams (ffmpeg's `0:v:N`), and where it
    /// starts (ms).
    video: Option<(usize, i64)>,
}

/// An audio stream to mix: its index among audio streams (`0:a:N`) and where it starts (ms).
type Voice = (usize, i64);

/// Tiles and voices of a room file, in track order.
fn layout(tracks: &[RoomTrack]) -> (Vec<Tile>, Vec<Voice>) {
    let mut tiles: Vec<(PathBuf, Tile)> = Vec::new();
    let mut voices = Vec::new();
    let (mut v, mut a) = (0, 0);
    for t in tracks {
        let start = t.stats.first_ms.unwrap_or(t.offset_ms).max(0);
        let at = match tiles.iter().position(|(r, _)| *r == t.recording) {
            Some(i) => i,
            None => {
                let tile = Tile {
                    who: t.who.clone(),
                    video: None,
                };
                tiles.push((t.recording.clone(), tile));
                tiles.len() - 1
            }
        };
        match t.kind {
            MediaKind::Video => {
                // A stream with no frame in the room file cannot be drawn: its tile stays black.
                if t.stats.frames > 0 && tiles[at].1.video.is_none() {
                    tiles[at].1.video = Some((v, start));
                }
                v += 1;
            }
            MediaKind::Audio => {
                if t.stats.frames > 0 {
                    voices.push((a, start));
                }
                a += 1;
            }
        }
    }
    (tiles.into_iter().map(|(_, t)| t).collect(), voices)
}

/// Tile size for `n` tiles: larger when there are few.
fn tile_size(n: usize) -> (u32, u32) {
    if n <= 4 { (640, 360) } else { (480, 270) }
}

/// Columns and rows for `n` tiles: as square as possible, wider than tall.
fn grid_shape(n: usize) -> (usize, usize) {
    let cols = (1..=n.max(1)).find(|c| c * c >= n).unwrap_or(1);
    (cols, n.max(1).div_ceil(cols))
}

/// Seconds with millisecond precision, as ffmpeg options take them.
fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The filter graph: `[vout]` (and `[aout]` if there is audio). `names[i]` is the file holding
/// tile i's name. Paths are checked by [`safe_path`] to need no quoting.
fn filter_graph(
    tiles: &[Tile],
    voices: &[Voice],
    names: &[String],
    font: Option<&str>,
    duration_ms: i64,
) -> String {
    let (w, h) = tile_size(tiles.len());
    let font = match font {
        Some(f) => format!("fontfile={f}:"),
        None => String::new(),
    };
    let mut g = String::new();
    for (i, tile) in tiles.iter().enumerate() {
        match tile.video {
            Some((stream, start)) => {
                let _ = write!(
                    g,
                    "[0:v:{stream}]setpts=PTS-STARTPTS,\
                     scale={w}:{h}:force_original_aspect_ratio=decrease,\
                     pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,fps={FPS},\
                     tpad=start_duration={}:stop=-1:color=black,",
                    secs(start)
                );
            }
            None => {
                let _ = write!(
                    g,
                    "color=c=black:s={w}x{h}:r={FPS}:d={},",
                    secs(duration_ms.max(1))
                );
            }
        }
        let _ = writeln!(
            g,
            "drawtext={font}textfile={}:expansion=none:fontsize={}:fontcolor=white:\
             box=1:boxcolor=black@0.6:boxborderw=6:x=12:y=h-th-18[t{i}];",
            names[i],
            h / 12
        );
    }
    let inputs: String = (0..tiles.len()).map(|i| format!("[t{i}]")).collect();
    // The ends are cut by filters: ffmpeg 5.1's `-t` does not stop endless pads.
    let total = secs(duration_ms.max(1));
    let end = format!("trim=duration={total}");
    if tiles.len() == 1 {
        let _ = writeln!(g, "{inputs}format=yuv420p,{end}[vout]{}", sep(voices));
    } else {
        let (cols, _) = grid_shape(tiles.len());
        let cells: Vec<String> = (0..tiles.len())
            .map(|i| format!("{}_{}", (i % cols) as u32 * w, (i / cols) as u32 * h))
            .collect();
        let _ = writeln!(
            g,
            "{inputs}xstack=inputs={}:layout={}:fill=black,format=yuv420p,{end}[vout]{}",
            tiles.len(),
            cells.join("|"),
            sep(voices)
        );
    }
    for (j, (stream, start)) in voices.iter().enumerate() {
        let _ = writeln!(
            g,
            "[0:a:{stream}]asetpts=PTS-STARTPTS,aresample=async=1:first_pts=0,\
             adelay={start}:all=1[a{j}];"
        );
    }
    match voices.len() {
        0 => {}
        1 => {
            let _ = writeln!(g, "[a0]apad=whole_dur={total}[aout]");
        }
        n => {
            let inputs: String = (0..n).map(|j| format!("[a{j}]")).collect();
            let _ = writeln!(
                g,
                "{inputs}amix=inputs={n}:duration=longest:normalize=0,apad=whole_dur={total}[aout]"
            );
        }
    }
    g
}

fn sep(voices: &[Voice]) -> &'static str {
    if voices.is_empty() { "" } else { ";" }
}

/// A path that can stand in a filter graph unquoted (quoting there has two levels).
fn safe_path(p: &Path) -> Option<String> {
    let s = p.to_str()?;
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
        .then(|| s.to_string())
}

/// A name as drawn: control characters as spaces, cut to [`MAX_NAME_CHARS`].
fn drawn_name(who: &str) -> String {
    who.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_NAME_CHARS)
        .collect()
}

/// A fresh scratch directory for the filter graph and the name files: made new (it must not
/// exist: `mkdtemp`'s unpredictable name), `0700`, removed when dropped. `room` often runs as
/// root over root's recordings, so a directory another user prepared (with symlinks to
/// root's files, or a filter graph of theirs) must never be taken.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix("janus-recorder-grid-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

/// Writes a new scratch file: created new (never through an existing file or symlink),
/// `0600`.
fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?
        .write_all(contents)
}

/// Makes `out` from the room file with ffmpeg, drawing a progress bar on stderr.
pub fn make_grid(room: &RoomFile, out: &Path) -> Result<(), GridError> {
    let format = GridFormat::of(out)?;
    let (tiles, voices) = layout(&room.tracks);
    if tiles.is_empty() {
        return Err(GridError::Empty);
    }
    let scratch_err = |e: std::io::Error| GridError::Scratch(format!("grid scratch files: {e}"));
    let scratch = scratch_dir().map_err(scratch_err)?;
    let mut names = Vec::new();
    for (i, tile) in tiles.iter().enumerate() {
        let path = scratch.path().join(format!("name-{i}.txt"));
        write_new(&path, drawn_name(&tile.who).as_bytes()).map_err(scratch_err)?;
        names.push(safe_path(&path).ok_or_else(|| {
            GridError::Scratch(format!(
                "the temporary directory {} has characters a filter graph cannot take unquoted: \
                 set TMPDIR",
                scratch.path().display()
            ))
        })?);
    }
    let font = Path::new(FONT).is_file().then_some(FONT);
    let graph = filter_graph(&tiles, &voices, &names, font, room.duration_ms);
    let script = scratch.path().join("graph.txt");
    write_new(&script, graph.as_bytes()).map_err(scratch_err)?;
    // ffmpeg writes the output through this file (-y truncates it, keeping its mode): 0640,
    // like the recordings it is made of.
    crate::output::create_output(out)
        .map_err(|e| GridError::Scratch(format!("{}: {e}", out.display())))?;

    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-nostdin", "-y", "-v", "error", "-nostats"])
        .args(["-progress", "pipe:1", "-i"])
        .arg(&room.path)
        .arg("-filter_complex_script")
        .arg(&script)
        .args(["-map", "[vout]"]);
    if !voices.is_empty() {
        cmd.args(["-map", "[aout]"]);
    }
    cmd.args(format.codec_args())
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // ffmpeg ends with us: a room command killed mid-way leaves no encoder running.
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| GridError::NoFfmpeg(e.to_string()))?;
    let stderr = child.stderr.take().expect("piped");
    let log = std::thread::spawn(move || last_lines(stderr, LOG_LINES));

    let bar = ProgressBar::new(room.duration_ms.max(1) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "grid [{bar:40}] {percent:>3}%  {elapsed} elapsed, {eta} left",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(us) = line.strip_prefix("out_time_us=")
            && let Ok(us) = us.trim().parse::<i64>()
        {
            bar.set_position((us / 1000).max(0) as u64);
        }
    }
    let status = child
        .wait()
        .map_err(|e| GridError::NoFfmpeg(e.to_string()))?;
    let log = log.join().unwrap_or_default();
    if status.success() {
        bar.finish();
        Ok(())
    } else {
        bar.abandon();
        Err(GridError::Failed {
            path: out.to_path_buf(),
            status: status.to_string(),
            log: format!("{log}filter graph:\n{graph}"),
        })
    }
}

/// Reads `source` to its end; returns its last `n` lines.
fn last_lines(source: impl Read, n: usize) -> String {
    let mut lines = std::collections::VecDeque::new();
    for line in BufReader::new(source).lines().map_while(Result::ok) {
        if lines.len() == n {
            lines.pop_front();
        }
        lines.push_back(line);
    }
    lines.into_iter().map(|l| l + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roomfile::TrackStats;

    fn track(number: u64, kind: MediaKind, rec: &str, first_ms: i64) -> RoomTrack {
        RoomTrack {
            number,
            kind,
            name: format!("{rec} ({kind})"),
            who: rec.into(),
            recording: PathBuf::from(format!("{rec}.webm")),
            offset_ms: first_ms,
            stats: TrackStats {
                frames: 10,
                first_ms: Some(first_ms),
                last_ms: Some(first_ms + 1000),
                end_ms: first_ms + 1020,
            },
        }
    }

    #[test]
    fn tiles_per_recording_and_voices_per_audio_track() {
        let tracks = [
            track(1, MediaKind::Audio, "alice", 0),
            track(2, MediaKind::Video, "alice", 10),
            track(3, MediaKind::Audio, "bob", 2_500),
            // Carol publishes video only.
            track(4, MediaKind::Video, "carol", 4_000),
        ];
        let (tiles, voices) = layout(&tracks);
        assert_eq!(
            tiles,
            [
                Tile {
                    who: "alice".into(),
                    video: Some((0, 10))
                },
                Tile {
                    who: "bob".into(),
                    video: None
                },
                Tile {
                    who: "carol".into(),
                    video: Some((1, 4_000))
                },
            ]
        );
        assert_eq!(voices, [(0, 0), (1, 2_500)]);
        let names: Vec<String> = (0..3).map(|i| format!("/tmp/n{i}")).collect();
        let g = filter_graph(&tiles, &voices, &names, Some(FONT), 9_000);
        assert!(g.contains("[0:v:1]setpts=PTS-STARTPTS,"), "{g}");
        assert!(g.contains("tpad=start_duration=4.000:stop=-1"), "{g}");
        assert!(g.contains("color=c=black:s=640x360:r=25:d=9.000,"), "{g}");
        assert!(g.contains("textfile=/tmp/n1:expansion=none"), "{g}");
        assert!(
            g.contains("xstack=inputs=3:layout=0_0|640_0|0_360:fill=black"),
            "{g}"
        );
        assert!(g.contains("adelay=2500:all=1[a1]"), "{g}");
        assert!(g.contains("amix=inputs=2:duration=longest"), "{g}");
        // Both ends are cut by filters, at the room's duration.
        assert!(
            g.contains("format=yuv420p,trim=duration=9.000[vout]"),
            "{g}"
        );
        assert!(g.contains("apad=whole_dur=9.000[aout]"), "{g}");
    }

    /// A room of meetings 30 days apart, or of 40 people, is refused without --force or a
    /// window; 12 hours of 36 tiles is made.
    #[test]
    fn grids_past_the_limits_need_force() {
        let room = |secs: i64, people: u64| RoomFile {
            path: PathBuf::from("r.mkv"),
            zero: time::OffsetDateTime::UNIX_EPOCH,
            duration_ms: secs * 1000,
            tracks: (0..people)
                .map(|i| track(i + 1, MediaKind::Video, &format!("p{i}"), 0))
                .collect(),
            recordings: people as usize,
            warnings: vec![],
            elapsed: std::time::Duration::ZERO,
        };
        let month = room(2_592_001, 4);
        let e = check_size(&month, false).unwrap_err();
        assert!(e.to_string().contains("--from/--to"), "{e}");
        assert!(e.to_string().contains("2592001 s (30days 1s)"), "{e}");
        assert!(check_size(&month, true).is_ok());
        assert!(check_size(&room(40, 40), false).is_err());
        assert!(check_size(&room(12 * 3600, 36), false).is_ok());
    }

    /// The scratch directory is new each time, 0700, and its files are never written through
    /// something planted there (before: a guessable `janus-recorder-grid-<pid>-<ns>` taken
    /// as found, files written with `fs::write`, symlinks followed).
    #[test]
    fn scratch_files_are_private_and_new() {
        use std::os::unix::fs::PermissionsExt;
        let a = scratch_dir().unwrap();
        let b = scratch_dir().unwrap();
        assert_ne!(a.path(), b.path());
        let mode = std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let victim = b.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let planted = a.path().join("name-0.txt");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        assert!(write_new(&planted, b"Mallory").is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        let fresh = a.path().join("graph.txt");
        write_new(&fresh, b"[0:v]null[vout]").unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let gone = a.path().to_owned();
        drop(a);
        assert!(!gone.exists(), "removed when done");
    }

    #[test]
    fn shapes_and_names() {
        assert_eq!(grid_shape(1), (1, 1));
        assert_eq!(grid_shape(2), (2, 1));
        assert_eq!(grid_shape(3), (2, 2));
        assert_eq!(grid_shape(5), (3, 2));
        assert_eq!(grid_shape(10), (4, 3));
        assert_eq!(secs(12_345), "12.345");
        assert_eq!(drawn_name("a\nb\u{7}c"), "a b c");
        assert_eq!(
            safe_path(Path::new("/tmp/x-1/n.txt")).as_deref(),
            Some("/tmp/x-1/n.txt")
        );
        assert_eq!(safe_path(Path::new("/tmp/a:b")), None);
        assert_eq!(safe_path(Path::new("/tmp/it's")), None);
        assert!(GridFormat::of(Path::new("x.MP4")).is_ok());
        assert!(GridFormat::of(Path::new("x.webm")).is_ok());
        assert!(GridFormat::of(Path::new("x.mkv")).is_err());
    }
}
