//! What an instance knows of the fleet, without IO: who holds each room's key, the loads the
//! others publish, the rooms this instance holds, and from that which room to claim next
//! and when. The etcd loop ([`super::run`]) feeds it what it reads and does what it says.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::feed::LastPart;
use crate::ids::{FeedId, RoomId};

/// How much later than the least loaded instance another tries to claim a free room, per
/// unit of load it has more (capped at [`MAX_CLAIM_DELAY`]): the least loaded one claims
/// first, and has published its new load by the time the next one looks.
pub const DELAY_PER_LOAD: Duration = Duration::from_millis(100);
/// Among instances with the same load, how much later each one tries than the one before
/// it in name order (so that they do not all race for the same room).
pub const DELAY_PER_RANK: Duration = Duration::from_millis(40);
/// The longest an instance waits before claiming a free room: a room with no recorder must
/// not wait long for a busy instance when the idle ones are gone.
pub const MAX_CLAIM_DELAY: Duration = Duration::from_millis(600);

/// A room key's value: who holds the room and the last part of each feed it records (a
/// takeover links its new parts to them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub instance: String,
    #[serde(default)]
    pub parts: Vec<FeedPart>,
}

/// One feed's last part in a [`Holding`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPart {
    pub feed: FeedId,
    pub file: String,
    pub part: u32,
}

/// An instance's published load: the feeds it records and the rooms it holds, and whether
/// it takes rooms (it has a session with Janus and is under its `max_feeds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    pub feeds: u64,
    pub rooms: u64,
    #[serde(default)]
    pub taking: bool,
}

impl Load {
    /// What claims are ordered by: a room just claimed counts before its feeds are known.
    pub fn weight(&self) -> u64 {
        self.feeds + self.rooms
    }
}

/// This instance's hold on one room. Two claims are the same claim when their instance and
/// revision are.
#[derive(Debug)]
pub struct Claim {
    pub instance: Arc<str>,
    /// The revision at which the key was created: the fencing token, larger for each new
    /// claim of the room, written into the manifest and sidecars of what it records.
    pub revision: i64,
    /// The instance that held the room before (when this instance saw it), and the last
    /// part of each feed it recorded.
    pub after: Option<Holding>,
    /// The links to `after`'s parts were handed out: a room watched again under the same
    /// claim (after a fence that healed) goes on from its own parts, not the old holder's.
    links_taken: AtomicBool,
}

impl PartialEq for Claim {
    fn eq(&self, other: &Claim) -> bool {
        self.instance == other.instance && self.revision == other.revision
    }
}

impl Eq for Claim {}

impl Claim {
    pub fn new(instance: Arc<str>, revision: i64, after: Option<Holding>) -> Claim {
        Claim {
            instance,
            revision,
            after,
            links_taken: AtomicBool::new(false),
        }
    }

    /// The last part the previous holder wrote of each feed: the first time only (the
    /// first watch of the room under this claim).
    pub fn take_links(&self) -> HashMap<FeedId, LastPart> {
        match &self.after {
            Some(before) if !self.links_taken.swap(true, Ordering::AcqRel) => before
                .parts
                .iter()
                .map(|p| {
                    let last = LastPart {
                        file: p.file.clone(),
                        part: p.part,
                    };
                    (p.feed.clone(), last)
                })
                .collect(),
            _ => HashMap::new(),
        }
    }
}

/// The fleet as this instance sees it.
#[derive(Debug)]
pub struct Board {
    me: Arc<str>,
    /// Each room key's holder now.
    holders: HashMap<RoomId, Holding>,
    /// The last holder of each room whose key is gone.
    gone: HashMap<RoomId, Holding>,
    /// Every instance's published load (this one's too, as etcd has it).
    loads: HashMap<String, Load>,
    held: HashMap<RoomId, Arc<Claim>>,
}

impl Board {
    pub fn new(me: Arc<str>) -> Board {
        Board {
            me,
            holders: HashMap::new(),
            gone: HashMap::new(),
            loads: HashMap::new(),
            held: HashMap::new(),
        }
    }

    pub fn me(&self) -> &Arc<str> {
        &self.me
    }

    /// The rooms this instance holds.
    pub fn held(&self) -> &HashMap<RoomId, Arc<Claim>> {
        &self.held
    }

    /// Every room's holder as last seen.
    pub fn holders(&self) -> &HashMap<RoomId, Holding> {
        &self.holders
    }

    /// A room key was written (a claim, or its holder's parts changed).
    pub fn on_put(&mut self, room: RoomId, holding: Holding) {
        self.gone.remove(&room);
        self.holders.insert(room, holding);
    }

    /// A room key is gone (its lease expired or was revoked, or its holder let it go).
    /// Returns whether this instance held it (then it no longer does).
    pub fn on_delete(&mut self, room: &RoomId) -> bool {
        if let Some(h) = self.holders.remove(room) {
            self.gone.insert(room.clone(), h);
        }
        self.held.remove(room).is_some()
    }

    /// A snapshot of every room key replaces what was known (after a reconnect). Rooms this
    /// instance held whose key is gone or someone else's are no longer held; returns them.
    pub fn on_snapshot(&mut self, keys: Vec<(RoomId, Holding, i64)>) -> Vec<RoomId> {
        let before = std::mem::take(&mut self.holders);
        for (room, h) in before {
            if !keys.iter().any(|(r, ..)| *r == room) {
                self.gone.insert(room, h);
            }
        }
        let mut lost = Vec::new();
        self.held.retain(|room, claim| {
            let kept = keys.iter().any(|(r, h, rev)| {
                r == room && h.instance == *claim.instance && *rev == claim.revision
            });
            if !kept {
                lost.push(room.clone());
            }
            kept
        });
        for (room, h, _) in keys {
            self.gone.remove(&room);
            self.holders.insert(room, h);
        }
        lost
    }

    pub fn on_load(&mut self, instance: String, load: Load) {
        self.loads.insert(instance, load);
    }

    pub fn on_load_gone(&mut self, instance: &str) {
        self.loads.remove(instance);
    }

    /// This instance won `room` at `revision`.
    pub fn claimed(&mut self, room: RoomId, revision: i64) -> Arc<Claim> {
        let claim = Arc::new(Claim::new(
            self.me.clone(),
            revision,
            self.gone.get(&room).cloned(),
        ));
        self.holders.insert(
            room.clone(),
            Holding {
                instance: self.me.to_string(),
                parts: Vec::new(),
            },
        );
        self.held.insert(room, claim.clone());
        claim
    }

    /// This instance let `room` go (no longer wanted, or it is stopping).
    pub fn released(&mut self, room: &RoomId) {
        self.held.remove(room);
        if let Some(h) = self.holders.remove(room) {
            self.gone.insert(room.clone(), h);
        }
    }

    /// Every room is lost at once (the lease is gone).
    pub fn lost_all(&mut self) {
        self.held.clear();
    }

    /// Wanted rooms nobody holds, in a stable order.
    pub fn free<'a>(&self, wanted: impl IntoIterator<Item = &'a RoomId>) -> Vec<RoomId> {
        let mut free: Vec<RoomId> = wanted
            .into_iter()
            .filter(|r| !self.holders.contains_key(r) && !self.held.contains_key(r))
            .cloned()
            .collect();
        free.sort_by_cached_key(|r| r.to_string());
        free.dedup();
        free
    }

    /// Held rooms no longer wanted.
    pub fn unwanted<'a>(&self, wanted: impl IntoIterator<Item = &'a RoomId>) -> Vec<RoomId> {
        let wanted: Vec<&RoomId> = wanted.into_iter().collect();
        self.held
            .keys()
            .filter(|r| !wanted.contains(r))
            .cloned()
            .collect()
    }

    /// Whether this instance, at load `own`, carries less than every other instance taking
    /// rooms (and there is one): a fleet that has its rooms already, which a joining
    /// instance need not wait to learn about.
    pub fn strictly_least(&self, own: Load) -> bool {
        let mut others = self
            .loads
            .iter()
            .filter(|(name, l)| **name != *self.me && l.taking)
            .peekable();
        others.peek().is_some() && others.all(|(_, l)| l.weight() > own.weight())
    }

    /// How long this instance, at load `own`, waits before claiming a free room: nothing when
    /// it is the least loaded (first by name among equals), more the more it has beyond the
    /// least loaded instance. Instances not taking rooms do not count.
    pub fn claim_delay(&self, own: Load) -> Duration {
        let own_w = own.weight();
        let others = self
            .loads
            .iter()
            .filter(|(name, l)| **name != *self.me && l.taking);
        let least = others
            .clone()
            .map(|(_, l)| l.weight())
            .min()
            .map_or(own_w, |m| m.min(own_w));
        let rank = others
            .filter(|(name, l)| l.weight() == own_w && name.as_str() < &*self.me)
            .count() as u32;
        let excess = (own_w - least).min(100) as u32;
        (DELAY_PER_LOAD * excess + DELAY_PER_RANK * rank).min(MAX_CLAIM_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(i: &str) -> Holding {
        Holding {
            instance: i.into(),
            parts: vec![FeedPart {
                feed: FeedId::from(7),
                file: format!("{i}.webm"),
                part: 2,
            }],
        }
    }

    fn load(feeds: u64, rooms: u64) -> Load {
        Load {
            feeds,
            rooms,
            taking: true,
        }
    }

    /// A room freed by another instance's lease is free again, and a claim of it links to
    /// that instance's last parts.
    #[test]
    fn a_takeover_links_to_the_last_holders_parts() {
        let mut b = Board::new("b".into());
        let (r1, r2) = (RoomId::from(1), RoomId::from(2));
        b.on_put(r1.clone(), holding("a"));
        assert!(b.free([&r1, &r2]) == vec![r2.clone()]);
        assert!(!b.on_delete(&r1), "not ours");
        assert_eq!(b.free([&r1, &r2]), vec![r1.clone(), r2.clone()]);
        let claim = b.claimed(r1.clone(), 42);
        assert_eq!(claim.revision, 42);
        let links = claim.take_links();
        assert_eq!(
            links.get(&FeedId::from(7)),
            Some(&LastPart {
                file: "a.webm".into(),
                part: 2
            })
        );
        assert_eq!(links.len(), 1);
        assert!(claim.take_links().is_empty(), "handed out once");
        assert_eq!(b.free([&r1, &r2]), vec![r2.clone()]);
        assert!(b.on_delete(&r1), "ours: the service must stop it");
        assert!(b.held().is_empty());
    }

    /// After a reconnect, a held room whose key was taken by another (or recreated) is lost.
    #[test]
    fn a_snapshot_drops_rooms_no_longer_ours() {
        let mut b = Board::new("b".into());
        let (r1, r2, r3) = (RoomId::from(1), RoomId::from(2), RoomId::from(3));
        b.claimed(r1.clone(), 10);
        b.claimed(r2.clone(), 11);
        b.claimed(r3.clone(), 12);
        let lost = b.on_snapshot(vec![
            (r1.clone(), holding("b"), 10),
            (r2.clone(), holding("a"), 20),
        ]);
        let mut lost: Vec<String> = lost.iter().map(|r| r.to_string()).collect();
        lost.sort();
        assert_eq!(lost, ["2", "3"]);
        assert_eq!(b.held().len(), 1);
        assert_eq!(b.free([&r1, &r2, &r3]), vec![r3]);
    }

    /// The least loaded instance claims at once; the others wait in proportion to how
    /// much more they carry, equals one after the other by name, never past the cap.
    #[test]
    fn claims_wait_in_proportion_to_load() {
        let mut b = Board::new("b".into());
        assert_eq!(b.claim_delay(load(0, 0)), Duration::ZERO, "alone");
        b.on_load("a".into(), load(0, 0));
        b.on_load("c".into(), load(0, 0));
        assert_eq!(b.claim_delay(load(0, 0)), DELAY_PER_RANK, "after a");
        assert!(!b.strictly_least(load(0, 0)), "a tie");
        b.on_load("a".into(), load(0, 1));
        assert_eq!(b.claim_delay(load(0, 0)), Duration::ZERO, "least loaded");
        assert!(!b.strictly_least(load(0, 0)), "c has as little");
        assert_eq!(b.claim_delay(load(2, 1)), DELAY_PER_LOAD * 3);
        assert_eq!(b.claim_delay(load(40, 1)), MAX_CLAIM_DELAY);
        let no_janus = Load {
            taking: false,
            ..load(0, 0)
        };
        b.on_load("a".into(), no_janus);
        assert_eq!(b.claim_delay(load(0, 1)), DELAY_PER_LOAD, "after c only");
        b.on_load_gone("c");
        assert_eq!(b.claim_delay(load(40, 1)), Duration::ZERO, "a has no Janus");
        assert!(!b.strictly_least(load(0, 0)), "nobody else takes rooms");
        b.on_load("c".into(), load(1, 1));
        assert!(b.strictly_least(load(0, 0)));
    }
}
