//! Prometheus metrics (`[metrics] listen = "127.0.0.1:9469"`, off by default), through the
//! `metrics` facade and `metrics-exporter-prometheus`, which renders the text format and
//! serves it over HTTP. Without a listener every call here is a no-op.

use std::time::{Duration, SystemTime};

use crate::media::MediaKind;

/// How long a gauge that is not set again stays in the output. [`publish_status`] sets the
/// status gauges every few seconds, so a removed room's or an old error's series goes away.
const GAUGE_IDLE: Duration = Duration::from_secs(60);

/// Starts recording metrics; the handle renders the Prometheus text for the HTTP server's
/// `/metrics` (see [`crate::http`]). Fails if a recorder is already installed.
pub fn install()
-> Result<metrics_exporter_prometheus::PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .idle_timeout(metrics_util::MetricKindMask::GAUGE, Some(GAUGE_IDLE))
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_gauge!(
        "janus_recorder_fleet_rooms_held",
        "[cluster]: rooms whose etcd key this instance holds"
    );
    describe_counter!(
        "janus_recorder_fleet_claims_total",
        "[cluster]: rooms claimed, by whether another instance held them before (takeover)"
    );
    describe_counter!(
        "janus_recorder_fleet_etcd_reconnects_total",
        "[cluster]: connections to etcd lost and made again"
    );
    describe_gauge!(
        "janus_recorder_feeds_recording",
        "Feeds being written to a file now."
    );
    describe_counter!(
        "janus_recorder_frames_written_total",
        "Frames written to recordings, by kind (audio, video)."
    );
    describe_counter!(
        "janus_recorder_bytes_written_total",
        Unit::Bytes,
        "Media bytes written to recordings, by kind."
    );
    describe_counter!(
        "janus_recorder_packets_lost_total",
        "RTP packets lost on the way from Janus (from the loss fraction of our receiver reports)."
    );
    describe_counter!("janus_recorder_nacks_sent_total", "NACKs sent to Janus.");
    describe_counter!(
        "janus_recorder_frames_dropped_total",
        "Frames received and not written, by why (before-keyframe: video before a recording's first keyframe; stream-break: video after lost packets, until the next keyframe; task-behind: a feed's task did not keep up with the media loop; disk: its file's disk did not keep up; codec: not the track's codec)."
    );
    describe_counter!(
        "janus_recorder_udp_receive_drops_total",
        "Datagrams the kernel dropped on the media sockets because their receive buffer was full (SO_MEMINFO)."
    );
    describe_counter!(
        "janus_recorder_keyframe_requests_total",
        "Keyframe requests (PLI) sent to Janus."
    );
    describe_counter!(
        "janus_recorder_reconnects_total",
        "New Janus sessions after a lost one."
    );
    describe_counter!(
        "janus_recorder_file_errors_total",
        "Recordings that failed to write, flush or finalize."
    );
    describe_gauge!(
        "janus_recorder_upload_queue_files",
        "Files waiting to be uploaded to [storage]."
    );
    describe_gauge!(
        "janus_recorder_upload_queue_bytes",
        Unit::Bytes,
        "Bytes waiting to be uploaded to [storage]."
    );
    describe_gauge!(
        "janus_recorder_upload_oldest_pending_seconds",
        Unit::Seconds,
        "How long the oldest file waiting for upload has waited."
    );
    describe_counter!(
        "janus_recorder_upload_failures_total",
        "Failed uploads, by cause (credentials, bucket, checksum, local-file, unavailable)."
    );
    describe_counter!(
        "janus_recorder_uploaded_bytes_total",
        Unit::Bytes,
        "Bytes uploaded to [storage] and verified."
    );
    describe_gauge!("janus_recorder_rooms_configured", "Rooms the config lists.");
    describe_gauge!("janus_recorder_rooms_watched", "Rooms joined on Janus now.");
    describe_gauge!(
        "janus_recorder_room_feeds_recording",
        "Feeds being written to a file now, by room (rooms with none are left out)."
    );
    describe_gauge!(
        "janus_recorder_last_error_time_seconds",
        Unit::Seconds,
        "When the last error happened (Unix time); its text is the `message` label."
    );
    describe_gauge!(
        "janus_recorder_room_skipped",
        "Rooms that rooms = \"all\" found but does not record (1 each; the reason is a label)."
    );
    describe_counter!(
        "janus_recorder_feeds_refused_total",
        "Publishers not recorded because [limits] max_feeds was reached."
    );
    describe_counter!(
        "janus_recorder_webhook_deliveries_total",
        "Webhook POSTs, by result (ok: answered 2xx; error: another status, a timeout or no connection)."
    );
    describe_gauge!(
        "janus_recorder_webhook_outbox_events",
        "Events waiting in a webhook's outbox, by webhook (its name or host)."
    );
    describe_counter!(
        "janus_recorder_webhook_events_dropped_total",
        "Events a webhook never got, by why (expired: not taken for 24 h; outbox-full: over max_outbox; write-error; unreadable)."
    );
}

/// A publisher was refused at the feed limit.
pub fn feed_refused() {
    metrics::counter!("janus_recorder_feeds_refused_total").increment(1);
}

fn kind_label(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "audio",
        MediaKind::Video => "video",
    }
}

/// The counters a feed bumps on every frame, looked up once when the feed starts: the
/// `metrics` macros find their counter by key on every call, too much for a per-frame path.
pub struct FrameCounters {
    /// Frames and bytes, for audio then video.
    by_kind: [(metrics::Counter, metrics::Counter); 2],
}

impl FrameCounters {
    pub fn new() -> FrameCounters {
        let pair = |kind: MediaKind| {
            let kind = kind_label(kind);
            (
                metrics::counter!("janus_recorder_frames_written_total", "kind" => kind),
                metrics::counter!("janus_recorder_bytes_written_total", "kind" => kind),
            )
        };
        FrameCounters {
            by_kind: [pair(MediaKind::Audio), pair(MediaKind::Video)],
        }
    }

    /// A frame of `bytes` was written.
    pub fn written(&self, kind: MediaKind, bytes: usize) {
        let (frames, total) = &self.by_kind[usize::from(kind == MediaKind::Video)];
        frames.increment(1);
        total.increment(bytes as u64);
    }
}

impl Default for FrameCounters {
    fn default() -> Self {
        FrameCounters::new()
    }
}

pub fn feeds_recording(now: usize) {
    metrics::gauge!("janus_recorder_feeds_recording").set(now as f64);
}

/// Increments from one feed's receive statistics since its last report.
pub fn receive_stats(lost: u64, nacks: u64) {
    metrics::counter!("janus_recorder_packets_lost_total").increment(lost);
    metrics::counter!("janus_recorder_nacks_sent_total").increment(nacks);
}

/// We asked Janus for a keyframe (PLI).
pub fn keyframe_requested() {
    metrics::counter!("janus_recorder_keyframe_requests_total").increment(1);
}

/// `[cluster]`: the rooms this instance (named in the label) holds.
pub fn fleet_rooms_held(instance: &str, rooms: u64) {
    metrics::gauge!("janus_recorder_fleet_rooms_held", "instance" => instance.to_owned())
        .set(rooms as f64);
}

/// `[cluster]`: a room claimed; `takeover` when another instance held it before.
pub fn fleet_claim(takeover: bool) {
    let kind = if takeover { "takeover" } else { "free" };
    metrics::counter!("janus_recorder_fleet_claims_total", "kind" => kind).increment(1);
}

/// `[cluster]`: the connection to etcd was lost.
pub fn fleet_reconnect() {
    metrics::counter!("janus_recorder_fleet_etcd_reconnects_total").increment(1);
}

pub fn reconnect() {
    metrics::counter!("janus_recorder_reconnects_total").increment(1);
}

/// A frame not written because its file's disk did not keep up (see `feed::disk`).
pub fn frames_dropped_for_disk() {
    metrics::counter!("janus_recorder_frames_dropped_for_disk_total").increment(1);
    frames_dropped(FrameDrop::Disk, 1);
}

/// Why a frame received was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameDrop {
    /// Video before the recording's first keyframe.
    BeforeKeyframe,
    /// Video after lost packets broke the stream, until the next keyframe.
    StreamBreak,
    /// The feed's task did not take its frames from the media loop in time.
    TaskBehind,
    /// The file's disk did not keep up.
    Disk,
    /// Not the codec the track was negotiated with.
    Codec,
}

impl FrameDrop {
    fn label(self) -> &'static str {
        match self {
            FrameDrop::BeforeKeyframe => "before-keyframe",
            FrameDrop::StreamBreak => "stream-break",
            FrameDrop::TaskBehind => "task-behind",
            FrameDrop::Disk => "disk",
            FrameDrop::Codec => "codec",
        }
    }
}

/// `count` frames received and not written, for `reason`. Not on the path of frames written:
/// the counter is looked up by key on each call.
pub fn frames_dropped(reason: FrameDrop, count: u64) {
    metrics::counter!("janus_recorder_frames_dropped_total", "reason" => reason.label())
        .increment(count);
}

/// Datagrams the kernel dropped on a media socket (its receive buffer was full) since the
/// last call.
pub fn udp_receive_drops(count: u64) {
    metrics::counter!("janus_recorder_udp_receive_drops_total").increment(count);
}

pub fn file_error() {
    metrics::counter!("janus_recorder_file_errors_total").increment(1);
}

/// What `janus-recorder status` reads, published as gauges (see [`crate::health`]).
pub fn publish_status(
    rooms_configured: usize,
    rooms_watched: usize,
    room_feeds: &[(String, usize)],
    skipped: &[(String, String)],
    last_error: Option<(&str, SystemTime)>,
) {
    for (room, reason) in skipped {
        metrics::gauge!("janus_recorder_room_skipped", "room" => room.clone(), "reason" => reason.clone())
            .set(1.0);
    }
    metrics::gauge!("janus_recorder_rooms_configured").set(rooms_configured as f64);
    metrics::gauge!("janus_recorder_rooms_watched").set(rooms_watched as f64);
    for (room, feeds) in room_feeds {
        metrics::gauge!("janus_recorder_room_feeds_recording", "room" => room.clone())
            .set(*feeds as f64);
    }
    if let Some((message, at)) = last_error {
        let at = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        metrics::gauge!("janus_recorder_last_error_time_seconds", "message" => message.to_owned())
            .set(at.as_secs_f64());
    }
}
