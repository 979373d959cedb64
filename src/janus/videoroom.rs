//! The VideoRoom requests we send, as types: the one place their JSON is built (the parsed
//! answers are in [`super::messages`]). `Handle::message` takes them as JSON values.

use serde::Serialize;
use serde_json::Value;

use crate::ids::{FeedId, RoomId};
use crate::media::Codec;
use crate::secret::Secret;

/// A request to the VideoRoom plugin.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "request", rename_all = "lowercase")]
pub enum Request<'a> {
    /// Join a room as a participant that publishes (or, like our room watcher, never does).
    #[serde(rename = "join")]
    JoinPublisher {
        room: &'a RoomId,
        ptype: &'static str,
        display: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pin: Option<&'a str>,
    },
    /// Join a room as a subscriber to `streams`.
    #[serde(rename = "join")]
    JoinSubscriber {
        room: &'a RoomId,
        ptype: &'static str,
        streams: Vec<SubscribeStream<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        private_id: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pin: Option<&'a str>,
    },
    /// Start a subscription (sent with our SDP answer).
    Start,
    /// Publish our media (sent with our SDP offer).
    Publish {
        descriptions: Vec<StreamDescription>,
        #[serde(skip_serializing_if = "Option::is_none")]
        audiocodec: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        videocodec: Option<String>,
    },
    /// Leave the room.
    Leave,
    /// List a room's participants (who publishes now).
    #[serde(rename = "listparticipants")]
    ListParticipants { room: &'a RoomId },
    /// Have Janus send a publisher's audio and video as plain RTP to `host` (VideoRoom RTP
    /// forwarders; only the benchmark's probe uses them, to measure what they cost Janus).
    #[serde(rename = "rtp_forward")]
    RtpForward {
        room: &'a RoomId,
        publisher_id: &'a FeedId,
        host: String,
        audio_port: u16,
        video_port: u16,
    },
    /// Have Janus send each of `streams` of a publisher as plain RTP to `host` (the
    /// recorder's `[janus] rtp_forward` mode): each stream to its port, with the SSRC we
    /// route it by.
    #[serde(rename = "rtp_forward")]
    RtpForwardStreams {
        room: &'a RoomId,
        publisher_id: &'a FeedId,
        host: &'a str,
        streams: Vec<ForwardStream>,
        /// The room's `secret` (Janus asks for it when the room has one).
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<&'a str>,
        /// The VideoRoom's `admin_key` (asked for with `lock_rtp_forward = true`).
        #[serde(skip_serializing_if = "Option::is_none")]
        admin_key: Option<&'a str>,
    },
    /// Stop one forwarder that [`Request::RtpForward`] or [`Request::RtpForwardStreams`]
    /// started.
    #[serde(rename = "stop_rtp_forward")]
    StopRtpForward {
        room: &'a RoomId,
        publisher_id: &'a FeedId,
        stream_id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        secret: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        admin_key: Option<&'a str>,
    },
    /// List the rooms (private ones too with the right `admin_key`).
    List {
        #[serde(skip_serializing_if = "Option::is_none")]
        admin_key: Option<&'a str>,
    },
}

/// One stream of [`Request::RtpForwardStreams`].
#[derive(Debug, Clone, Serialize)]
pub struct ForwardStream {
    /// The publisher's mid.
    pub mid: String,
    pub port: u16,
    pub ssrc: u32,
    /// Where Janus sends its latching packets from the socket it takes RTCP feedback on
    /// (our keyframe requests); video only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtcp_port: Option<u16>,
    /// A simulcast publisher's video: forwarded as a viewer gets it (the top substream, its
    /// switches rewritten into one stream), not each substream apart.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub simulcast: bool,
}

/// One stream of a subscription.
#[derive(Debug, Clone, Serialize)]
pub struct SubscribeStream<'a> {
    pub feed: &'a FeedId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mid: Option<&'a str>,
    /// Video at its best: the top simulcast substream and temporal layer, and the top VP9 SVC
    /// spatial and temporal layers (Janus ignores them for streams without layers).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub layers: Option<TopLayers>,
}

/// The layer choice of [`SubscribeStream::layers`]: the highest of each.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TopLayers {
    substream: u8,
    temporal: u8,
    spatial_layer: u8,
    temporal_layer: u8,
}

impl TopLayers {
    pub const TOP: TopLayers = TopLayers {
        substream: 2,
        temporal: 2,
        spatial_layer: 2,
        temporal_layer: 2,
    };
}

/// What one published stream is, in the publisher list others see.
#[derive(Debug, Clone, Serialize)]
pub struct StreamDescription {
    pub mid: String,
    pub description: String,
}

impl<'a> Request<'a> {
    /// Join `room` as a publisher named `display`.
    pub fn join_publisher(room: &'a RoomId, display: &'a str, pin: Option<&'a Secret>) -> Self {
        Request::JoinPublisher {
            room,
            ptype: "publisher",
            display,
            pin: pin.map(Secret::expose),
        }
    }

    /// Join `room` as a subscriber to `streams`.
    pub fn join_subscriber(
        room: &'a RoomId,
        streams: Vec<SubscribeStream<'a>>,
        private_id: Option<u64>,
        pin: Option<&'a Secret>,
    ) -> Self {
        Request::JoinSubscriber {
            room,
            ptype: "subscriber",
            streams,
            private_id,
            pin: pin.map(Secret::expose),
        }
    }

    /// Publish streams described by `descriptions`, in these codecs.
    pub fn publish(
        descriptions: Vec<StreamDescription>,
        audio: Option<Codec>,
        video: Option<Codec>,
    ) -> Self {
        Request::Publish {
            descriptions,
            audiocodec: audio.map(|c| c.to_string()),
            videocodec: video.map(|c| c.to_string()),
        }
    }

    /// The request as the JSON body of a plugin message.
    pub fn body(&self) -> Value {
        serde_json::to_value(self).expect("requests serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_are_the_json_janus_expects() {
        let room = RoomId::from(1234);
        let pin = Secret::new("42");
        assert_eq!(
            Request::join_publisher(&room, "watcher", Some(&pin)).body(),
            json!({"request": "join", "room": 1234, "ptype": "publisher", "display": "watcher", "pin": "42"})
        );
        let feed = FeedId::from(7);
        let streams = vec![
            SubscribeStream {
                feed: &feed,
                mid: Some("1"),
                layers: Some(TopLayers::TOP),
            },
            SubscribeStream {
                feed: &feed,
                mid: Some("0"),
                layers: None,
            },
        ];
        assert_eq!(
            Request::join_subscriber(&room, streams, Some(99), None).body(),
            json!({"request": "join", "room": 1234, "ptype": "subscriber", "private_id": 99,
                   "streams": [
                       {"feed": 7, "mid": "1", "substream": 2, "temporal": 2, "spatial_layer": 2, "temporal_layer": 2},
                       {"feed": 7, "mid": "0"}]})
        );
        assert_eq!(Request::Start.body(), json!({"request": "start"}));
        assert_eq!(Request::Leave.body(), json!({"request": "leave"}));
        let d = vec![StreamDescription {
            mid: "0".into(),
            description: "x".into(),
        }];
        assert_eq!(
            Request::publish(d, Some(Codec::Opus), None).body(),
            json!({"request": "publish", "descriptions": [{"mid": "0", "description": "x"}], "audiocodec": "opus"})
        );
        assert_eq!(
            Request::RtpForward {
                room: &room,
                publisher_id: &feed,
                host: "10.0.0.2".into(),
                audio_port: 5002,
                video_port: 5004,
            }
            .body(),
            json!({"request": "rtp_forward", "room": 1234, "publisher_id": 7, "host": "10.0.0.2",
                   "audio_port": 5002, "video_port": 5004})
        );
        assert_eq!(
            Request::RtpForwardStreams {
                room: &room,
                publisher_id: &feed,
                host: "127.0.0.1",
                streams: vec![
                    ForwardStream {
                        mid: "0".into(),
                        port: 5002,
                        ssrc: 11,
                        rtcp_port: None,
                        simulcast: false
                    },
                    ForwardStream {
                        mid: "1".into(),
                        port: 5002,
                        ssrc: 12,
                        rtcp_port: Some(5002),
                        simulcast: true
                    },
                ],
                secret: Some("s"),
                admin_key: None,
            }
            .body(),
            json!({"request": "rtp_forward", "room": 1234, "publisher_id": 7, "host": "127.0.0.1", "secret": "s",
                   "streams": [{"mid": "0", "port": 5002, "ssrc": 11},
                               {"mid": "1", "port": 5002, "ssrc": 12, "rtcp_port": 5002, "simulcast": true}]})
        );
        assert_eq!(
            Request::StopRtpForward {
                room: &room,
                publisher_id: &feed,
                stream_id: 9,
                secret: None,
                admin_key: None,
            }
            .body(),
            json!({"request": "stop_rtp_forward", "room": 1234, "publisher_id": 7, "stream_id": 9})
        );
    }
}
