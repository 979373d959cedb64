//! A feed recorded from the VideoRoom's RTP forwarders (`[janus] rtp_forward`) instead of a
//! subscription: its streams routed in the process's receiver ([`crate::forwarded`]), then
//! `rtp_forward` on a Janus handle of the feed's own (no PeerConnection: the handle only
//! carries the requests); at the end `stop_rtp_forward` (Janus also drops a publisher's
//! forwarders when it leaves).

use std::time::Duration;

use str0m::media::Mid;

use super::{FeedSpec, SubscribeError, janus, streams_to_record};
use crate::forwarded::{Forwards, Registration};
use crate::janus::messages::{StreamKind, forwarders};
use crate::janus::videoroom::{ForwardStream, Request};
use crate::janus::{Handle, JanusError, Session};
use crate::media::Codec;
use crate::secret::Secret;

/// What `[janus] rtp_forward` gives every feed: the receiver, and the VideoRoom's admin key
/// (asked for by a Janus with `lock_rtp_forward = true`).
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    pub forwards: Forwards,
    pub admin_key: Option<Secret>,
}

/// A feed's running forwarders.
pub struct Forwarded {
    pub handle: Handle,
    pub streams: Registration,
    room: crate::ids::RoomId,
    publisher: crate::ids::FeedId,
    stream_ids: Vec<u64>,
    secret: Option<Secret>,
    admin_key: Option<Secret>,
}

/// Starts forwarders for the streams of `spec`'s publisher that we record; the tracks.
pub async fn start(
    session: &Session,
    forward: &ForwardSettings,
    spec: &FeedSpec,
) -> Result<(Forwarded, Vec<(Mid, Codec)>), SubscribeError> {
    let p = &spec.publisher;
    let wanted = streams_to_record(p);
    let tracks: Vec<(Mid, Codec)> = wanted
        .iter()
        .filter_map(|s| Some((Mid::from(s.mid.as_str()), s.codec?)))
        .collect();
    if tracks.is_empty() {
        return Err(SubscribeError::NothingRecordable(
            p.streams.iter().map(|s| s.codec_name.clone()).collect(),
        ));
    }
    let handle = super::attach_while_publishing(session, spec).await?;
    let streams = forward.forwards.register(&tracks);
    let port = forward.forwards.port();
    let request_streams: Vec<ForwardStream> = wanted
        .iter()
        .filter_map(|s| {
            let mid = Mid::from(s.mid.as_str());
            let &(_, ssrc) = streams.ssrcs.iter().find(|(m, _)| *m == mid)?;
            let video = s.kind == StreamKind::Video;
            Some(ForwardStream {
                mid: s.mid.clone(),
                port,
                ssrc,
                rtcp_port: video.then_some(port),
                simulcast: video && s.simulcast,
            })
        })
        .collect();
    let secret = spec.secret.clone();
    let admin_key = forward.admin_key.clone();
    let request = Request::RtpForwardStreams {
        room: &spec.room,
        publisher_id: &p.id,
        host: forward.forwards.host(),
        streams: request_streams,
        secret: secret.as_ref().map(Secret::expose),
        admin_key: admin_key.as_ref().map(Secret::expose),
    };
    let answer = handle.message(request.body(), None).await;
    let started = match answer {
        Ok((data, _)) => forwarders(&data),
        Err(JanusError::Plugin { code, .. }) if code == super::group::NO_SUCH_FEED => {
            handle.detach().await;
            return Err(SubscribeError::Gone);
        }
        Err(e) => {
            handle.detach().await;
            return Err(janus("starting RTP forwarders")(e));
        }
    };
    let forwarded = Forwarded {
        handle,
        streams,
        room: spec.room.clone(),
        publisher: p.id.clone(),
        stream_ids: started.iter().map(|f| f.stream_id).collect(),
        secret,
        admin_key,
    };
    for f in &started {
        if let (Some(ssrc), Some(rtcp)) = (f.ssrc, f.local_rtcp_port) {
            forwarded.streams.set_rtcp_port(ssrc, rtcp);
        }
    }
    // Only the tracks Janus forwards: a stream it refused is not waited for.
    let forwarding: Vec<u32> = started.iter().filter_map(|f| f.ssrc).collect();
    let tracks: Vec<(Mid, Codec)> = tracks
        .into_iter()
        .filter(|(mid, _)| {
            forwarded
                .streams
                .ssrcs
                .iter()
                .any(|(m, s)| m == mid && forwarding.contains(s))
        })
        .collect();
    if tracks.is_empty() {
        forwarded.close().await;
        return Err(SubscribeError::Janus {
            doing: "starting RTP forwarders",
            source: JanusError::Protocol("Janus started no forwarder of ours".into()),
        });
    }
    Ok((forwarded, tracks))
}

impl Forwarded {
    /// Stops the forwarders and detaches (bounded, so a shutdown stays quick).
    pub async fn close(self) {
        let Forwarded {
            handle,
            streams,
            room,
            publisher,
            stream_ids,
            secret,
            admin_key,
        } = self;
        // Nothing more is routed to the feed from here on.
        drop(streams);
        let stop = async {
            for stream_id in stream_ids {
                let request = Request::StopRtpForward {
                    room: &room,
                    publisher_id: &publisher,
                    stream_id,
                    secret: secret.as_ref().map(Secret::expose),
                    admin_key: admin_key.as_ref().map(Secret::expose),
                };
                // A publisher that left took its forwarders with it: nothing to stop.
                if let Err(e) = handle.message(request.body(), None).await {
                    tracing::debug!(stream_id, error = %e, "stopping a forwarder");
                }
            }
            handle.detach().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), stop).await;
    }
}
