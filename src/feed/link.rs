//! A feed's subscription, as its task sees it: one of its own (a Janus handle and a str0m
//! session for this feed alone), a place in a room's shared one ([`super::group`]), or RTP
//! forwarders ([`super::forward`]). The feed's loop is the same over each.

use std::time::Duration;

use str0m::media::Mid;

use super::EndReason;
use super::forward::Forwarded;
use super::group::{Member, MemberInput};
use super::machine::Input;
use crate::janus::Handle;
use crate::rtc::{RtcError, RtcEvent, RtcSession};

/// Where a feed's media and subscription messages come from.
pub enum Link {
    /// The feed's own handle and session.
    Own { handle: Handle, rtc: RtcSession },
    /// A place in a subscription shared with other feeds of the room.
    Shared(Member),
    /// RTP forwarders instead of a subscription (`[janus] rtp_forward`).
    Forwarded(Forwarded),
}

/// What the link gives the feed's loop next.
pub enum Next {
    Input(Input),
    End(EndReason),
}

impl Link {
    /// The next input for the feed's machine, or the end of the subscription. Cancel-safe.
    pub async fn next(&mut self) -> Next {
        match self {
            Link::Own { handle, rtc } => tokio::select! {
                ev = rtc.next_event() => Next::Input(Input::Rtc(ev)),
                msg = handle.next_event() => match msg {
                    Some(msg) => Next::Input(Input::Janus(msg)),
                    None => Next::End(EndReason::ConnectionLost),
                },
            },
            Link::Shared(m) => match m.next().await {
                MemberInput::Rtc(ev) => Next::Input(Input::Rtc(ev)),
                MemberInput::Janus(msg) => Next::Input(Input::Janus(msg)),
                MemberInput::End(reason) => Next::End(reason),
            },
            Link::Forwarded(f) => tokio::select! {
                ev = f.streams.next() => match ev {
                    Some(ev) => Next::Input(Input::Rtc(ev)),
                    None => Next::End(EndReason::Failed(super::Failure::Subscribe(
                        "the RTP forward receiver ended".into(),
                    ))),
                },
                msg = f.handle.next_event() => match msg {
                    Some(msg) => Next::Input(Input::Janus(msg)),
                    None => Next::End(EndReason::ConnectionLost),
                },
            },
        }
    }

    /// A media event already received and not taken yet (the rest of a batch); `None`
    /// without waiting for one.
    pub fn queued(&mut self) -> Option<RtcEvent> {
        match self {
            Link::Own { rtc, .. } => rtc.queued(),
            Link::Shared(m) => m.queued(),
            Link::Forwarded(f) => f.streams.queued(),
        }
    }

    /// Asks the publisher of `mid` for a keyframe (PLI).
    pub fn request_keyframe(&mut self, mid: Mid) {
        match self {
            Link::Own { rtc, .. } => rtc.request_keyframe(mid),
            Link::Shared(m) => m.request_keyframe(mid),
            Link::Forwarded(f) => f.streams.request_keyframe(mid),
        }
    }

    /// Frames come in batches every `every` from now on.
    pub fn batch_reads(&mut self, every: Duration) {
        match self {
            Link::Own { rtc, .. } => rtc.batch_reads(every),
            Link::Shared(m) => m.batch_reads(every),
            Link::Forwarded(f) => f.streams.batch_reads(every),
        }
    }

    /// A candidate Janus trickled (a shared subscription takes them itself).
    pub fn add_remote_candidate(&mut self, sdp: &str) -> Result<(), RtcError> {
        match self {
            Link::Own { rtc, .. } => rtc.add_remote_candidate(sdp),
            Link::Shared(_) | Link::Forwarded(_) => Ok(()),
        }
    }

    /// What was received but not handed out yet (the feed is ending).
    pub async fn take_received(&mut self) -> Vec<RtcEvent> {
        match self {
            Link::Own { rtc, .. } => rtc.take_received().await,
            Link::Shared(m) => m.take_received().await,
            Link::Forwarded(f) => f.streams.take_received(),
        }
    }

    /// Ends the subscription (its own), or leaves the shared one.
    pub async fn close(self) {
        match self {
            Link::Own { handle, mut rtc } => {
                rtc.close();
                // Detach now (Drop would too); bounded so shutdown stays quick.
                let _ = tokio::time::timeout(Duration::from_secs(1), handle.detach()).await;
            }
            Link::Shared(m) => drop(m),
            Link::Forwarded(f) => f.close().await,
        }
    }
}
