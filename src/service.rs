//! Service glue: logging (journald or text), the config and its reload on SIGHUP, signals,
//! systemd notifications (`notify`, [`health`]), and the top-level loop that keeps a Janus
//! session up (connecting with backoff, reconnecting when it is lost) and runs one room
//! watcher per configured room (`Rooms`). Shutdown is one [`CancellationToken`] passed down;
//! each room has a child token so a reload can stop one room alone.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

mod notify;

use crate::config::{Config, ConfigError, EXIT_CONFIG, NetworkConfig, OutputConfig, RoomConfig};
use crate::feed::FeedSettings;
use crate::health::Health;
use crate::ids::RoomId;
use crate::janus::{Auth, Session, TlsTrust};
use crate::limits::FeedSlots;
use crate::publish::OwnFeeds;
use crate::room;
use crate::rtc::MediaLoop;
use notify::Notifier;

/// Longest wait between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a session must last before the backoff starts again from 1 s. A Janus that
/// accepts a session and drops it at once is otherwise reconnected to in a tight loop.
pub const STABLE_SESSION: Duration = Duration::from_secs(30);
/// How long shutdown waits for feeds to finalize (systemd's default stop timeout is far
/// longer; we promise 5 s).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(4500);
/// How long a crashed room watcher waits before it is started again (a watcher that panics at
/// once must not spin).
const ROOM_RESTART: Duration = Duration::from_secs(5);
/// How often the systemd STATUS line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// Runs the recorder service until SIGTERM/SIGINT; returns the process exit status.
pub fn run(config_path: &Path) -> i32 {
    init_logging();
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    if let Err(e) = prepare_output_dir(config_path, &config) {
        eprintln!("{e}");
        return EXIT_CONFIG;
    }
    // One thread for the media loop and every feed task: the loop hands a feed its frames
    // as a push on the same thread's run queue, where with two workers they woke each other
    // thousands of times a second (measured with scripts/bench.sh). Finalizing files, the
    // one long piece of IO, runs on blocking threads (see `feed::run`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Finalizing comes in bursts (a meeting ends): its threads need not idle for
        // tokio's default 10 s afterwards.
        .thread_keep_alive(Duration::from_secs(2))
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(serve(config_path, config));
    0
}

/// `janus-recorder config check FILE`: the validation `run` does before it starts (the file
/// parses, every key is valid, secrets and CA files can be read, `output.dir` can be created
/// or written), without starting anything or creating the directory. Prints a one-line
/// summary and returns 0, or the error and [`EXIT_CONFIG`]. The unit runs it before every
/// reload, so a broken edit is refused with its reason in `systemctl status`.
pub fn check(config_path: &Path) -> i32 {
    let checked = Config::load(config_path).and_then(|config| {
        crate::output::check_writable_dir(&config.output.dir)
            .map_err(|e| output_dir_error(config_path, &config, "cannot write to", e))?;
        Ok(config)
    });
    match checked {
        Ok(config) => {
            println!(
                "{}: OK ({} rooms, recordings in {})",
                config_path.display(),
                config.rooms.len(),
                config.output.dir.display()
            );
            0
        }
        Err(e) => {
            eprintln!("{e}");
            EXIT_CONFIG
        }
    }
}

/// Creates `output.dir` if missing and makes sure files can be created in it (an instance
/// of the template unit pointed at another instance's directory is refused here, not at
/// its first recording).
fn prepare_output_dir(config_path: &Path, config: &Config) -> Result<(), ConfigError> {
    crate::output::create_private_dir(&config.output.dir)
        .map_err(|e| output_dir_error(config_path, config, "cannot create", e))?;
    crate::output::check_writable_dir(&config.output.dir)
        .map_err(|e| output_dir_error(config_path, config, "cannot write to", e))
}

/// The config error for an `output.dir` that cannot be used.
fn output_dir_error(
    config_path: &Path,
    config: &Config,
    what: &str,
    e: std::io::Error,
) -> ConfigError {
    ConfigError {
        file: config_path.to_owned(),
        key: Some("output.dir".into()),
        problem: format!("{what} {}: {e}", config.output.dir.display()),
    }
}

/// Logs to the journal, with the span fields as structured fields (ROOM, FEED, DISPLAY),
/// when systemd connected our output to it (JOURNAL_STREAM is set); else plain text on
/// stderr, coloured only on a terminal.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier("janus-recorder".into());
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(journal)
                    .try_init();
                return;
            }
            Err(e) => eprintln!("cannot log to the journal ({e}); logging to stderr"),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Cancels the returned token on SIGTERM or SIGINT, telling systemd we are stopping.
fn shutdown_on_signals(notifier: Notifier) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finalizing recordings"),
            _ = int.recv() => tracing::info!("SIGINT: finalizing recordings"),
        }
        notifier.stopping();
        t.cancel();
    });
    token
}

/// The running media loop and the `[network]` it was started with.
struct Media {
    network: NetworkConfig,
    media: MediaLoop,
}

/// The media loop for `network`: `current` if it was started with the same settings, else a
/// new one. A previous loop on the same port may still be closing its sockets (its last
/// sessions just ended), so a busy port is tried again for a short while.
async fn media_loop(network: &NetworkConfig, current: Option<Media>) -> std::io::Result<Media> {
    if let Some(m) = current {
        if m.network == *network {
            return Ok(m);
        }
        drop(m);
    }
    let plan = network.socket_plan();
    let mut tries = 0;
    loop {
        match MediaLoop::start(&plan, network.port) {
            Ok(media) => {
                return Ok(Media {
                    network: network.clone(),
                    media,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 40 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Builds what every feed shares from the config.
fn feed_settings(
    config: &Config,
    media: &MediaLoop,
    health: &Arc<Health>,
    own: &OwnFeeds,
    slots: &FeedSlots,
) -> Arc<FeedSettings> {
    apply_limits(config, slots);
    let settings = Arc::new(FeedSettings {
        out_dir: config.output.dir.clone(),
        media: media.clone(),
        health: health.clone(),
        own: own.clone(),
        split_after: config.output.split_after,
        slots: slots.clone(),
    });
    let advertised: Vec<String> = media.candidates().iter().map(|a| a.to_string()).collect();
    tracing::info!(
        url = %config.janus.url,
        rooms = config.rooms.len(),
        dir = %config.output.dir.display(),
        candidates = ?advertised,
        max_feeds = slots.max(),
        "settings"
    );
    crate::janus::tls::warn_if_credentials_in_clear(
        &config.janus.url,
        config.janus.api_secret.is_some() || config.janus.token.is_some(),
    );
    health.set_rooms_configured(config.rooms.len());
    settings
}

/// Sets the feed limit from the config; warns when the open-file limit cannot hold that many.
fn apply_limits(config: &Config, slots: &FeedSlots) {
    let max = config.max_feeds();
    slots.set_max(max);
    let needed = crate::limits::fds_needed(max.get());
    if let (Some(nofile), Some(_)) = (crate::limits::machine().0, config.limits.max_feeds)
        && needed > nofile
    {
        tracing::warn!(
            max_feeds = max.get(),
            needed,
            nofile,
            "max_feeds needs more open files than this process may have: raise LimitNOFILE \
             (ulimit -n)"
        );
    }
}

fn auth_of(config: &Config) -> Auth {
    Auth {
        api_secret: config.janus.api_secret.clone(),
        token: config.janus.token.clone(),
    }
}

/// Reads the config again for SIGHUP; a config that cannot be used is refused.
fn reload(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path)?;
    prepare_output_dir(path, &config)?;
    Ok(config)
}

/// What a SIGHUP asks of the running session.
enum Reloaded {
    /// The config could not be used; the old one stays.
    Refused,
    /// Only the rooms changed: applied in place.
    Rooms,
    /// The connection, network or output settings changed: reconnect with them.
    Reconnect,
}

/// Reloads the config on SIGHUP, telling systemd (RELOADING=1, then READY=1).
fn on_hangup(path: &Path, config: &mut Config, notifier: &Notifier, health: &Health) -> Reloaded {
    notifier.reloading();
    let verdict = match reload(path) {
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the new config is refused; keeping the running one");
            health.error(format!("reload refused: {e}"));
            Reloaded::Refused
        }
        Ok(new) => {
            if new.metrics != config.metrics {
                tracing::warn!("SIGHUP: a change to [metrics] takes effect after a restart");
            }
            let reconnect = new.janus != config.janus
                || new.network != config.network
                || new.output != config.output;
            tracing::info!(
                rooms = new.rooms.len(),
                reconnect,
                "SIGHUP: config reloaded"
            );
            *config = new;
            health.set_rooms_configured(config.rooms.len());
            if reconnect {
                Reloaded::Reconnect
            } else {
                Reloaded::Rooms
            }
        }
    };
    notifier.ready(&health.status_line());
    verdict
}

/// Starts watching one room: `room::watch` on a session, or anything else in a test.
type Watch = Box<dyn Fn(RoomConfig, room::RoomStop) -> BoxFuture<'static, ()> + Send>;

/// The room watchers of one Janus session, each with its own stop token so a reload can
/// stop or start one room without touching the others. A watcher that panics is logged and
/// started again after [`ROOM_RESTART`].
struct Rooms {
    watch: Watch,
    health: Arc<Health>,
    shutdown: CancellationToken,
    restart_after: Duration,
    tasks: JoinSet<()>,
    /// Which room each task watches, to name and restart one that crashed.
    task_room: HashMap<tokio::task::Id, RoomId>,
    running: HashMap<RoomId, (RoomConfig, CancellationToken)>,
}

impl Rooms {
    fn new(session: Session, settings: Arc<FeedSettings>, shutdown: CancellationToken) -> Rooms {
        let health = settings.health.clone();
        let watch: Watch = Box::new(move |room, stop| {
            Box::pin(room::watch(session.clone(), settings.clone(), room, stop))
        });
        Rooms::with_watch(watch, health, shutdown, ROOM_RESTART)
    }

    fn with_watch(
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

    fn start(&mut self, room: &RoomConfig) {
        self.start_after(room, Duration::ZERO);
    }

    /// Starts watching `room` after `delay` (unless it is stopped meanwhile).
    fn start_after(&mut self, room: &RoomConfig, delay: Duration) {
        let stop = self.shutdown.child_token();
        let span = tracing::info_span!("room", room = %room.room);
        let watcher = (self.watch)(
            room.clone(),
            room::RoomStop {
                service: self.shutdown.clone(),
                room: stop.clone(),
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
        self.running.insert(room.room.clone(), (room.clone(), stop));
    }

    /// Waits for a room task to end and deals with it: a panicked watcher is logged and
    /// started again. `None` when no task is left.
    async fn reap(&mut self) -> Option<()> {
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
        // Still wanted (not removed by a reload meanwhile): start it again.
        if let Some((config, stop)) = self.running.remove(&room)
            && !stop.is_cancelled()
        {
            self.start_after(&config, self.restart_after);
        }
        Some(())
    }

    /// Stops rooms no longer listed (or whose pin changed) and starts new ones; rooms that
    /// stay as they were keep recording into the same files.
    fn apply(&mut self, wanted: &[RoomConfig]) {
        self.running.retain(|id, (running, stop)| {
            let keep = wanted.iter().any(|w| w == running);
            if !keep {
                tracing::info!(room = %id, "room removed from the config; finalizing its recordings");
                stop.cancel();
            }
            keep
        });
        for room in wanted {
            if !self.running.contains_key(&room.room) {
                tracing::info!(room = %room.room, "room added to the config");
                self.start(room);
            }
        }
    }

    /// Stops every room and waits (boundedly) for their files to be finalized. After a lost
    /// connection the watchers stop on their own, and their files say `connection-lost`.
    async fn stop_all(mut self, cancel: bool) {
        if cancel {
            for (_, stop) in self.running.values() {
                stop.cancel();
            }
        }
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::error!("some recordings did not finish in time");
        }
    }
}

async fn serve(config_path: &Path, mut config: Config) {
    let notifier = Notifier::from_env();
    let shutdown = shutdown_on_signals(notifier.clone());
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot install the SIGHUP handler");
        return;
    };
    let health = Arc::new(Health::default());
    // Kept across reconnects and reloads: relays of an old session may still be leaving.
    let own = OwnFeeds::default();
    let slots = FeedSlots::new(config.max_feeds());
    // Built before each connection when missing: at start, and after a reload changed them
    // (then only once the old session's feeds have ended, so a fixed port is free again).
    let mut settings: Option<Arc<FeedSettings>> = None;
    let mut media: Option<Media> = None;
    let supervisor = tokio::spawn(supervise(
        notifier.clone(),
        health.clone(),
        shutdown.clone(),
    ));
    let (output_tx, output_rx) = tokio::sync::watch::channel(config.output.clone());
    let sweeper = tokio::spawn(retention(output_rx, shutdown.clone()));
    if let Some(listen) = config.metrics.listen {
        match crate::metrics::serve(listen) {
            Ok(()) => tracing::info!(%listen, "serving Prometheus metrics"),
            Err(e) => {
                tracing::error!(error = %e, "metrics are off");
                health.error(e.to_string());
            }
        }
    }
    let mut lost_a_session = false;
    tracing::info!("janus-recorder starting");
    let mut backoff = Duration::from_secs(1);
    let mut first_attempt = true;
    let mut retry_in = None;
    while !shutdown.is_cancelled() {
        if let Some(pause) = retry_in.take() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = hangup.recv() => {
                    if !matches!(on_hangup(config_path, &mut config, &notifier, &health), Reloaded::Refused) {
                        settings = None;
                        follow_output(&output_tx, &config.output);
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
        let current = match settings.clone() {
            Some(s) => s,
            None => match media_loop(&config.network, media.take()).await {
                Ok(m) => {
                    let s = feed_settings(&config, &m.media, &health, &own, &slots);
                    media = Some(m);
                    settings = Some(s.clone());
                    s
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the media sockets ([network]); retrying in {backoff:?}");
                    health.error(format!("cannot open the media sockets: {e}"));
                    retry_in = Some(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            },
        };
        let trust = TlsTrust::new(config.janus.ca_file.clone());
        let connected = tokio::select! {
            r = Session::connect(&config.janus.url, auth_of(&config), &trust) => r,
            _ = shutdown.cancelled() => break,
        };
        if std::mem::take(&mut first_attempt) {
            // Ready means: config loaded, output writable, Janus tried (reachable or not).
            notifier.ready(&health.status_line());
        }
        let session = match connected {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "Janus unreachable; retrying in {backoff:?}");
                health.error(format!("Janus unreachable: {e}"));
                retry_in = Some(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let opened = tokio::time::Instant::now();
        tracing::info!(session = %session.id(), "connected to Janus");
        if std::mem::take(&mut lost_a_session) {
            crate::metrics::reconnect();
        }
        let mut rooms = Rooms::new(session.clone(), current, shutdown.clone());
        rooms.apply(&config.rooms);
        let mut stale = false;
        let cancel = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break true,
                _ = session.closed() => {
                    tracing::warn!("lost the connection to Janus; finalizing and reconnecting");
                    health.error("lost the connection to Janus");
                    lost_a_session = true;
                    break false;
                }
                _ = hangup.recv() => match on_hangup(config_path, &mut config, &notifier, &health) {
                    Reloaded::Refused => {}
                    Reloaded::Rooms => {
                        apply_limits(&config, &slots);
                        rooms.apply(&config.rooms);
                    }
                    Reloaded::Reconnect => {
                        stale = true;
                        follow_output(&output_tx, &config.output);
                        break true;
                    }
                },
                Some(()) = rooms.reap() => {}
            }
        };
        let lasted = opened.elapsed();
        rooms.stop_all(cancel).await;
        if stale {
            settings = None;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), session.destroy()).await;
        if cancel || lasted >= STABLE_SESSION {
            backoff = Duration::from_secs(1);
        } else {
            tracing::warn!(
                ?lasted,
                "the session with Janus was short-lived; reconnecting in {backoff:?}"
            );
            retry_in = Some(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
    supervisor.abort();
    sweeper.abort();
    tracing::info!("stopped");
}

/// Hands a reloaded `[output]` to the retention task (which sweeps again at once if it
/// changed).
fn follow_output(tx: &tokio::sync::watch::Sender<OutputConfig>, output: &OutputConfig) {
    tx.send_if_modified(|current| {
        let changed = current != output;
        if changed {
            *current = output.clone();
        }
        changed
    });
}

/// `[output] keep_days`: sweeps the output directory at start, every
/// [`crate::retention::SWEEP_EVERY`] and after a reload changed `[output]`, off the async
/// threads.
async fn retention(
    mut output: tokio::sync::watch::Receiver<OutputConfig>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(crate::retention::SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Ok(()) = output.changed() => {}
            _ = shutdown.cancelled() => return,
        }
        let current = output.borrow_and_update().clone();
        let Some(days) = current.keep_days else {
            continue;
        };
        let keep = Duration::from_secs(u64::from(days.get()) * 86_400);
        let sweep = tokio::task::spawn_blocking(move || {
            crate::retention::sweep(&current.dir, keep, std::time::SystemTime::now())
        });
        match sweep.await {
            Ok(deleted) if !deleted.is_empty() => {
                tracing::info!(
                    files = deleted.len(),
                    days = days.get(),
                    "retention sweep done"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
    }
}

/// Keeps systemd informed: STATUS every few seconds, and WATCHDOG=1 only while every feed
/// loop is going round (a stuck feed lets the watchdog expire and systemd restart us).
async fn supervise(notifier: Notifier, health: Arc<Health>, shutdown: CancellationToken) {
    let watchdog = notifier.watchdog_interval();
    let period = watchdog.map_or(STATUS_EVERY, |w| (w / 2).min(STATUS_EVERY));
    let mut tick = tokio::time::interval(period);
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        notifier.status(&health.status_line());
        health.publish_metrics();
        if let Some(w) = watchdog {
            let stuck = health.stuck_loops(w / 2);
            if stuck == 0 {
                notifier.watchdog();
                withheld = false;
            } else if !withheld {
                tracing::error!(
                    stuck,
                    "feed loops are not going round; withholding the watchdog"
                );
                withheld = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A room watcher that panics is named in the log and STATUS and started again; a reload
    /// that keeps the room then sees it running.
    #[tokio::test]
    async fn a_crashed_room_watcher_is_restarted() {
        let started = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(AtomicUsize::new(0));
        let (s, r) = (started.clone(), running.clone());
        let watch: Watch = Box::new(move |_room, stop| {
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
        let room = RoomConfig {
            room: RoomId::from(1234),
            pin: None,
            record: true,
            relay: None,
        };
        rooms.apply(std::slice::from_ref(&room));
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
        rooms.apply(std::slice::from_ref(&room));
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "restarted once, kept on reload"
        );
        shutdown.cancel();
        rooms.stop_all(true).await;
    }
}
