//! Janus JSON, parsed once at the edge into enums.
//!
//! Two layers: [`Incoming`] is the core protocol (`ack`, `success`, `error`, `event`, `trickle`,
//! `webrtcup`, `media`, `slowlink`, `hangup`, ...); [`VideoRoomEvent`] is the VideoRoom plugin's
//! `plugindata.data`. Anything unexpected becomes an `Unknown`/`Other` variant carrying the raw
//! JSON, so the caller can log it; nothing here panics on hostile input.

use serde::Deserialize;
use serde_json::Value;

use crate::ids::{FeedId, HandleId, RoomId, SessionId};
use crate::media::Codec;

/// Janus transaction ids are strings we choose.
pub type Transaction = String;

/// An SDP carried in `jsep`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Jsep {
    #[serde(rename = "type")]
    pub kind: String,
    pub sdp: String,
}

/// One message from Janus, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request was received; for plugin messages the answer follows as an `Event`.
    Ack {
        transaction: Transaction,
    },
    /// A synchronous success: `data.id` for create/attach, `plugindata` for sync plugin requests.
    Success {
        transaction: Transaction,
        id: Option<u64>,
        plugindata: Option<Value>,
    },
    /// A core-level error (`458` no such session, `403` unauthorized, ...).
    Error {
        transaction: Option<Transaction>,
        code: i64,
        reason: String,
    },
    /// A plugin event; with a transaction when it answers a request of ours.
    Event {
        transaction: Option<Transaction>,
        sender: HandleId,
        data: Value,
        jsep: Option<Jsep>,
    },
    /// Janus's ICE candidate for a handle; `None` means `completed`.
    Trickle {
        sender: HandleId,
        candidate: Option<String>,
    },
    WebrtcUp {
        sender: HandleId,
    },
    Media {
        sender: HandleId,
        mid: Option<String>,
        kind: String,
        receiving: bool,
    },
    SlowLink {
        sender: HandleId,
        mid: Option<String>,
        media: Option<String>,
        uplink: bool,
        lost: u64,
    },
    HangUp {
        sender: HandleId,
        reason: String,
    },
    Detached {
        sender: HandleId,
    },
    /// The session timed out on the server.
    Timeout {
        session: Option<SessionId>,
    },
    /// Valid JSON we do not understand; logged by the caller.
    Unknown(Value),
}

impl Incoming {
    /// The handle an asynchronous message is about, if any.
    pub fn sender(&self) -> Option<HandleId> {
        match self {
            Incoming::Event { sender, .. }
            | Incoming::Trickle { sender, .. }
            | Incoming::WebrtcUp { sender }
            | Incoming::Media { sender, .. }
            | Incoming::SlowLink { sender, .. }
            | Incoming::HangUp { sender, .. }
            | Incoming::Detached { sender } => Some(*sender),
            _ => None,
        }
    }

    /// The transaction this message answers, if any.
    pub fn transaction(&self) -> Option<&str> {
        match self {
            Incoming::Ack { transaction } | Incoming::Success { transaction, .. } => {
                Some(transaction)
            }
            Incoming::Error { transaction, .. } | Incoming::Event { transaction, .. } => {
                transaction.as_deref()
            }
            _ => None,
        }
    }
}

/// Why a text frame could not be used at all.
#[derive(Debug, thiserror::Error)]
#[error("not a Janus message: {0}")]
pub struct ParseError(String);

/// Parses one WebSocket text frame from Janus.
pub fn parse_incoming(text: &str) -> Result<Incoming, ParseError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ParseError(e.to_string()))?;
    if !v.is_object() {
        return Err(ParseError("not a JSON object".into()));
    }
    Ok(classify(v))
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn handle_field(v: &Value) -> Option<HandleId> {
    v.get("sender").and_then(Value::as_u64).map(HandleId)
}

fn classify(v: Value) -> Incoming {
    let transaction = str_field(&v, "transaction");
    let sender = handle_field(&v);
    let kind = v.get("janus").and_then(Value::as_str).unwrap_or("");
    let parsed = match (kind, transaction.clone(), sender) {
        ("ack", Some(transaction), _) => Some(Incoming::Ack { transaction }),
        ("success", Some(transaction), _) => Some(Incoming::Success {
            transaction,
            id: v.pointer("/data/id").and_then(Value::as_u64),
            plugindata: v.pointer("/plugindata/data").cloned(),
        }),
        ("error", transaction, _) => Some(Incoming::Error {
            transaction,
            code: v
                .pointer("/error/code")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            reason: v
                .pointer("/error/reason")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        }),
        ("event", transaction, Some(sender)) => {
            v.pointer("/plugindata/data").map(|data| Incoming::Event {
                transaction,
                sender,
                data: data.clone(),
                // Real Janus says `jsep`; some client libraries (and the protocol notes we
                // keep as fixtures) rename it `janusSdp`.
                jsep: v
                    .get("jsep")
                    .or_else(|| v.get("janusSdp"))
                    .and_then(|j| serde_json::from_value(j.clone()).ok()),
            })
        }
        ("trickle", _, Some(sender)) => {
            let c = v.get("candidate");
            let completed = c
                .and_then(|c| c.get("completed"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            match c.and_then(|c| c.get("candidate")).and_then(Value::as_str) {
                Some(s) => Some(Incoming::Trickle {
                    sender,
                    candidate: Some(s.to_owned()),
                }),
                None if completed => Some(Incoming::Trickle {
                    sender,
                    candidate: None,
                }),
                None => None,
            }
        }
        ("webrtcup", _, Some(sender)) => Some(Incoming::WebrtcUp { sender }),
        ("media", _, Some(sender)) => Some(Incoming::Media {
            sender,
            mid: str_field(&v, "mid"),
            kind: str_field(&v, "type").unwrap_or_default(),
            receiving: v.get("receiving").and_then(Value::as_bool).unwrap_or(false),
        }),
        ("slowlink", _, Some(sender)) => Some(Incoming::SlowLink {
            sender,
            mid: str_field(&v, "mid"),
            media: str_field(&v, "media"),
            uplink: v.get("uplink").and_then(Value::as_bool).unwrap_or(false),
            lost: v.get("lost").and_then(Value::as_u64).unwrap_or(0),
        }),
        ("hangup", _, Some(sender)) => Some(Incoming::HangUp {
            sender,
            reason: str_field(&v, "reason").unwrap_or_default(),
        }),
        ("detached", _, Some(sender)) => Some(Incoming::Detached { sender }),
        ("timeout", _, _) => Some(Incoming::Timeout {
            session: v.get("session_id").and_then(Value::as_u64).map(SessionId),
        }),
        _ => None,
    };
    parsed.unwrap_or(Incoming::Unknown(v))
}

/// One stream of a publisher, as listed in `publishers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherStream {
    pub kind: StreamKind,
    pub mid: String,
    /// `None` when Janus named a codec we cannot record (or none).
    pub codec: Option<Codec>,
    pub codec_name: Option<String>,
    pub disabled: bool,
    /// The publisher sends this video as simulcast substreams.
    pub simulcast: bool,
}

/// The `type` of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Audio,
    Video,
    Data,
    Other,
}

impl StreamKind {
    fn parse(s: &str) -> StreamKind {
        match s {
            "audio" => StreamKind::Audio,
            "video" => StreamKind::Video,
            "data" => StreamKind::Data,
            _ => StreamKind::Other,
        }
    }
}

/// A publisher announced in `joined` or `publishers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publisher {
    pub id: FeedId,
    /// The display name exactly as given (chosen by a stranger: sanitize before any use in paths).
    pub display: Option<String>,
    pub streams: Vec<PublisherStream>,
}

/// One stream of a subscription, as listed in `attached`/`updated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedStream {
    pub kind: StreamKind,
    /// Our (subscriber-side) mid.
    pub mid: String,
    pub feed: Option<FeedId>,
    pub feed_mid: Option<String>,
}

/// `plugindata.data` of the VideoRoom plugin, classified.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoRoomEvent {
    /// Our watcher joined: current publishers and our private id.
    Joined {
        room: Option<RoomId>,
        id: Option<FeedId>,
        private_id: Option<u64>,
        publishers: Vec<Publisher>,
    },
    /// New publishers in the room.
    Publishers {
        room: Option<RoomId>,
        publishers: Vec<Publisher>,
    },
    /// A publisher stopped publishing (`unpublished: <id>`); `None` is our own `"ok"`.
    Unpublished {
        feed: Option<FeedId>,
    },
    /// A participant left (`leaving: <id>`); `None` is our own `"ok"`.
    Leaving {
        feed: Option<FeedId>,
    },
    Kicked {
        feed: Option<FeedId>,
    },
    Destroyed {
        room: Option<RoomId>,
    },
    Talking {
        feed: Option<FeedId>,
        talking: bool,
    },
    /// Our subscription is set up; the SDP offer comes in `jsep`.
    Attached {
        streams: Vec<SubscribedStream>,
    },
    /// The subscription changed (`subscribe`, `unsubscribe`, or a publisher gone): every
    /// stream it now has; a new offer comes in `jsep` (none: nothing to negotiate).
    Updated {
        streams: Vec<SubscribedStream>,
    },
    /// A change of the subscription is postponed until our answer to the last offer: its
    /// offer comes later as an `updated` event.
    Updating,
    Started,
    SlowLink {
        current_bitrate: Option<u64>,
    },
    /// Janus now forwards another simulcast substream/temporal layer or VP9 SVC layer of
    /// the subscription's `mid` (its own choice, e.g. when the top layer stopped arriving).
    LayerSwitched {
        mid: Option<String>,
        substream: Option<u64>,
        temporal: Option<u64>,
        spatial_layer: Option<u64>,
        temporal_layer: Option<u64>,
    },
    /// The plugin refused a request (`426` no such room, `433` unauthorized (pin), ...).
    Error {
        code: i64,
        message: String,
    },
    /// Anything else, kept raw for the log.
    Other(Value),
}

impl VideoRoomEvent {
    /// Classifies VideoRoom `plugindata.data`.
    pub fn parse(data: &Value) -> VideoRoomEvent {
        let kind = data.get("videoroom").and_then(Value::as_str).unwrap_or("");
        let room = || {
            data.get("room")
                .and_then(|r| serde_json::from_value(r.clone()).ok())
        };
        let feed_field = |key: &str| -> Option<Option<FeedId>> {
            let v = data.get(key)?;
            // `"ok"` refers to ourselves; anything else should be a feed id.
            if v.as_str() == Some("ok") {
                return Some(None);
            }
            serde_json::from_value(v.clone()).ok().map(Some)
        };
        if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
            return VideoRoomEvent::Error {
                code,
                message: str_field(data, "error").unwrap_or_default(),
            };
        }
        match kind {
            "joined" => VideoRoomEvent::Joined {
                room: room(),
                id: data
                    .get("id")
                    .and_then(|v| serde_json::from_value(v.clone()).ok()),
                private_id: data.get("private_id").and_then(Value::as_u64),
                publishers: parse_publishers(data.get("publishers")),
            },
            "destroyed" => VideoRoomEvent::Destroyed { room: room() },
            "attached" => VideoRoomEvent::Attached {
                streams: parse_subscribed(data.get("streams")),
            },
            "updated" => VideoRoomEvent::Updated {
                streams: parse_subscribed(data.get("streams")),
            },
            "updating" => VideoRoomEvent::Updating,
            "talking" | "stopped-talking" => VideoRoomEvent::Talking {
                feed: feed_field("id").flatten(),
                talking: kind == "talking",
            },
            "slow_link" => VideoRoomEvent::SlowLink {
                current_bitrate: data.get("current-bitrate").and_then(Value::as_u64),
            },
            "event" => {
                if data.get("publishers").is_some() {
                    VideoRoomEvent::Publishers {
                        room: room(),
                        publishers: parse_publishers(data.get("publishers")),
                    }
                } else if let Some(feed) = feed_field("unpublished") {
                    VideoRoomEvent::Unpublished { feed }
                } else if let Some(feed) = feed_field("leaving") {
                    VideoRoomEvent::Leaving { feed }
                } else if let Some(feed) = feed_field("kicked") {
                    VideoRoomEvent::Kicked { feed }
                } else if data.get("started").is_some() {
                    VideoRoomEvent::Started
                } else if ["substream", "temporal", "spatial_layer", "temporal_layer"]
                    .iter()
                    .any(|k| data.get(k).is_some())
                {
                    let layer = |k: &str| data.get(k).and_then(Value::as_u64);
                    VideoRoomEvent::LayerSwitched {
                        mid: str_field(data, "mid"),
                        substream: layer("substream"),
                        temporal: layer("temporal"),
                        spatial_layer: layer("spatial_layer"),
                        temporal_layer: layer("temporal_layer"),
                    }
                } else {
                    VideoRoomEvent::Other(data.clone())
                }
            }
            _ => VideoRoomEvent::Other(data.clone()),
        }
    }
}

/// Whether a `listparticipants` answer (`{"videoroom": "participants", "participants":
/// [{"id", "publisher": true, ...}]}`) has `feed` publishing.
pub fn is_publishing(data: &Value, feed: &FeedId) -> bool {
    publishing(data).contains(feed)
}

/// The feeds publishing now, from a `listparticipants` answer.
pub fn publishing(data: &Value) -> Vec<FeedId> {
    data.get("participants")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|p| p.get("publisher").and_then(Value::as_bool) == Some(true))
                .filter_map(|p| serde_json::from_value::<FeedId>(p.get("id")?.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// One room of the VideoRoom's `list` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRoom {
    pub room: RoomId,
    pub description: Option<String>,
    /// Joining needs a PIN.
    pub pin_required: bool,
}

/// The rooms of a `list` answer (`{"videoroom": "success", "list": [...]}`); `None` if it
/// is not one. Entries without a usable room id are left out.
pub fn parse_room_list(data: &Value) -> Option<Vec<ListedRoom>> {
    let list = data.get("list")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|r| {
                Some(ListedRoom {
                    room: serde_json::from_value(r.get("room")?.clone()).ok()?,
                    description: str_field(r, "description"),
                    pin_required: r
                        .get("pin_required")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                })
            })
            .collect(),
    )
}

fn parse_publishers(v: Option<&Value>) -> Vec<Publisher> {
    let Some(list) = v.and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|p| {
            let id: FeedId = serde_json::from_value(p.get("id")?.clone()).ok()?;
            let mut streams: Vec<PublisherStream> = p
                .get("streams")
                .and_then(Value::as_array)
                .map(|s| s.iter().filter_map(parse_publisher_stream).collect())
                .unwrap_or_default();
            // Older Janus (0.x) announced only `audio_codec`/`video_codec`.
            if streams.is_empty() {
                for (kind, key) in [
                    (StreamKind::Audio, "audio_codec"),
                    (StreamKind::Video, "video_codec"),
                ] {
                    if let Some(name) = str_field(p, key) {
                        streams.push(PublisherStream {
                            kind,
                            mid: String::new(),
                            codec: Codec::from_janus_name(&name),
                            codec_name: Some(name),
                            disabled: false,
                            simulcast: false,
                        });
                    }
                }
            }
            Some(Publisher {
                id,
                display: str_field(p, "display"),
                streams,
            })
        })
        .collect()
}

/// One forwarder of Janus's answer to `rtp_forward` (the `streams` form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarder {
    pub stream_id: u64,
    pub kind: StreamKind,
    /// The SSRC it sends with, as asked for.
    pub ssrc: Option<u32>,
    /// The port Janus takes RTCP feedback on (when we gave an `rtcp_port`).
    pub local_rtcp_port: Option<u16>,
}

/// The forwarders of an `rtp_forward` answer (`forwarders`); the ones without a stream id
/// are left out.
pub fn forwarders(data: &Value) -> Vec<Forwarder> {
    let int = |f: &Value, k: &str| f.get(k).and_then(Value::as_u64);
    data.get("forwarders")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|f| {
            Some(Forwarder {
                stream_id: int(f, "stream_id")?,
                kind: StreamKind::parse(f.get("type").and_then(Value::as_str).unwrap_or("")),
                ssrc: int(f, "ssrc").and_then(|v| u32::try_from(v).ok()),
                local_rtcp_port: int(f, "local_rtcp_port").and_then(|v| u16::try_from(v).ok()),
            })
        })
        .collect()
}

fn parse_publisher_stream(s: &Value) -> Option<PublisherStream> {
    let codec_name = str_field(s, "codec");
    Some(PublisherStream {
        kind: StreamKind::parse(s.get("type")?.as_str()?),
        mid: str_field(s, "mid")?,
        codec: codec_name.as_deref().and_then(Codec::from_janus_name),
        codec_name,
        disabled: s.get("disabled").and_then(Value::as_bool).unwrap_or(false),
        simulcast: s.get("simulcast").and_then(Value::as_bool).unwrap_or(false),
    })
}

fn parse_subscribed(v: Option<&Value>) -> Vec<SubscribedStream> {
    let Some(list) = v.and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|s| {
            Some(SubscribedStream {
                kind: StreamKind::parse(s.get("type")?.as_str()?),
                mid: str_field(s, "mid")?,
                feed: s
                    .get("feed_id")
                    .and_then(|v| serde_json::from_value(v.clone()).ok()),
                feed_mid: str_field(s, "feed_mid"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
