//! The room watchers of one Janus session, reconciled with the [`Registry`]'s wanted rooms:
//! each watcher has its own stop token, so a change stops or starts one room without
//! touching the others; rooms that stay as they were keep recording into the same files. A
//! watcher that panics is logged and started again after a pause. In a fleet (`[cluster]`)
//! only the rooms this instance holds a claim on are watched, each with its claim.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::RoomConfig;
use crate::feed::{EndReason, FeedSettings};
use crate::fleet::Claim;
use crate::health::Health;
use crate::ids::RoomId;
use crate::janus::Session;
use crate::registry::{Source, Wanted};
use crate::room;

use super::{ROOM_RESTART, SHUTDOWN_GRACE};

/// Starts watching one room (with this instance's claim on it, in a fleet): `room::watch` on
/// a session, or anything else in a test.
pub(super) type Watch =
    Box<dyn Fn(RoomConfig, Option<Arc<Claim>>, room::RoomStop) -> BoxFuture<'static, ()> + Send>;

/// In a fleet, the rooms this instance may record now and its claim on each.
pub(super) type Claims = HashMap<RoomId, Arc<Claim>>;

/// One running watcher.
struct Running {
    wanted: Wanted,
    claim: Option<Arc<Claim>>,
    stop: CancellationToken,
    /// Why it is being stopped, when not for the whole service.
    why: Arc<OnceLock<EndReason>>,
}

pub(super) struct Rooms {
    watch: Watch,
    health: Arc<Health>,
    shutdown: CancellationToken,
    restart_after: Duration,
    tasks: JoinSet<()>,
    /// Which room each task watches, to name and restart one that crashed.
    task_room: HashMap<tokio::task::Id, RoomId>,
    running: HashMap<RoomId, Running>,
}

impl Rooms {
    pub(super) fn new(
        session: Session,
        settings: Arc<FeedSettings>,
        shutdown: CancellationToken,
    ) -> Rooms {
        let health = settings.health.clone();
        let watch: Watch = Box::new(move |room, claim, stop| {
            Box::pin(room::watch(
                session.clone(),
                settings.clone(),
                room,
                claim,
                stop,
            ))
        });
        Rooms::with_watch(watch, health, shutdown, ROOM_RESTART)
    }

    pub(super) fn with_watch(
        watch: Watch,
        health: Arc<Health>,
        shutdown: CancellationToken,
        restart_after: Duration,
    ) -> Rooms {
        Rooms {
            watch,
            health,
            shutdown,
            restart_after,
            tasks: JoinSet::new(),
            task_room: HashMap::new(),
            running: HashMap::new(),
        }
    }

    /// Starts watching `room` after `delay` (unless it is stopped meanwhile).
    fn start_after(&mut self, wanted: Wanted, claim: Option<Arc<Claim>>, delay: Duration) {
        let room = &wanted.config;
        let stop = self.shutdown.child_token();
        let why = Arc::new(OnceLock::new());
        let span = tracing::info_span!("room", room = %room.room);
        let watcher = (self.watch)(
            room.clone(),
            claim.clone(),
            room::RoomStop {
                service: self.shutdown.clone(),
                room: stop.clone(),
                why: why.clone(),
            },
        );
        let stopped = stop.clone();
        let task = async move {
            tokio::select! {
                _ = tokio::time::sleep(delay) => watcher.await,
                _ = stopped.cancelled() => {}
            }
        };
        let handle = self.tasks.spawn(task.instrument(span));
        self.task_room.insert(handle.id(), room.room.clone());
        self.running.insert(
            room.room.clone(),
            Running {
                wanted,
                claim,
                stop,
                why,
            },
        );
    }

    /// Waits for a room task to end and deals with it: a panicked watcher is logged and
    /// started again. `None` when no task is left.
    pub(super) async fn reap(&mut self) -> Option<()> {
        let ended = self.tasks.join_next_with_id().await?;
        let (id, panic) = match ended {
            Ok((id, ())) => (id, None),
            Err(e) => (e.id(), e.try_into_panic().ok()),
        };
        let room = self.task_room.remove(&id);
        let (Some(panic), Some(room)) = (panic, room) else {
            return Some(());
        };
        let what = crate::rtc::panic_message(panic);
        tracing::error!(%room, panic = %what, "room watcher crashed; restarting it in {:?}", self.restart_after);
        self.health
            .error(format!("room {room}: watcher crashed: {what}"));
        // Still wanted (not removed meanwhile): start it again.
        if let Some(r) = self.running.remove(&room)
            && !r.stop.is_cancelled()
        {
            self.start_after(r.wanted, r.claim, self.restart_after);
        }
        Some(())
    }

    /// Stops rooms no longer wanted (or wanted differently: a new pin, say) and starts new
    /// ones; rooms that stay as they were keep recording into the same files. With `claims`
    /// (a fleet), a wanted room is watched only while claimed, and a new claim is a new
    /// watch.
    pub(super) fn apply(&mut self, wanted: &[Wanted], claims: Option<&Claims>) {
        let claim_of = |room: &RoomId| claims.map(|c| c.get(room).cloned());
        let all = wanted;
        let wanted: Vec<&Wanted> = all
            .iter()
            .filter(|w| claim_of(&w.config.room).is_none_or(|c| c.is_some()))
            .collect();
        self.running.retain(|id, r| {
            let now = all.iter().find(|w| w.config.room == *id);
            // In a fleet: the claim it was started under is still this instance's.
            let same_claim = claim_of(id).is_none_or(|c| c == r.claim);
            let keep = now.is_some_and(|w| w.config == r.wanted.config) && same_claim;
            if !keep {
                let (reason, why) = match (r.wanted.source, now) {
                    // Wanted still, but no longer ours: another instance records it.
                    (_, Some(_)) if !same_claim => (
                        EndReason::HandedOver,
                        "this instance no longer holds the room's claim",
                    ),
                    // Wanted still, but differently: the config changed it.
                    (_, Some(_)) | (Source::Config, None) => {
                        (EndReason::Reconfigured, "room removed from the config")
                    }
                    (Source::Api, None) => (EndReason::Stopped, "room stopped through the API"),
                    (Source::Discovered, None) => {
                        (EndReason::RoomDestroyed, "room gone from Janus's list")
                    }
                };
                tracing::info!(room = %id, %reason, "{why}; finalizing its recordings");
                let _ = r.why.set(reason);
                r.stop.cancel();
            }
            keep
        });
        for w in wanted {
            match self.running.get_mut(&w.config.room) {
                // The same room from another source now (the API's room added to the
                // config): it goes on, known by its new source.
                Some(r) => r.wanted = (*w).clone(),
                None => {
                    let why = match w.source {
                        Source::Config => "room added to the config",
                        Source::Api => "room started through the API",
                        Source::Discovered => "room found on Janus",
                    };
                    let claim = claim_of(&w.config.room).flatten();
                    tracing::info!(room = %w.config.room, revision = claim.as_ref().map(|c| c.revision), "{why}; recording it");
                    self.start_after((*w).clone(), claim, Duration::ZERO);
                }
            }
        }
    }

    /// Stops every room and waits (boundedly) for their files to be finalized. After a lost
    /// connection the watchers stop on their own, and their files say `connection-lost`.
    pub(super) async fn stop_all(mut self, cancel: bool) {
        if cancel {
            for r in self.running.values() {
                r.stop.cancel();
            }
        }
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::error!("some recordings did not finish in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Rooms started with `watch`, and the service's stop token.
    fn rooms_with(watch: Watch) -> (Rooms, CancellationToken) {
        let shutdown = CancellationToken::new();
        let rooms = Rooms::with_watch(
            watch,
            Arc::new(Health::default()),
            shutdown.clone(),
            ROOM_RESTART,
        );
        (rooms, shutdown)
    }

    fn wanted(room: u64, source: Source) -> Wanted {
        Wanted {
            config: RoomConfig::recorded(RoomId::from(room)),
            source,
            until: None,
        }
    }

    /// A room watcher that panics is named in the log and STATUS and started again; a change
    /// that keeps the room then sees it running.
    #[tokio::test]
    async fn a_crashed_room_watcher_is_restarted() {
        let started = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let (s, r) = (started.clone(), running.clone());
        let watch: Watch = Box::new(move |_room, _claim, stop| {
            let n = s.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            Box::pin(async move {
                assert!(n > 0, "a bug in the first watcher");
                r.fetch_add(1, Ordering::SeqCst);
                stop.room.cancelled().await;
            })
        });
        let health = Arc::new(Health::default());
        let shutdown = CancellationToken::new();
        let mut rooms = Rooms::with_watch(
            watch,
            health.clone(),
            shutdown.clone(),
            Duration::from_millis(20),
        );
        let room = wanted(1234, Source::Config);
        rooms.apply(std::slice::from_ref(&room), None);
        tokio::time::timeout(Duration::from_secs(5), rooms.reap())
            .await
            .expect("the crash is reaped");
        assert!(
            health
                .status_line()
                .contains("room 1234: watcher crashed: a bug in the first watcher"),
            "{}",
            health.status_line()
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while running.load(Ordering::SeqCst) == 0 {
            assert!(tokio::time::Instant::now() < deadline, "not restarted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        rooms.apply(std::slice::from_ref(&room), None);
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "restarted once, kept on reload"
        );
        shutdown.cancel();
        rooms.stop_all(true).await;
    }

    /// In a fleet, a wanted room is watched only under a claim: fenced (no claims), it ends
    /// `handed-over`; claimed again (the same claim, the fence healed) it is watched again;
    /// a new claim is a new watch.
    #[tokio::test]
    async fn in_a_fleet_only_claimed_rooms_are_watched() {
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        let watch: Watch = Box::new(move |room, claim, stop| {
            let l = l.clone();
            let revision = claim.map_or(0, |c| c.revision);
            l.lock()
                .unwrap()
                .push(format!("start {} {revision}", room.room));
            Box::pin(async move {
                stop.room.cancelled().await;
                l.lock()
                    .unwrap()
                    .push(format!("end {} {}", room.room, stop.reason()));
            })
        });
        let (mut rooms, shutdown) = rooms_with(watch);
        let both = [wanted(1, Source::Config), wanted(2, Source::Config)];
        let claim = |revision| Arc::new(Claim::new("rec-a".into(), revision, None));
        let claims = |c: Option<Arc<Claim>>| -> Claims {
            c.into_iter().map(|c| (RoomId::from(1), c)).collect()
        };
        let settle = || tokio::time::sleep(Duration::from_millis(30));
        rooms.apply(&both, Some(&claims(Some(claim(5)))));
        settle().await;
        rooms.apply(&both, Some(&claims(None)));
        settle().await;
        rooms.apply(&both, Some(&claims(Some(claim(5)))));
        settle().await;
        rooms.apply(&both, Some(&claims(Some(claim(5)))));
        rooms.apply(&both, Some(&claims(Some(claim(9)))));
        settle().await;
        assert_eq!(
            *log.lock().unwrap(),
            // (A new claim's watch is made as the old one is told to stop.)
            [
                "start 1 5",
                "end 1 handed-over",
                "start 1 5",
                "start 1 9",
                "end 1 handed-over"
            ]
        );
        assert_eq!(rooms.running.len(), 1, "room 2 is another instance's");
        shutdown.cancel();
        rooms.stop_all(true).await;
    }

    /// Each source's room, once no longer wanted, ends with its own reason: the API's
    /// `stopped`, a discovered room `destroyed`, the config's `reconfigured`; a room that
    /// moves from one source to another goes on.
    #[tokio::test]
    async fn rooms_stop_with_their_sources_reason() {
        let ended: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let e = ended.clone();
        let watch: Watch = Box::new(move |room, _claim, stop| {
            let e = e.clone();
            Box::pin(async move {
                stop.room.cancelled().await;
                e.lock()
                    .unwrap()
                    .push((room.room.to_string(), stop.reason().to_string()));
            })
        });
        let (mut rooms, shutdown) = rooms_with(watch);
        rooms.apply(
            &[
                wanted(1, Source::Config),
                wanted(2, Source::Api),
                wanted(3, Source::Discovered),
                wanted(4, Source::Api),
            ],
            None,
        );
        // Every watcher running (a watcher stopped before it began finalizes nothing).
        tokio::time::sleep(Duration::from_millis(50)).await;
        rooms.apply(&[wanted(4, Source::Config)], None);
        for _ in 0..3 {
            tokio::time::timeout(Duration::from_secs(5), rooms.reap())
                .await
                .unwrap();
        }
        let mut got = ended.lock().unwrap().clone();
        got.sort();
        assert_eq!(
            got,
            [
                ("1".into(), "reconfigured".into()),
                ("2".into(), "stopped".into()),
                ("3".into(), "destroyed".into())
            ]
        );
        assert_eq!(rooms.running.len(), 1, "room 4 goes on");
        shutdown.cancel();
        rooms.stop_all(true).await;
        assert!(
            ended
                .lock()
                .unwrap()
                .iter()
                .any(|(r, why)| r == "4" && why == "shutdown")
        );
    }
}
