//! `[cluster]`: a fleet of recorders sharing the same rooms through etcd.
//!
//! Each instance holds one lease (TTL `lease_ttl`, renewed every third of it) and publishes
//! its load under `PREFIX/instances/NAME` with it. A room is recorded by the instance that
//! holds `PREFIX/rooms/SERVER/ROOM`: it is claimed with a transaction that creates the key
//! only if it does not exist (`create_revision == 0`), attached to the lease, so the key goes
//! when the lease does (a SIGKILL, a machine lost, an instance cut off from etcd) and every
//! instance watching the keys sees the room free. The key's creation revision is the claim's
//! fencing token. The instance with the least load claims a free room first ([`board`]).
//!
//! Fencing: the service records a held room only until two thirds of the TTL after the last
//! renewal etcd confirmed (counted from when the renewal was sent), so an instance cut off
//! from etcd has stopped before its lease can expire and another instance take the room.
//!
//! The room key's value names the holder and the last part of each feed it records: the
//! instance that takes a room over links each feed's first new part to it (`previous_part`).
//! On SIGTERM the service finalizes its files and then [`Fleet::release`] revokes the lease,
//! which frees every room at once.

mod board;
mod config;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use board::{Board, Claim, FeedPart, Holding, Load};
pub use config::{ClusterConfig, DEFAULT_LEASE_TTL};

use crate::feed::LastPart;
use crate::ids::{FeedId, RoomId};
use crate::limits::FeedSlots;
use crate::registry::Registry;

/// The longest a single etcd request may take before the connection counts as lost.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a starting instance waits (at most a third of the TTL) before it claims its
/// first room, unless it has less load than every other: the instances of a fleet started
/// together see each other's loads first, instead of the first one up taking every room.
const JOIN_WINDOW: Duration = Duration::from_secs(1);
/// The wait before connecting again after the connection to etcd was lost.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// The rooms this instance may record now, as the service reads them.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// Each room held and its claim.
    pub rooms: HashMap<RoomId, Arc<Claim>>,
    /// Until when the rooms may be recorded without another renewal (the fence). `None`:
    /// no lease.
    pub valid_until: Option<Instant>,
    /// Every room's holder as this instance last saw it (status and API).
    pub holders: HashMap<RoomId, String>,
}

impl Held {
    /// The rooms that may be recorded at `now`: none once the fence has passed.
    pub fn valid_at(&self, now: Instant) -> Option<&HashMap<RoomId, Arc<Claim>>> {
        self.valid_until
            .is_some_and(|until| now < until)
            .then_some(&self.rooms)
    }
}

/// What the room watchers tell the fleet: each feed's last part, for a takeover to link to.
#[derive(Debug, Clone)]
pub struct Parts(mpsc::UnboundedSender<Command>);

impl Parts {
    /// `feed` of `room` goes on in `last` (a part just opened).
    pub fn opened(&self, room: &RoomId, feed: &FeedId, last: LastPart) {
        let _ = self.0.send(Command::Part {
            room: room.clone(),
            feed: feed.clone(),
            last: Some(last),
        });
    }

    /// `feed`'s publisher is gone: nothing to link to any more.
    pub fn ended(&self, room: &RoomId, feed: &FeedId) {
        let _ = self.0.send(Command::Part {
            room: room.clone(),
            feed: feed.clone(),
            last: None,
        });
    }
}

#[derive(Debug)]
enum Command {
    Part {
        room: RoomId,
        feed: FeedId,
        last: Option<LastPart>,
    },
    /// Revoke the lease (every room freed at once), then answer.
    Release(oneshot::Sender<()>),
}

/// The service's side of the fleet task.
pub struct Fleet {
    pub held: watch::Receiver<Held>,
    pub parts: Parts,
    janus: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Fleet {
    /// Starts the fleet task: it connects to etcd, takes a lease and claims rooms of
    /// `registry`'s wanted ones on the Janus named `server`, while `slots` has room.
    /// `shutdown` stops it from claiming more; [`Fleet::release`] ends it.
    pub fn start(
        config: ClusterConfig,
        server: &str,
        registry: Registry,
        slots: FeedSlots,
        shutdown: CancellationToken,
    ) -> Fleet {
        let (held_tx, held) = watch::channel(Held::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let (janus, janus_up) = watch::channel(false);
        let keys = Keys::new(&config.prefix, server, &config.instance);
        let node = Node {
            board: Board::new(config.instance.as_str().into()),
            config,
            keys,
            held: held_tx,
            registry,
            slots,
            shutdown,
            lease: None,
            renewed_at: None,
            parts: HashMap::new(),
            published_load: None,
            claim_at: None,
            claim_due: false,
            janus_up,
            joined_at: None,
            tell_failure: true,
        };
        let task = tokio::spawn(node.run(rx));
        Fleet {
            held,
            parts: Parts(tx),
            janus,
            task,
        }
    }

    /// Whether this instance has a session with Janus: it claims rooms only while it has
    /// one, and lets its rooms go when it loses it (once their files are finalized), so
    /// that an instance that cannot reach Janus leaves them to those that can.
    pub fn janus_up(&self, up: bool) {
        self.janus
            .send_if_modified(|now| std::mem::replace(now, up) != up);
    }

    /// Frees every room this instance holds at once (revokes its lease), so that others
    /// take them without waiting for the TTL: after the recordings are finalized.
    pub async fn release(self) {
        let (tx, rx) = oneshot::channel();
        let _ = self.parts.0.send(Command::Release(tx));
        if tokio::time::timeout(OP_TIMEOUT, rx).await.is_err() {
            tracing::warn!("could not revoke the etcd lease; the rooms free when it expires");
        }
        self.task.abort();
    }
}

/// The fleet's key names.
#[derive(Debug, Clone)]
struct Keys {
    rooms: String,
    instances: String,
    me: String,
}

impl Keys {
    fn new(prefix: &str, server: &str, instance: &str) -> Keys {
        Keys {
            rooms: format!("{prefix}/rooms/{server}/"),
            instances: format!("{prefix}/instances/"),
            me: format!("{prefix}/instances/{instance}"),
        }
    }

    /// A room's key: the room id as JSON (a number, or a quoted string id) after the prefix.
    fn room(&self, room: &RoomId) -> String {
        format!(
            "{}{}",
            self.rooms,
            serde_json::to_string(room).unwrap_or_default()
        )
    }

    fn room_of(&self, key: &[u8]) -> Option<RoomId> {
        let rest = key.strip_prefix(self.rooms.as_bytes())?;
        serde_json::from_slice(rest).ok()
    }

    fn instance_of<'k>(&self, key: &'k [u8]) -> Option<&'k str> {
        std::str::from_utf8(key.strip_prefix(self.instances.as_bytes())?).ok()
    }
}

/// Why a session with etcd ended.
enum Ended {
    Released,
    Lost(String),
}

/// The fleet task's state.
struct Node {
    config: ClusterConfig,
    keys: Keys,
    board: Board,
    held: watch::Sender<Held>,
    registry: Registry,
    slots: FeedSlots,
    shutdown: CancellationToken,
    lease: Option<i64>,
    /// When the last renewal etcd confirmed was sent.
    renewed_at: Option<Instant>,
    /// The last part of each feed of each held room.
    parts: HashMap<RoomId, Vec<FeedPart>>,
    /// The load last published (`Some(None)`: withdrawn).
    published_load: Option<Option<Load>>,
    /// When to try claiming a free room.
    claim_at: Option<Instant>,
    /// `claim_at` is this instance's turn (after the wait its load gave it).
    claim_due: bool,
    /// This instance has a session with Janus.
    janus_up: watch::Receiver<bool>,
    /// When this process got its first lease.
    joined_at: Option<Instant>,
    /// The next failure is to be told (at start, and once a session was up): the others
    /// are only logged at debug level while etcd stays unreachable.
    tell_failure: bool,
}

async fn timed<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(OP_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer in {OP_TIMEOUT:?}")),
    }
}

/// Watches every key under `prefix` from the revision after `revision` (what a read at
/// `revision` already gave).
async fn watch_after(
    c: &mut Client,
    what: &str,
    prefix: &str,
    revision: i64,
) -> Result<etcd_client::WatchStream, String> {
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    timed(what, c.watch(prefix, Some(options))).await
}

/// A watch's next answer, or why the watch is over.
fn watched(
    what: &str,
    answer: Result<Option<etcd_client::WatchResponse>, etcd_client::Error>,
) -> Result<etcd_client::WatchResponse, String> {
    match answer {
        Err(e) => Err(format!("watching {what}: {e}")),
        Ok(None) => Err(format!("the watch of {what} ended")),
        Ok(Some(w)) if w.canceled() => Err(format!(
            "the watch of {what} was cancelled: {}",
            w.cancel_reason()
        )),
        Ok(Some(w)) => Ok(w),
    }
}

impl Node {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut client: Option<Client> = None;
        loop {
            match self.session(&mut client, &mut commands).await {
                Ended::Released => return,
                // Said once per loss, not at every failed try to reconnect.
                Ended::Lost(why) if std::mem::take(&mut self.tell_failure) => {
                    tracing::warn!(%why, "no session with etcd; trying again (held rooms stop at the fence)");
                    if self.renewed_at.is_some() {
                        crate::metrics::fleet_reconnect();
                    }
                }
                Ended::Lost(why) => tracing::debug!(%why, "etcd still unreachable"),
            }
            self.publish_held();
            let pause = tokio::time::sleep(RECONNECT_AFTER);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    cmd = commands.recv() => match cmd {
                        Some(Command::Release(done)) => {
                            // Not connected: the lease expires on its own.
                            self.board.lost_all();
                            self.publish_held();
                            let _ = done.send(());
                            return;
                        }
                        Some(part) => self.remember(part),
                        None => return,
                    },
                }
            }
        }
    }

    /// Connects (if need be), takes or keeps the lease, reads and watches the keys, and
    /// serves until released or the connection is lost.
    async fn session(
        &mut self,
        client: &mut Option<Client>,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        let mut c = match client {
            Some(c) => c.clone(),
            None => match self.connect().await {
                Ok(c) => {
                    *client = Some(c.clone());
                    c
                }
                Err(e) => return Ended::Lost(e),
            },
        };
        match self.serve(&mut c, commands).await {
            Ok(()) => Ended::Released,
            Err(e) => Ended::Lost(e),
        }
    }

    async fn connect(&self) -> Result<Client, String> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(OP_TIMEOUT)
            .with_keep_alive(Duration::from_secs(1), OP_TIMEOUT)
            .with_keep_alive_while_idle(true);
        if let (Some(user), Some(password)) = (&self.config.user, &self.config.password) {
            options = options.with_user(user.clone(), password.expose());
        }
        if let Some(ca) = &self.config.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            options =
                options.with_tls(TlsOptions::new().ca_certificate(Certificate::from_pem(pem)));
        }
        timed(
            "connecting",
            Client::connect(self.config.endpoints.clone(), Some(options)),
        )
        .await
    }

    async fn serve(
        &mut self,
        c: &mut Client,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Result<(), String> {
        let ttl = self.config.lease_ttl.as_secs() as i64;
        // The lease: the one held before the connection was lost, if it is still alive
        // (its rooms are still ours), else a new one.
        let mut sent = VecDeque::new();
        if self
            .renewed_at
            .is_some_and(|at| at.elapsed() >= self.config.lease_ttl)
        {
            tracing::warn!("the lease has expired meanwhile; its rooms are lost");
            self.lose_lease();
        }
        let (mut keeper, mut renewals) = match self.lease {
            Some(id) => {
                let at = Instant::now();
                let (mut keeper, mut renewals) =
                    timed("keeping the lease", c.lease_keep_alive(id)).await?;
                timed("renewing the lease", keeper.keep_alive()).await?;
                let alive = timed("renewing the lease", renewals.message())
                    .await?
                    .is_some_and(|r| r.ttl() > 0);
                if alive {
                    tracing::info!(lease = id, "etcd again; the lease is alive");
                    self.renewed_at = Some(at);
                    (keeper, renewals)
                } else {
                    tracing::warn!(
                        lease = id,
                        "the lease expired meanwhile; its rooms are lost"
                    );
                    self.lose_lease();
                    self.grant(c, ttl).await?
                }
            }
            None => self.grant(c, ttl).await?,
        };
        let lease = self.lease.unwrap_or_default();
        // What is held now, then every change after it.
        let rooms = timed(
            "reading the rooms",
            c.get(
                self.keys.rooms.clone(),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await?;
        let revision = rooms.header().map_or(0, |h| h.revision());
        let snapshot = rooms
            .kvs()
            .iter()
            .filter_map(|kv| {
                let room = self.keys.room_of(kv.key())?;
                let holding = serde_json::from_slice(kv.value()).ok()?;
                Some((room, holding, kv.create_revision()))
            })
            .collect();
        for room in self.board.on_snapshot(snapshot) {
            tracing::warn!(%room, "the room's key is no longer ours");
            self.parts.remove(&room);
        }
        let loads = timed(
            "reading the loads",
            c.get(
                self.keys.instances.clone(),
                Some(GetOptions::new().with_prefix()),
            ),
        )
        .await?;
        for kv in loads.kvs() {
            if let (Some(name), Ok(load)) = (
                self.keys.instance_of(kv.key()),
                serde_json::from_slice(kv.value()),
            ) {
                self.board.on_load(name.to_owned(), load);
            }
        }
        let loads_revision = loads.header().map_or(0, |h| h.revision());
        let mut room_watch =
            watch_after(c, "watching the rooms", &self.keys.rooms, revision).await?;
        let mut load_watch = watch_after(
            c,
            "watching the loads",
            &self.keys.instances,
            loads_revision,
        )
        .await?;
        self.published_load = None;
        self.publish_load(c).await?;
        self.publish_held();
        self.claim_at = Some(Instant::now());
        self.tell_failure = true;
        let mut wanted = self.registry.changed();
        let mut renew = tokio::time::interval(self.config.renew_every());
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = renew.tick() => {
                    sent.push_back(Instant::now());
                    timed("renewing the lease", keeper.keep_alive()).await?;
                    self.publish_load(c).await?;
                }
                answer = renewals.message() => {
                    let answer = answer.map_err(|e| format!("renewing the lease: {e}"))?;
                    let Some(answer) = answer else {
                        return Err("the lease's stream ended".into());
                    };
                    let at = sent.pop_front();
                    if answer.ttl() <= 0 {
                        self.lose_lease();
                        return Err(format!("lease {lease} expired"));
                    }
                    if let Some(at) = at {
                        self.renewed_at = Some(at);
                        self.publish_held();
                    }
                }
                event = room_watch.message() => {
                    let event = watched("the rooms", event)?;
                    self.on_room_events(event.events());
                }
                event = load_watch.message() => {
                    let event = watched("the loads", event)?;
                    for e in event.events() {
                        let Some(kv) = e.kv() else { continue };
                        let Some(name) = self.keys.instance_of(kv.key()) else { continue };
                        match e.event_type() {
                            EventType::Put => {
                                if let Ok(load) = serde_json::from_slice(kv.value()) {
                                    self.board.on_load(name.to_owned(), load);
                                }
                            }
                            EventType::Delete => self.board.on_load_gone(name),
                        }
                    }
                }
                Ok(()) = wanted.changed() => {
                    self.release_unwanted(c).await?;
                    self.claim_at.get_or_insert_with(Instant::now);
                }
                Ok(()) = self.janus_up.changed() => {
                    self.release_unwanted(c).await?;
                    self.claim_at.get_or_insert_with(Instant::now);
                }
                _ = sleep_until_some(self.claim_at) => {
                    self.claim_at = None;
                    self.claim_one(c, lease).await?;
                }
                cmd = commands.recv() => match cmd {
                    Some(Command::Part { room, feed, last }) => {
                        self.remember(Command::Part { room: room.clone(), feed, last });
                        self.write_parts(c, lease, &room).await?;
                    }
                    Some(Command::Release(done)) => {
                        let held = self.board.held().len();
                        let revoked = timed("revoking the lease", c.lease_revoke(lease)).await;
                        match revoked {
                            Ok(_) => tracing::info!(rooms = held, "lease revoked: the rooms are free for the others"),
                            Err(e) => tracing::warn!(error = %e, "the rooms free when the lease expires"),
                        }
                        self.board.lost_all();
                        self.publish_held();
                        let _ = done.send(());
                        return Ok(());
                    }
                    None => return Ok(()),
                },
            }
        }
    }

    async fn grant(
        &mut self,
        c: &mut Client,
        ttl: i64,
    ) -> Result<(etcd_client::LeaseKeeper, etcd_client::LeaseKeepAliveStream), String> {
        let at = Instant::now();
        let granted = timed("granting a lease", c.lease_grant(ttl, None)).await?;
        let id = granted.id();
        tracing::info!(lease = id, ttl, instance = %self.config.instance, "etcd lease granted");
        self.lease = Some(id);
        self.renewed_at = Some(at);
        self.joined_at.get_or_insert(at);
        timed("keeping the lease", c.lease_keep_alive(id)).await
    }

    fn lose_lease(&mut self) {
        self.lease = None;
        self.renewed_at = None;
        self.board.lost_all();
        self.parts.clear();
        self.publish_held();
    }

    /// Takes in the changes to the room keys.
    fn on_room_events(&mut self, events: &[etcd_client::Event]) {
        let mut freed = false;
        for e in events {
            let Some(kv) = e.kv() else { continue };
            let Some(room) = self.keys.room_of(kv.key()) else {
                continue;
            };
            match e.event_type() {
                EventType::Put => {
                    if let Ok(h) = serde_json::from_slice(kv.value()) {
                        self.board.on_put(room, h);
                    }
                }
                EventType::Delete => {
                    if self.board.on_delete(&room) {
                        tracing::warn!(%room, "our key for the room is gone; stopping it");
                        self.parts.remove(&room);
                    }
                    freed = true;
                }
            }
        }
        self.publish_held();
        if freed {
            self.claim_at.get_or_insert_with(Instant::now);
        }
    }

    /// The rooms to hold: the wanted ones, none while this instance has no session with
    /// Janus.
    fn wanted(&self) -> Vec<RoomId> {
        if !*self.janus_up.borrow() {
            return Vec::new();
        }
        self.registry
            .wanted()
            .into_iter()
            .map(|w| w.config.room)
            .collect()
    }

    /// This instance's load; it takes rooms while it has Janus and is under `max_feeds`.
    fn load(&self) -> Load {
        Load {
            feeds: self.slots.used() as u64,
            rooms: self.board.held().len() as u64,
            taking: *self.janus_up.borrow() && !self.at_capacity(),
        }
    }

    /// At `max_feeds`, a room just claimed counting as one feed until its own are known (so
    /// that a burst of claims cannot pass the limit before the feeds start).
    fn at_capacity(&self) -> bool {
        let committed = self.slots.used().max(self.board.held().len());
        committed >= self.slots.max()
    }

    /// When the join window of this process ends.
    fn window_end(&self) -> Option<Instant> {
        self.joined_at
            .map(|at| at + self.config.renew_every().min(JOIN_WINDOW))
    }

    /// In the join window: not claiming yet, while the fleet's loads come in.
    fn joining(&self) -> bool {
        self.window_end().is_none_or(|end| Instant::now() < end)
    }

    fn fenced(&self) -> bool {
        self.renewed_at
            .is_none_or(|at| at.elapsed() >= self.config.fence_after())
    }

    /// Claims the first free wanted room if it is this instance's turn, and plans the next
    /// try.
    async fn claim_one(&mut self, c: &mut Client, lease: i64) -> Result<(), String> {
        if self.shutdown.is_cancelled() {
            return Ok(());
        }
        // Joining: wait for the fleet's loads, unless it clearly has its rooms already.
        if let Some(open) = self.window_end().filter(|_| self.joining())
            && !self.board.strictly_least(self.load())
        {
            self.claim_at = Some(open);
            return Ok(());
        }
        if self.fenced() {
            // Not while cut off: after the next renewal.
            self.claim_at = Some(Instant::now() + self.config.renew_every());
            return Ok(());
        }
        let free = self.board.free(&self.wanted());
        let Some(room) = free.first().cloned() else {
            return Ok(());
        };
        if self.at_capacity() {
            tracing::debug!("at max_feeds: leaving free rooms to the others");
            self.claim_at = Some(Instant::now() + board::MAX_CLAIM_DELAY);
            return Ok(());
        }
        if !std::mem::take(&mut self.claim_due) {
            let delay = self.board.claim_delay(self.load());
            if !delay.is_zero() {
                // Our turn comes after the less loaded instances'; one of them may claim
                // the room meanwhile.
                self.claim_due = true;
                self.claim_at = Some(Instant::now() + delay);
                return Ok(());
            }
        }
        let key = self.keys.room(&room);
        let value = serde_json::to_vec(&Holding {
            instance: self.config.instance.clone(),
            parts: Vec::new(),
        })
        .unwrap_or_default();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let done = timed("claiming a room", c.txn(txn)).await?;
        if done.succeeded() {
            let revision = done.header().map_or(0, |h| h.revision());
            let claim = self.board.claimed(room.clone(), revision);
            let after = claim.after.as_ref().map(|h| h.instance.clone());
            tracing::info!(%room, revision, after, "claimed the room");
            crate::metrics::fleet_claim(after.is_some());
            self.publish_held();
            self.publish_load(c).await?;
            self.claim_at = Some(Instant::now());
        } else {
            // Another instance was first: its key reaches us through the watch.
            self.claim_at = Some(Instant::now() + board::DELAY_PER_RANK);
        }
        Ok(())
    }

    /// Takes in a room watcher's news of a feed's last part (for a held room).
    fn remember(&mut self, cmd: Command) {
        let Command::Part { room, feed, last } = cmd else {
            return;
        };
        if !self.board.held().contains_key(&room) {
            return;
        }
        let parts = self.parts.entry(room).or_default();
        parts.retain(|p| p.feed != feed);
        if let Some(last) = last {
            parts.push(FeedPart {
                feed,
                file: last.file,
                part: last.part,
            });
        }
    }

    /// Writes a held room's key again with its feeds' last parts, only while the key is
    /// still this claim's (a key taken over meanwhile is left alone).
    async fn write_parts(
        &mut self,
        c: &mut Client,
        lease: i64,
        room: &RoomId,
    ) -> Result<(), String> {
        let Some(claim) = self.board.held().get(room).cloned() else {
            return Ok(());
        };
        let key = self.keys.room(room);
        let value = serde_json::to_vec(&Holding {
            instance: self.config.instance.clone(),
            parts: self.parts.get(room).cloned().unwrap_or_default(),
        })
        .unwrap_or_default();
        let txn = Txn::new()
            .when([Compare::create_revision(
                key.clone(),
                CompareOp::Equal,
                claim.revision,
            )])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        timed("writing a room's parts", c.txn(txn)).await?;
        Ok(())
    }

    /// Lets go of held rooms no longer wanted (the service stops recording them).
    async fn release_unwanted(&mut self, c: &mut Client) -> Result<(), String> {
        // An instance that stops taking rooms withdraws its load first: the others then
        // claim what it lets go without waiting for it.
        self.publish_load(c).await?;
        for room in self.board.unwanted(&self.wanted()) {
            let Some(claim) = self.board.held().get(&room).cloned() else {
                continue;
            };
            let key = self.keys.room(&room);
            let txn = Txn::new()
                .when([Compare::create_revision(
                    key.clone(),
                    CompareOp::Equal,
                    claim.revision,
                )])
                .and_then([TxnOp::delete(key, None)]);
            timed("releasing a room", c.txn(txn)).await?;
            tracing::info!(%room, "room no longer wanted here; its key released");
            self.board.released(&room);
            self.parts.remove(&room);
        }
        self.publish_held();
        self.publish_load(c).await
    }

    /// Publishes this instance's load (with its lease) when it changed; withdraws it once the
    /// instance is stopping, so that the others do not wait for it.
    async fn publish_load(&mut self, c: &mut Client) -> Result<(), String> {
        let load = (!self.shutdown.is_cancelled()).then(|| self.load());
        crate::metrics::fleet_rooms_held(&self.config.instance, self.board.held().len() as u64);
        if self.published_load == Some(load) {
            return Ok(());
        }
        let Some(lease) = self.lease else {
            return Ok(());
        };
        match load {
            Some(load) => {
                let value = serde_json::to_vec(&load).unwrap_or_default();
                let put = c.put(
                    self.keys.me.clone(),
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                );
                timed("publishing the load", put).await?;
            }
            None => {
                timed("withdrawing the load", c.delete(self.keys.me.clone(), None)).await?;
            }
        }
        self.published_load = Some(load);
        Ok(())
    }

    /// Tells the service what it may record, and until when.
    fn publish_held(&self) {
        let fence = self.config.fence_after();
        let held = Held {
            rooms: self.board.held().clone(),
            valid_until: self.renewed_at.map(|at| at + fence),
            holders: self
                .board
                .holders()
                .iter()
                .map(|(r, h)| (r.clone(), h.instance.clone()))
                .collect(),
        };
        self.held.send_replace(held);
    }
}

/// Sleeps until `at`; never, without it.
pub(crate) async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
