//! `janus-recorder publish`: N synthetic publishers that send a WebM clip's frames, looping,
//! at the clip's own timing, through the same [`Publication`] the relay uses. For load tests
//! and benchmarks without a browser per feed.
//!
//! A clip cannot make a keyframe on demand without an encoder, so a keyframe request makes the
//! video jump ahead to the clip's next keyframe, sent at once (its time shifted to now). The
//! RTP clock follows wall time, so it never goes back, across loops and jumps alike.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::media::{Frequency, MediaTime};
use tokio_util::sync::CancellationToken;

use super::clip::{Clip, ClipTrack};
use super::{PublicationEvent, PublishSpec, join};
use crate::ids::{JanusId, RoomId};
use crate::janus::{Auth, JanusError, Session, TlsTrust};
use crate::media::{Codec, MediaKind};
use crate::net::{SocketPlan, interface_addresses};
use crate::rtc::MediaLoop;
use crate::secret::Secret;

/// Where `scripts/make-clip.sh` (run by `scripts/setup.sh`) puts the default clip.
pub const DEFAULT_MEDIA: &str = "media/clip.webm";

/// How long a publisher keeps its session up after its last frame, so that the last packets
/// (spread over a frame interval or so at a steady rate) and any retransmission asked for reach
/// Janus before it leaves.
const LINGER: Duration = Duration::from_millis(500);

/// Arguments of `janus-recorder publish`.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Janus WebSocket URL (ws:// or wss://).
    #[arg(long)]
    pub url: String,
    /// Room to publish in (a number, or a string for `string_ids` rooms).
    #[arg(long)]
    pub room: String,
    /// Display name; with --count N the publishers are NAME-1 .. NAME-N.
    #[arg(long)]
    pub display: String,
    /// WebM clip with Opus and/or VP8/VP9 (default: the clip scripts/setup.sh makes).
    #[arg(long, default_value = DEFAULT_MEDIA)]
    pub media: PathBuf,
    /// Number of publishers.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub count: u32,
    /// Seconds of media to send, then leave (default: until SIGINT/SIGTERM).
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Send no media until the first keyframe request (a subscriber is ready), so that a
    /// recorder can be checked for every frame sent.
    #[arg(long)]
    pub hold: bool,
    /// Write a JSON report of frames sent per feed to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Room PIN.
    #[arg(long)]
    pub pin: Option<String>,
    /// Janus API secret. Better given in the environment: arguments are visible in `ps`.
    #[arg(long, env = "JANUS_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<Secret>,
    /// Janus token. Better given in the environment: arguments are visible in `ps`.
    #[arg(long, env = "JANUS_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// PEM file of CA certificates trusted for a wss:// URL besides the system's.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Address to offer Janus as our host candidate (default: every non-loopback address).
    #[arg(long)]
    pub advertise: Vec<IpAddr>,
}

/// Why the synthetic publishers, or one of them, failed. Joining, publishing and sending
/// report their failures as text (`publish::join`, `Publication`), carried as it is.
#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: JanusError,
    },
    /// A publisher's task panicked or was cancelled.
    #[error("publisher task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Joining the room as a publisher failed.
    #[error(transparent)]
    Join(crate::publish::PublishError),
    /// Negotiating the publication with Janus failed.
    #[error(transparent)]
    Publish(crate::publish::PublishError),
    /// The media loop's socket could not be opened.
    #[error("cannot open the media socket: {0}")]
    MediaSocket(#[source] std::io::Error),
    /// The publication ended (Janus, ICE) before the publisher was done.
    #[error("{0}")]
    Ended(String),
}

/// What one synthetic publisher did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedReport {
    pub display: String,
    pub feed: Option<crate::ids::FeedId>,
    pub audio_frames: u64,
    pub video_frames: u64,
    pub keyframes: u64,
    pub keyframe_requests: u64,
    /// Set when the publisher failed.
    pub error: Option<String>,
}

/// Runs the subcommand; the exit code: 0 all published, 1 some failed, 2 bad arguments.
pub fn run(args: &PublishArgs) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if !args.url.starts_with("ws://") && !args.url.starts_with("wss://") {
        eprintln!(
            "--url must start with ws:// or wss://, got {:?}",
            crate::janus::redacted(&args.url)
        );
        return 2;
    }
    let clip = match Clip::load(&args.media) {
        Ok(c) => Arc::new(c),
        Err(e) if args.media == Path::new(DEFAULT_MEDIA) => {
            eprintln!("{e}\n(make the default clip with scripts/make-clip.sh, or pass --media)");
            return 2;
        }
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return 1;
        }
    };
    let reports = match runtime.block_on(publish_all(args, clip)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    for r in &reports {
        let feed = r.feed.as_ref().map(|f| f.to_string()).unwrap_or_default();
        match &r.error {
            None => println!(
                "{} (feed {feed}): sent {} audio and {} video frames ({} keyframes, {} keyframe requests)",
                r.display, r.audio_frames, r.video_frames, r.keyframes, r.keyframe_requests
            ),
            Some(e) => println!("{} (feed {feed}): failed: {e}", r.display),
        }
    }
    if let Some(path) = &args.report {
        let json = serde_json::json!({ "feeds": reports });
        if let Err(e) = std::fs::write(path, format!("{json:#}\n")) {
            eprintln!("cannot write {}: {e}", path.display());
            return 1;
        }
    }
    i32::from(reports.iter().any(|r| r.error.is_some()))
}

fn room_id(s: &str) -> RoomId {
    match s.parse::<u64>() {
        Ok(n) => RoomId::from(n),
        Err(_) => RoomId(JanusId::Str(s.to_owned())),
    }
}

async fn publish_all(
    args: &PublishArgs,
    clip: Arc<Clip>,
) -> Result<Vec<FeedReport>, SyntheticError> {
    let auth = Auth {
        api_secret: args.api_secret.clone(),
        token: args.token.clone(),
    };
    let trust = TlsTrust::new(args.ca_file.clone());
    let session = Session::connect(&args.url, auth, &trust)
        .await
        .map_err(|source| SyntheticError::Connect {
            url: crate::janus::redacted(&args.url),
            source,
        })?;
    let advertise = if args.advertise.is_empty() {
        interface_addresses()
    } else {
        args.advertise.clone()
    };
    let media = MediaLoop::start(&SocketPlan::new(None, &advertise), 0)
        .map_err(SyntheticError::MediaSocket)?;
    let stop = CancellationToken::new();
    let signals = tokio::spawn(stop_on_signal(stop.clone()));
    let duration = args.seconds.map(Duration::from_secs_f64);
    let mut tasks = Vec::new();
    for i in 1..=args.count {
        let display = if args.count == 1 {
            args.display.clone()
        } else {
            format!("{}-{i}", args.display)
        };
        let spec = PublishSpec {
            room: room_id(&args.room),
            display,
            pin: args.pin.clone().map(Secret::new),
            audio: clip.audio.as_ref().map(|t| t.codec),
            video: clip.video.as_ref().map(|t| t.codec),
            origin: format!("synthetic {}", args.media.display()),
        };
        let (session, media, clip, stop) =
            (session.clone(), media.clone(), clip.clone(), stop.clone());
        let hold = args.hold;
        tasks.push(tokio::spawn(async move {
            let mut report = FeedReport {
                display: spec.display.clone(),
                ..FeedReport::default()
            };
            if let Err(e) = publish_one(
                &session,
                &media,
                &spec,
                &clip,
                duration,
                hold,
                &stop,
                &mut report,
            )
            .await
            {
                tracing::error!(display = %spec.display, error = %e, "publisher failed");
                report.error = Some(e.to_string());
            }
            report
        }));
    }
    let mut reports = Vec::new();
    for t in tasks {
        reports.push(t.await?);
    }
    signals.abort();
    session.destroy().await;
    Ok(reports)
}

async fn stop_on_signal(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {},
        _ = term.recv() => {},
    }
    tracing::info!("stopping: leaving the room");
    stop.cancel();
}

/// Plays one track of the clip: which frame is next and when it is due.
struct TrackPlayer<'a> {
    track: &'a ClipTrack,
    kind: MediaKind,
    clock: Frequency,
    index: usize,
    /// Added to a frame's clip time (relative to the clip's first frame) to get its due time
    /// from the start, in microseconds: whole loops played, minus what keyframe jumps skipped
    /// (so it can be negative).
    offset_us: i64,
}

fn micros(d: Duration) -> i64 {
    d.as_micros() as i64
}

impl<'a> TrackPlayer<'a> {
    fn new(track: &'a ClipTrack) -> TrackPlayer<'a> {
        TrackPlayer {
            track,
            kind: track.codec.kind(),
            clock: if track.codec == Codec::Opus {
                Frequency::FORTY_EIGHT_KHZ
            } else {
                Frequency::NINETY_KHZ
            },
            index: 0,
            offset_us: 0,
        }
    }

    /// Frame `i`'s time in the clip, from the clip's first frame, in microseconds.
    fn clip_us(&self, i: usize) -> i64 {
        micros(self.track.frames[i].at) - micros(self.track.frames[0].at)
    }

    /// When the next frame is due, from the start.
    fn due(&self) -> Duration {
        Duration::from_micros((self.offset_us + self.clip_us(self.index)).max(0) as u64)
    }

    fn advance(&mut self, loop_len: Duration) {
        self.index += 1;
        if self.index == self.track.frames.len() {
            self.index = 0;
            self.offset_us += micros(loop_len);
        }
    }

    /// Makes the clip's next keyframe (from the current frame on) due at `now`.
    fn jump_to_keyframe(&mut self, now: Duration) {
        let frames = &self.track.frames;
        if frames[self.index].keyframe {
            return;
        }
        let mut i = self.index;
        loop {
            i = (i + 1) % frames.len();
            if frames[i].keyframe || i == self.index {
                break;
            }
        }
        self.index = i;
        // Shift the rest of the track (its loops included) so that this keyframe is due now.
        self.offset_us = micros(now) - self.clip_us(i);
    }
}

#[allow(clippy::too_many_arguments)]
async fn publish_one(
    session: &Session,
    media: &MediaLoop,
    spec: &PublishSpec,
    clip: &Clip,
    duration: Option<Duration>,
    hold: bool,
    stop: &CancellationToken,
    report: &mut FeedReport,
) -> Result<(), SyntheticError> {
    let joined = join(session, spec).await.map_err(SyntheticError::Join)?;
    report.feed = Some(joined.feed().clone());
    let mut p = joined
        .publish(media, spec)
        .await
        .map_err(SyntheticError::Publish)?;
    tracing::info!(display = %spec.display, feed = %p.feed(), "published");
    let mut players: Vec<TrackPlayer> = [&clip.audio, &clip.video]
        .into_iter()
        .flatten()
        .map(TrackPlayer::new)
        .collect();
    let mut start: Option<Instant> = None;
    let mut want_keyframe = false;
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    loop {
        let next = start.map_or(far, |s| {
            s + players
                .iter()
                .map(TrackPlayer::due)
                .min()
                .unwrap_or_default()
        });
        let end = match (start, duration) {
            (Some(s), Some(d)) => s + d,
            _ => far,
        };
        tokio::select! {
            ev = p.next_event() => match ev {
                PublicationEvent::Connected => {
                    tracing::debug!(display = %spec.display, "media connected");
                    if !hold {
                        start.get_or_insert_with(Instant::now);
                    }
                }
                PublicationEvent::KeyframeRequest => {
                    report.keyframe_requests += 1;
                    if start.is_none() && p.is_connected() {
                        start = Some(Instant::now());
                    }
                    want_keyframe = true;
                }
                PublicationEvent::Ended(reason) => return Err(SyntheticError::Ended(reason)),
            },
            _ = tokio::time::sleep_until(next.into()) => {
                let s = start.expect("a deadline only once started");
                let now = Instant::now();
                let elapsed = now.duration_since(s);
                for player in &mut players {
                    if want_keyframe && player.kind == MediaKind::Video {
                        want_keyframe = false;
                        player.jump_to_keyframe(elapsed);
                    }
                    while player.due() <= elapsed {
                        let frame = &player.track.frames[player.index];
                        let due = player.due();
                        let rtp = MediaTime::from_micros(due.as_micros() as u64).rebase(player.clock);
                        if p.send(player.kind, s + due, rtp, &frame.data) {
                            match player.kind {
                                MediaKind::Audio => report.audio_frames += 1,
                                MediaKind::Video => {
                                    report.video_frames += 1;
                                    report.keyframes += u64::from(frame.keyframe);
                                }
                            }
                        }
                        player.advance(clip.duration);
                    }
                }
            },
            _ = tokio::time::sleep_until(end.into()) => break,
            _ = stop.cancelled() => break,
        }
    }
    // Keep the session going briefly so the last packets get out, then leave. The linger
    // starts once the media loop has every frame (with many publishers it can lag).
    p.sent().await;
    let linger = tokio::time::sleep(LINGER);
    tokio::pin!(linger);
    loop {
        tokio::select! {
            ev = p.next_event() => if let PublicationEvent::Ended(reason) = ev {
                tracing::warn!(display = %spec.display, reason = %crate::text::Escaped(&reason), "ended while leaving");
                break;
            },
            _ = &mut linger => break,
        }
    }
    p.leave().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::clip::ClipFrame;

    fn track(keys: &[bool]) -> ClipTrack {
        ClipTrack {
            codec: Codec::Vp8,
            frames: keys
                .iter()
                .enumerate()
                .map(|(i, &keyframe)| ClipFrame {
                    at: Duration::from_millis(50 * i as u64),
                    keyframe,
                    data: vec![0],
                })
                .collect(),
        }
    }

    #[test]
    fn a_jump_sends_the_next_keyframe_now_and_time_never_goes_back() {
        let t = track(&[true, false, false, false, true, false]);
        let loop_len = Duration::from_millis(300);
        let mut p = TrackPlayer::new(&t);
        p.advance(loop_len); // frame 1 (due 50 ms)
        let now = Duration::from_millis(60);
        p.jump_to_keyframe(now);
        assert_eq!(p.index, 4);
        assert_eq!(p.due(), now);
        p.advance(loop_len);
        assert_eq!(p.due(), now + Duration::from_millis(50));
        // Past the last keyframe the jump wraps into the next loop.
        p.advance(loop_len); // wrapped: frame 0 of loop 2, a keyframe
        assert_eq!(p.index, 0);
        let before = p.due();
        p.jump_to_keyframe(before);
        assert_eq!(p.due(), before, "already on a keyframe: nothing skipped");
        p.advance(loop_len);
        let now = p.due() + Duration::from_millis(1);
        p.jump_to_keyframe(now);
        assert_eq!(p.index, 4);
        assert_eq!(p.due(), now);
    }
}
