//! Parser tests on recorded Janus JSON (`tests/fixtures/janus/`, taken verbatim from the
//! protocol reference) and on hostile input.

use super::*;

fn fixture(name: &str) -> Incoming {
    let path = format!(
        "{}/tests/fixtures/janus/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse_incoming(&text).unwrap()
}

fn plugin_event(name: &str) -> (VideoRoomEvent, Option<Jsep>, Option<String>) {
    match fixture(name) {
        Incoming::Event {
            data,
            jsep,
            transaction,
            ..
        } => (VideoRoomEvent::parse(&data), jsep, transaction),
        other => panic!("{name}: not an event: {other:?}"),
    }
}

#[test]
fn success_carries_session_and_handle_ids() {
    assert_eq!(
        fixture("01-success"),
        Incoming::Success {
            transaction: "R9cQ7xbmqr3J".into(),
            id: Some(1070621502791929),
            plugindata: None
        }
    );
    assert!(matches!(
        fixture("03-success"),
        Incoming::Success {
            id: Some(7493907893543751),
            ..
        }
    ));
    assert_eq!(
        fixture("05-ack"),
        Incoming::Ack {
            transaction: "bJ4yCqrZ4m7h".into()
        }
    );
}

#[test]
fn joined_empty_and_with_publishers() {
    let (ev, _, tx) = plugin_event("06-event-joined");
    assert_eq!(tx.as_deref(), Some("bJ4yCqrZ4m7h"));
    let VideoRoomEvent::Joined {
        room,
        private_id,
        publishers,
        ..
    } = ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(room, Some(RoomId::from(1234)));
    assert_eq!(private_id, Some(4245945842));
    assert!(publishers.is_empty());

    let (ev, _, _) = plugin_event("07-event-joined");
    let VideoRoomEvent::Joined { publishers, .. } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(publishers.len(), 1);
    let p = &publishers[0];
    assert_eq!(p.id, FeedId::from(3291906086101741));
    assert_eq!(p.display.as_deref(), Some("mohsen"));
    assert_eq!(p.streams.len(), 2);
    assert_eq!(p.streams[0].kind, StreamKind::Audio);
    assert_eq!(p.streams[0].codec, Some(Codec::Opus));
    assert_eq!(p.streams[1].kind, StreamKind::Video);
    assert_eq!(p.streams[1].mid, "1");
    assert_eq!(p.streams[1].codec, Some(Codec::Vp8));
}

#[test]
fn new_publisher_announcement() {
    let (ev, _, tx) = plugin_event("23-event-event");
    assert_eq!(tx, None);
    let VideoRoomEvent::Publishers { room, publishers } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(room, Some(RoomId::from(1234)));
    assert_eq!(publishers[0].id, FeedId::from(1256658881258926));
    assert_eq!(publishers[0].display.as_deref(), Some("Nir"));
}

#[test]
fn attached_with_offer() {
    let (ev, jsep, _) = plugin_event("25-event-attached");
    let VideoRoomEvent::Attached { streams } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[1].kind, StreamKind::Video);
    assert_eq!(streams[1].feed, Some(FeedId::from(1256658881258926)));
    assert_eq!(streams[1].feed_mid.as_deref(), Some("1"));
    let jsep = jsep.unwrap();
    assert_eq!(jsep.kind, "offer");
    assert!(
        jsep.sdp
            .contains("a=candidate:1 1 udp 2015363327 217.61.26.125 41911 typ host")
    );
    // str0m accepts this very offer.
    str0m::change::SdpOffer::from_sdp_string(&jsep.sdp).unwrap();
}

/// A multistream subscription's changes, as Janus 1.1.2 words them: `updated` with every
/// stream (a removed publisher's m-line stays, inactive and without a feed), `updating` when
/// the change waits for our answer to the last offer.
#[test]
fn subscription_updates() {
    let data = serde_json::json!({
        "videoroom": "updated",
        "room": 1234,
        "streams": [
            {"type": "video", "mindex": 0, "mid": "0", "feed_id": 7, "feed_mid": "1", "active": true},
            {"type": "audio", "mindex": 1, "mid": "1", "active": false},
        ],
    });
    let VideoRoomEvent::Updated { streams } = VideoRoomEvent::parse(&data) else {
        panic!("not an update")
    };
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0].feed, Some(FeedId::from(7)));
    assert_eq!(streams[1].feed, None);
    let data = serde_json::json!({"videoroom": "updating", "room": 1234});
    assert_eq!(VideoRoomEvent::parse(&data), VideoRoomEvent::Updating);
}

#[test]
fn own_unpublish_and_configure_answers() {
    let (ev, _, _) = plugin_event("22-event-event");
    assert_eq!(ev, VideoRoomEvent::Unpublished { feed: None });
    let (ev, jsep, _) = plugin_event("10-event-event");
    assert!(matches!(ev, VideoRoomEvent::Other(_)));
    assert_eq!(jsep.unwrap().kind, "answer");
}

#[test]
fn core_events() {
    assert_eq!(
        fixture("14-webrtcup"),
        Incoming::WebrtcUp {
            sender: HandleId(7493907893543751)
        }
    );
    assert_eq!(
        fixture("17-media"),
        Incoming::Media {
            sender: HandleId(7493907893543751),
            mid: Some("0".into()),
            kind: "audio".into(),
            receiving: false
        }
    );
    let (ev, _, _) = plugin_event("19-event-slow_link");
    assert_eq!(
        ev,
        VideoRoomEvent::SlowLink {
            current_bitrate: Some(128000)
        }
    );
}

#[test]
fn our_own_requests_are_not_mistaken_for_events() {
    // The reference also shows requests; parsed as incoming they are just unknown.
    for name in [
        "00-create",
        "04-message-join",
        "11-trickle",
        "24-message-join",
    ] {
        assert!(matches!(fixture(name), Incoming::Unknown(_)), "{name}");
    }
}

#[test]
fn room_lifecycle_events() {
    let ev = |s: &str| VideoRoomEvent::parse(&serde_json::from_str(s).unwrap());
    assert_eq!(
        ev(r#"{"videoroom":"event","room":1234,"unpublished":1256658881258926}"#),
        VideoRoomEvent::Unpublished {
            feed: Some(FeedId::from(1256658881258926))
        }
    );
    assert_eq!(
        ev(r#"{"videoroom":"event","room":"r","leaving":"alice","display":"A"}"#),
        VideoRoomEvent::Leaving {
            feed: Some(FeedId::from("alice"))
        }
    );
    assert_eq!(
        ev(r#"{"videoroom":"event","room":1,"kicked":7}"#),
        VideoRoomEvent::Kicked {
            feed: Some(FeedId::from(7))
        }
    );
    assert_eq!(
        ev(r#"{"videoroom":"destroyed","room":1}"#),
        VideoRoomEvent::Destroyed {
            room: Some(RoomId::from(1))
        }
    );
    assert_eq!(
        ev(r#"{"videoroom":"event","error_code":426,"error":"No such room (99)"}"#),
        VideoRoomEvent::Error {
            code: 426,
            message: "No such room (99)".into()
        }
    );
    assert_eq!(
        ev(r#"{"videoroom":"talking","room":1,"id":5,"audio-level-dBov-avg":-40}"#),
        VideoRoomEvent::Talking {
            feed: Some(FeedId::from(5)),
            talking: true
        }
    );
}

#[test]
fn trickle_candidate_and_completed() {
    let c = r#"{"janus":"trickle","session_id":1,"sender":2,"candidate":{"candidate":"candidate:1 1 udp 2015363327 10.201.0.1 41911 typ host","sdpMid":"0","sdpMLineIndex":0}}"#;
    assert_eq!(
        parse_incoming(c).unwrap(),
        Incoming::Trickle {
            sender: HandleId(2),
            candidate: Some("candidate:1 1 udp 2015363327 10.201.0.1 41911 typ host".into())
        }
    );
    let done = r#"{"janus":"trickle","session_id":1,"sender":2,"candidate":{"completed":true}}"#;
    assert_eq!(
        parse_incoming(done).unwrap(),
        Incoming::Trickle {
            sender: HandleId(2),
            candidate: None
        }
    );
}

#[test]
fn hostile_input_never_panics() {
    for text in [
        "",
        "null",
        "[1,2]",
        "{",
        r#"{"janus":"event"}"#,
        r#"{"janus":"event","sender":-1,"plugindata":{"data":7}}"#,
        r#"{"janus":"event","sender":1,"plugindata":{"data":{"videoroom":"joined","publishers":"x"}}}"#,
        r#"{"janus":"event","sender":1,"plugindata":{"data":{"videoroom":"event","publishers":[{"id":1e400}]}}}"#,
        r#"{"janus":"event","sender":1,"plugindata":{"data":{"videoroom":"event","publishers":[{"id":99999999999999999999999}]}}}"#,
        r#"{"janus":"error","error":{"code":"x"}}"#,
        r#"{"janus":"trickle","sender":1,"candidate":{"candidate":5}}"#,
        r#"{"janus":"media","sender":18446744073709551615}"#,
    ] {
        if let Ok(Incoming::Event { data, .. }) = parse_incoming(text) {
            let _ = VideoRoomEvent::parse(&data);
        }
    }
    // A publisher entry with an unusable id is dropped, the others kept.
    let data = serde_json::json!({"videoroom":"event","publishers":[{"id":[1]},{"id":5,"display":"../../etc"}]});
    let VideoRoomEvent::Publishers { publishers, .. } = VideoRoomEvent::parse(&data) else {
        panic!()
    };
    assert_eq!(publishers.len(), 1);
    assert_eq!(publishers[0].display.as_deref(), Some("../../etc"));
}

#[test]
fn layer_switches_are_parsed() {
    let data = serde_json::json!({"videoroom": "event", "room": 1521, "mid": "0", "substream": 1});
    match VideoRoomEvent::parse(&data) {
        VideoRoomEvent::LayerSwitched {
            mid,
            substream,
            spatial_layer,
            ..
        } => {
            assert_eq!(mid.as_deref(), Some("0"));
            assert_eq!(substream, Some(1));
            assert_eq!(spatial_layer, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn participants_lists_give_the_publishing_feeds() {
    let data = serde_json::json!({"videoroom": "participants", "room": 1, "participants": [
        {"id": 7, "display": "a", "publisher": true},
        {"id": 8, "display": "watching", "publisher": false},
        {"id": "x-9", "publisher": true},
        {"id": [1], "publisher": true},
        {"publisher": true}
    ]});
    let feeds = publishing(&data);
    assert_eq!(feeds.len(), 2, "{feeds:?}");
    assert!(is_publishing(&data, &feeds[0]));
    assert!(!is_publishing(
        &serde_json::json!({"videoroom": "participants"}),
        &feeds[0]
    ));
}

#[test]
fn rtp_forward_answers_give_their_forwarders() {
    // Janus 1.1.2's answer to an rtp_forward with two streams (the video one with rtcp_port).
    let data = serde_json::json!({
        "videoroom": "rtp_forward", "room": 1234, "publisher_id": 7,
        "forwarders": [
            {"stream_id": 111, "type": "audio", "host": "127.0.0.1", "port": 5002, "ssrc": 1246887937, "srtp": false},
            {"stream_id": 222, "type": "video", "host": "127.0.0.1", "port": 5002,
             "local_rtcp_port": 40123, "remote_rtcp_port": 5002, "ssrc": 1246887938, "srtp": false},
            {"type": "video"}
        ]
    });
    assert_eq!(
        forwarders(&data),
        vec![
            Forwarder {
                stream_id: 111,
                kind: StreamKind::Audio,
                ssrc: Some(1246887937),
                local_rtcp_port: None
            },
            Forwarder {
                stream_id: 222,
                kind: StreamKind::Video,
                ssrc: Some(1246887938),
                local_rtcp_port: Some(40123)
            },
        ]
    );
    assert!(forwarders(&serde_json::json!({"videoroom": "event"})).is_empty());
}
