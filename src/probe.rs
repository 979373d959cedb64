//! `janus-recorder subscribe-probe` (hidden): subscribes to every publisher of a room the way
//! the recorder would, receiving their media through the media loop and str0m, but writing
//! nothing: one subscription per feed (as the recorder does today), or a few feeds per
//! multistream subscription (`--group N`: one Janus handle and PeerConnection with the
//! streams of N feeds); or, with `--forward`, no subscription at all: VideoRoom RTP
//! forwarders sending plain RTP to one socket. `scripts/bench.sh` runs it in each mode on the
//! same Janus and feeds to measure what a subscription costs Janus, apart from the recorder's
//! files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use str0m::media::Mid;
use tokio::task::JoinSet;

use crate::ids::{FeedId, RoomId};
use crate::janus::messages::{Incoming, VideoRoomEvent, publishing};
use crate::janus::videoroom::{Request, SubscribeStream, TopLayers};
use crate::janus::{Auth, Session, TlsTrust};
use crate::net::{SocketPlan, interface_addresses};
use crate::rtc::{MediaLoop, RtcEvent};

/// How often a subscription's task hands over frames once it is connected (the recorder's
/// own pace for a recorded feed).
const BATCH: Duration = Duration::from_millis(200);

/// Arguments of `janus-recorder subscribe-probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Janus WebSocket URL.
    #[arg(long)]
    pub url: String,
    /// The room (a number).
    #[arg(long)]
    pub room: u64,
    /// Wait until this many publishers publish, then subscribe to them.
    #[arg(long)]
    pub feeds: usize,
    /// Feeds per subscription: 1 is the recorder's way today; 0 puts every feed in one.
    #[arg(long, default_value_t = 1)]
    pub group: usize,
    /// Receive for this long after subscribing, then leave.
    #[arg(long)]
    pub seconds: f64,
    /// Address to offer Janus as our host candidate.
    #[arg(long)]
    pub advertise: Vec<std::net::IpAddr>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Instead of subscribing, have Janus forward each publisher's media as plain RTP to one
    /// UDP socket of ours (VideoRoom `rtp_forward`), and count the datagrams: what Janus's
    /// cheapest way out of a room costs it, beside our subscriptions.
    #[arg(long)]
    pub forward: bool,
}

/// What one probe run received.
#[derive(Debug, Default, Serialize)]
pub struct ProbeReport {
    pub feeds: usize,
    pub group: usize,
    /// Subscriptions made (`--forward`: forwarders, one per stream).
    pub subscriptions: usize,
    /// Frames received over every subscription.
    pub frames: u64,
    /// Subscriptions that failed (with why).
    pub failed: Vec<String>,
    /// From sending `join` to the first frame, per subscription (ms).
    pub first_frame_ms: Vec<u64>,
    /// Frames received per feed.
    pub frames_per_feed: HashMap<String, u64>,
    /// RTP datagrams received (`--forward`, where nothing assembles frames).
    pub packets: u64,
}

/// Runs the probe; the exit code.
pub fn run(args: &ProbeArgs) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // One thread, as the recorder's recording runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(probe(args)) {
        Ok(report) => {
            let (through, count, unit) = if args.forward {
                ("RTP forwarders", report.packets, "packets")
            } else {
                ("subscriptions", report.frames, "frames")
            };
            println!(
                "{} feeds through {} {through}: {count} {unit}, {} failed",
                report.feeds,
                report.subscriptions,
                report.failed.len()
            );
            if let Some(path) = &args.report
                && let Err(e) = std::fs::write(
                    path,
                    serde_json::to_string_pretty(&report).unwrap_or_default(),
                )
            {
                eprintln!("cannot write {}: {e}", path.display());
                return 1;
            }
            i32::from(!report.failed.is_empty())
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

async fn probe(args: &ProbeArgs) -> Result<ProbeReport, String> {
    let session = Session::connect(&args.url, Auth::default(), &TlsTrust::new(None))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let advertise = if args.advertise.is_empty() {
        interface_addresses()
    } else {
        args.advertise.clone()
    };
    let room = RoomId::from(args.room);
    if args.forward {
        let feeds = wait_for_publishers(&session, &room, args.feeds).await?;
        let until = Instant::now() + Duration::from_secs_f64(args.seconds);
        let host = advertise
            .first()
            .copied()
            .ok_or("no address to forward to")?;
        let report = forward(&session, &room, &feeds, host, until).await;
        session.destroy().await;
        return report;
    }
    let media = MediaLoop::start(&SocketPlan::new(None, &advertise), 0)
        .map_err(|e| format!("cannot open the media socket: {e}"))?;
    let feeds = wait_for_publishers(&session, &room, args.feeds).await?;
    let group = if args.group == 0 {
        feeds.len()
    } else {
        args.group
    };
    let until = Instant::now() + Duration::from_secs_f64(args.seconds);
    let mut tasks = JoinSet::new();
    for chunk in feeds.chunks(group.max(1)) {
        let (session, media, room, chunk) =
            (session.clone(), media.clone(), room.clone(), chunk.to_vec());
        tasks.spawn(async move { subscribe(&session, &media, &room, &chunk, until).await });
    }
    let mut report = ProbeReport {
        feeds: feeds.len(),
        group,
        subscriptions: tasks.len(),
        ..ProbeReport::default()
    };
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(r)) => {
                report.frames += r.frames.values().sum::<u64>();
                report.first_frame_ms.extend(r.first_frame_ms);
                for (feed, n) in r.frames {
                    *report.frames_per_feed.entry(feed.to_string()).or_default() += n;
                }
            }
            Ok(Err(e)) => report.failed.push(e),
            Err(e) => report.failed.push(e.to_string()),
        }
    }
    report.first_frame_ms.sort_unstable();
    session.destroy().await;
    Ok(report)
}

/// The room's publishers, once at least `n` publish (polled twice a second, for a minute).
async fn wait_for_publishers(
    session: &Session,
    room: &RoomId,
    n: usize,
) -> Result<Vec<FeedId>, String> {
    let handle = session
        .attach_videoroom()
        .await
        .map_err(|e| format!("attaching: {e}"))?;
    for _ in 0..120 {
        let (data, _) = handle
            .message(Request::ListParticipants { room }.body(), None)
            .await
            .map_err(|e| format!("listing the participants: {e}"))?;
        let feeds = publishing(&data);
        if feeds.len() >= n {
            handle.detach().await;
            return Ok(feeds);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("fewer than {n} publishers after a minute"))
}

/// Has Janus forward every stream of `feeds` as plain RTP to one UDP socket on `host`, and
/// counts what arrives until `until`; then stops the forwarders.
async fn forward(
    session: &Session,
    room: &RoomId,
    feeds: &[FeedId],
    host: std::net::IpAddr,
    until: Instant,
) -> Result<ProbeReport, String> {
    let socket = tokio::net::UdpSocket::bind((host, 0))
        .await
        .map_err(|e| format!("cannot open a UDP socket on {host}: {e}"))?;
    let port = socket.local_addr().map_err(|e| e.to_string())?.port();
    let handle = session
        .attach_videoroom()
        .await
        .map_err(|e| format!("attaching: {e}"))?;
    let asked = Instant::now();
    let mut forwarders = Vec::new();
    let mut report = ProbeReport {
        feeds: feeds.len(),
        ..ProbeReport::default()
    };
    for feed in feeds {
        let request = Request::RtpForward {
            room,
            publisher_id: feed,
            host: host.to_string(),
            audio_port: port,
            video_port: port,
        };
        match handle.message(request.body(), None).await {
            Ok((data, _)) => {
                // Janus 1.1.2 answers the audio_port/video_port form (deprecated, but it needs
                // no mids) with `rtp_stream`; the `streams` form with `forwarders`.
                let legacy = &data["rtp_stream"];
                let ids: Vec<u64> = data["forwarders"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f["stream_id"].as_u64())
                    .chain(legacy["audio_stream_id"].as_u64())
                    .chain(legacy["video_stream_id"].as_u64())
                    .collect();
                if ids.is_empty() {
                    report
                        .failed
                        .push(format!("{feed}: no forwarder in {data}"));
                }
                forwarders.extend(ids.into_iter().map(|id| (feed, id)));
            }
            Err(e) => report.failed.push(format!("{feed}: {e}")),
        }
    }
    report.subscriptions = forwarders.len();
    let mut buf = vec![0u8; 2048];
    let end = tokio::time::sleep_until(until.into());
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = &mut end => break,
            got = socket.recv(&mut buf) => match got {
                Ok(_) => {
                    if report.packets == 0 {
                        report.first_frame_ms.push(asked.elapsed().as_millis() as u64);
                    }
                    report.packets += 1;
                }
                Err(e) => return Err(format!("receiving: {e}")),
            },
        }
    }
    for (feed, stream_id) in forwarders {
        let stop = Request::StopRtpForward {
            room,
            publisher_id: feed,
            stream_id,
            secret: None,
            admin_key: None,
        };
        if let Err(e) = handle.message(stop.body(), None).await {
            tracing::warn!(%feed, stream_id, error = %e, "stopping a forwarder failed");
        }
    }
    handle.detach().await;
    Ok(report)
}

/// One subscription's outcome.
struct Received {
    frames: HashMap<FeedId, u64>,
    first_frame_ms: Option<u64>,
}

/// Subscribes to every stream of `feeds` in one subscription and receives until `until`.
async fn subscribe(
    session: &Session,
    media: &MediaLoop,
    room: &RoomId,
    feeds: &[FeedId],
    until: Instant,
) -> Result<Received, String> {
    let mut handle = session
        .attach_videoroom()
        .await
        .map_err(|e| format!("attaching: {e}"))?;
    let streams = feeds
        .iter()
        .map(|feed| SubscribeStream {
            feed,
            mid: None,
            layers: Some(TopLayers::TOP),
        })
        .collect();
    let asked = Instant::now();
    let (data, jsep) = handle
        .message(
            Request::join_subscriber(room, streams, None, None).body(),
            None,
        )
        .await
        .map_err(|e| format!("joining: {e}"))?;
    let VideoRoomEvent::Attached { streams } = VideoRoomEvent::parse(&data) else {
        return Err(format!("unexpected answer to join: {data}"));
    };
    let offer = jsep
        .filter(|j| j.kind == "offer")
        .ok_or("no offer from Janus")?;
    let by_mid: HashMap<Mid, FeedId> = streams
        .iter()
        .filter_map(|s| Some((Mid::from(s.mid.as_str()), s.feed.clone()?)))
        .collect();
    let mut rtc = crate::feed::answer_offer(&handle, media, &offer.sdp)
        .await
        .map_err(|e| e.to_string())?;
    let mut received = Received {
        frames: HashMap::new(),
        first_frame_ms: None,
    };
    let end = tokio::time::sleep_until(until.into());
    tokio::pin!(end);
    loop {
        tokio::select! {
            _ = &mut end => break,
            ev = rtc.next_event() => match ev {
                RtcEvent::Connected => rtc.batch_reads(BATCH),
                RtcEvent::Frame(d) => {
                    received
                        .first_frame_ms
                        .get_or_insert_with(|| asked.elapsed().as_millis() as u64);
                    if let Some(feed) = by_mid.get(&d.mid) {
                        *received.frames.entry(feed.clone()).or_default() += 1;
                    }
                }
                RtcEvent::Failed(e) => return Err(format!("the session ended: {e}")),
                _ => {}
            },
            msg = handle.next_event() => match msg {
                None => return Err("the connection to Janus was lost".into()),
                Some(Incoming::Trickle { candidate: Some(c), .. }) => {
                    let _ = rtc.add_remote_candidate(&c);
                }
                Some(other) => tracing::debug!(?other, "subscription event"),
            },
        }
    }
    rtc.close();
    let _ = tokio::time::timeout(Duration::from_secs(1), handle.detach()).await;
    Ok(received)
}
