//! Service glue: logging (journald or text), the config and its reload on SIGHUP, signals,
//! systemd notifications (`notify`, [`health`]), and the top-level loop that keeps a Janus
//! session up (connecting with backoff, reconnecting when it is lost) and runs one room
//! watcher per configured room (`Rooms`). Shutdown is one [`CancellationToken`] passed down;
//! each room has a child token so a reload can stop one room alone.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

mod notify;
mod rooms;

use crate::backoff::Backoff;
use crate::config::{Config, ConfigError, EXIT_CONFIG, NetworkConfig, OutputConfig, RoomsMode};
use crate::events::Events;
use crate::feed::FeedSettings;
use crate::fleet::{Fleet, Held, sleep_until_some};
use crate::health::Health;
use crate::janus::{Auth, Session, TlsTrust};
use crate::limits::FeedSlots;
use crate::publish::OwnFeeds;
use crate::registry::Registry;
use crate::rtc::MediaLoop;
use crate::storage::Uploads;
use notify::Notifier;
use rooms::Rooms;

/// Longest wait between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a session must last before the backoff starts again from 1 s. A Janus that
/// accepts a session and drops it at once is otherwise reconnected to in a tight loop.
pub const STABLE_SESSION: Duration = Duration::from_secs(30);
/// How long shutdown waits for feeds to finalize (systemd's default stop timeout is far
/// longer; we promise 5 s).
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_millis(4500);
/// How long shutdown waits for the last events to reach the webhooks (what does not stays
/// in the outbox for the next start).
const EVENTS_SETTLE: Duration = Duration::from_secs(1);
/// How long a crashed room watcher waits before it is started again (a watcher that panics at
/// once must not spin).
pub(crate) const ROOM_RESTART: Duration = Duration::from_secs(5);
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
        .on_thread_start(no_allocator_cache)
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
            let text = std::fs::read_to_string(config_path).unwrap_or_default();
            for w in crate::config::warnings(config_path, &text, &config) {
                eprintln!("warning: {w}");
            }
            let rooms = match config.janus.rooms {
                RoomsMode::All => "every room of Janus".to_owned(),
                RoomsMode::Listed => format!("{} rooms", config.rooms.len()),
            };
            let api = config
                .http_listen()
                .map(|l| format!(", API on {l}"))
                .unwrap_or_default();
            let storage = config
                .storage
                .as_ref()
                .map(|s| format!(", uploads to bucket {}", s.bucket))
                .unwrap_or_default();
            let fleet = config
                .cluster
                .as_ref()
                .map(|c| format!(", instance {} of a fleet", c.instance))
                .unwrap_or_default();
            println!(
                "{}: OK ({rooms}, recordings in {}{api}{storage}{fleet})",
                config_path.display(),
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
        match MediaLoop::start_with(&plan, network.port, network.candidate_networks.clone()) {
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

/// `[janus] rtp_forward`'s receiver, bound; none without it.
fn forward_receiver(config: &Config) -> std::io::Result<Option<crate::forwarded::Forwards>> {
    config
        .janus
        .rtp_forward
        .as_ref()
        .map(crate::forwarded::Forwards::bind)
        .transpose()
}

/// Builds what every feed shares from the config.
fn feed_settings(
    config: &Config,
    media: &MediaLoop,
    forwards: Option<crate::forwarded::Forwards>,
    shared: &Shared,
    own: &OwnFeeds,
    slots: &FeedSlots,
    fleet: Option<&Fleet>,
) -> Arc<FeedSettings> {
    let health = &shared.health;
    apply_limits(config, slots);
    let settings = Arc::new(FeedSettings {
        out_dir: config.output.dir.clone(),
        media: media.clone(),
        health: health.clone(),
        own: own.clone(),
        split_after: config.output.split_after,
        slots: slots.clone(),
        events: shared.events.clone(),
        uploads: shared.uploads.clone(),
        server: config.janus.name.as_str().into(),
        fleet: fleet.map(|f| f.parts.clone()),
        feeds_per_subscription: config.janus.feeds_per_subscription.get(),
        forward: forwards.map(|forwards| crate::feed::forward::ForwardSettings {
            forwards,
            admin_key: config.janus.admin_key.clone(),
        }),
    });
    let advertised: Vec<String> = media.candidates().iter().map(|a| a.to_string()).collect();
    tracing::info!(
        url = %crate::janus::redacted(&config.janus.url),
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
            let reconnect = new.janus != config.janus
                || new.network != config.network
                || new.output != config.output;
            tracing::info!(
                rooms = new.rooms.len(),
                reconnect,
                "SIGHUP: config reloaded"
            );
            if new.http != config.http || new.metrics != config.metrics {
                tracing::warn!("SIGHUP: a change to [http] listen takes effect after a restart");
            }
            if new.cluster != config.cluster {
                tracing::warn!("SIGHUP: a change to [cluster] takes effect after a restart");
            }
            *config = new;
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

/// What the whole service shares, across sessions and reloads.
struct Shared {
    health: Arc<Health>,
    events: Events,
    /// Stops the webhooks' deliveries: after the service's last events are out, not at
    /// SIGTERM.
    events_stop: CancellationToken,
    registry: Registry,
    /// `[storage]`: the upload queue finished files are handed to.
    uploads: Uploads,
    /// The HTTP API's context, when it serves.
    api: Option<crate::http::Api>,
}

impl Shared {
    /// Takes a reloaded config: its rooms, tokens and webhooks.
    fn reconfigure(&self, config: &Config) {
        self.registry.set_config(config.rooms.clone());
        self.health
            .set_rooms_configured(self.registry.wanted().len());
        if let Some(api) = &self.api {
            api.reconfigure(config);
        }
        self.events.set_webhooks(config.webhooks.clone());
        self.uploads.configure(config.storage.clone());
    }
}

/// The runtime of the HTTP server and the webhook deliveries: a thread of its own, so that
/// neither ever takes time from the recording runtime.
fn side_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("janus-recorder-http")
        .enable_all()
        .build()
}

/// Starts the event bus (with its webhooks' outbox) and the HTTP server, as the config says.
fn start_shared(config: &Config, health: &Arc<Health>, side: &tokio::runtime::Handle) -> Shared {
    let state_dir = config.output.state_dir();
    let events_stop = CancellationToken::new();
    let events = match Events::start(
        &state_dir,
        config.webhooks.clone(),
        side,
        events_stop.clone(),
    ) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(dir = %state_dir.display(), error = %e, "cannot keep the events outbox; webhooks are off");
            health.error(format!("webhooks are off: {e}"));
            Events::disabled()
        }
    };
    let registry = Registry::open(config.rooms.clone(), Some(state_dir.join("api-rooms.json")));
    let uploads = match Uploads::start(
        &state_dir,
        config.storage.clone(),
        events.clone(),
        health.clone(),
        side,
        events_stop.clone(),
    ) {
        Ok(u) => u,
        Err(e) => {
            tracing::error!(dir = %state_dir.display(), error = %e, "cannot keep the upload queue; uploads are off");
            health.error(format!("uploads are off: {e}"));
            Uploads::disabled()
        }
    };
    let mut shared = Shared {
        health: health.clone(),
        events,
        events_stop,
        registry,
        uploads,
        api: None,
    };
    let Some(listen) = config.http_listen() else {
        return shared;
    };
    let metrics = match crate::metrics::install() {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::error!(error = %e, "metrics are off");
            None
        }
    };
    let api = crate::http::Api {
        access: Arc::new(std::sync::RwLock::new(crate::http::Access::from_config(
            config,
        ))),
        registry: shared.registry.clone(),
        health: health.clone(),
        index: Arc::new({
            let uploads = shared.uploads.clone();
            crate::recordings::Index::new(config.output.dir.clone())
                .with_uploads(Arc::new(move |p| uploads.is_uploaded(p)))
        }),
        uploads: shared.uploads.clone(),
        events: shared.events.clone(),
        metrics,
    };
    match crate::http::start(listen, api.clone(), side) {
        Ok(()) => {
            tracing::info!(%listen, "serving the HTTP API and metrics");
            shared.api = Some(api);
        }
        Err(e) => {
            tracing::error!(error = %e, "the HTTP API and metrics are off");
            health.error(e.to_string());
        }
    }
    shared
}

/// Stops the API's rooms whose `until` has come (checked every second).
async fn expire_api_rooms(registry: Registry, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if registry
            .next_expiry(std::time::SystemTime::now())
            .is_some_and(|d| d.is_zero())
        {
            let r = registry.clone();
            if let Ok(gone) =
                tokio::task::spawn_blocking(move || r.expire(std::time::SystemTime::now())).await
            {
                for room in gone {
                    tracing::info!(%room, "the API's `until` for the room has come; stopping it");
                }
            }
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
    let side = match side_runtime() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the HTTP runtime");
            return;
        }
    };
    let shared = start_shared(&config, &health, side.handle());
    let registry = shared.registry.clone();
    health.set_rooms_configured(registry.wanted().len());
    let mut wanted_changed = registry.changed();
    // Kept across reconnects and reloads: relays of an old session may still be leaving.
    let own = OwnFeeds::default();
    let slots = FeedSlots::new(config.max_feeds());
    // `[cluster]`: the rooms are shared with the other instances; a room is watched only
    // while this one holds its claim. (A change to `[cluster]` takes a restart.)
    let fleet = config.cluster.clone().map(|cluster| {
        tracing::info!(instance = %cluster.instance, endpoints = ?cluster.endpoints, ttl = ?cluster.lease_ttl, "in a fleet: sharing the rooms through etcd");
        Fleet::start(
            cluster,
            &config.janus.name,
            registry.clone(),
            slots.clone(),
            shutdown.clone(),
        )
    });
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
    let sweeper = tokio::spawn(retention(
        output_rx,
        shared.uploads.clone(),
        shutdown.clone(),
    ));
    let expiry = tokio::spawn(expire_api_rooms(registry.clone(), shutdown.clone()));
    let mut lost_a_session = false;
    tracing::info!("janus-recorder starting");
    let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF);
    let mut first_attempt = true;
    let mut retry_in = None;
    while !shutdown.is_cancelled() {
        if let Some(pause) = retry_in.take() {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = hangup.recv() => {
                    if !matches!(on_hangup(config_path, &mut config, &notifier, &health), Reloaded::Refused) {
                        shared.reconfigure(&config);
                        settings = None;
                        follow_output(&output_tx, &config.output);
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
        let current = match settings.clone() {
            Some(s) => s,
            None => match media_loop(&config.network, media.take())
                .await
                .and_then(|m| {
                    let forwards = forward_receiver(&config)?;
                    Ok((m, forwards))
                }) {
                Ok((m, forwards)) => {
                    let s = feed_settings(
                        &config,
                        &m.media,
                        forwards,
                        &shared,
                        &own,
                        &slots,
                        fleet.as_ref(),
                    );
                    media = Some(m);
                    settings = Some(s.clone());
                    s
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    tracing::error!(error = %e, "cannot open the media sockets ([network], [janus] rtp_forward); retrying in {wait:?}");
                    health.error(format!("cannot open the media sockets: {e}"));
                    retry_in = Some(wait);
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
                let wait = backoff.next_wait();
                tracing::warn!(error = %e, "Janus unreachable; retrying in {wait:?}");
                health.error(format!("Janus unreachable: {e}"));
                retry_in = Some(wait);
                continue;
            }
        };
        let opened = tokio::time::Instant::now();
        tracing::info!(session = %session.id(), "connected to Janus");
        if let Some(f) = &fleet {
            f.janus_up(true);
        }
        if std::mem::take(&mut lost_a_session) {
            crate::metrics::reconnect();
        }
        let session_stop = shutdown.child_token();
        let discovery = (config.janus.rooms == RoomsMode::All).then(|| {
            tokio::spawn(crate::discovery::run(
                session.clone(),
                config.janus.clone(),
                registry.clone(),
                session_stop.clone(),
            ))
        });
        let mut rooms = Rooms::new(session.clone(), current, shutdown.clone());
        let mut held_changed = fleet.as_ref().map(|f| f.held.clone());
        // Applies the wanted rooms (in a fleet, those claimed and not fenced); returns when
        // the claims' fence comes, if they are valid now.
        let apply = |rooms: &mut Rooms| {
            let wanted = registry.wanted();
            health.set_rooms_configured(wanted.len());
            health.set_skipped(
                registry
                    .skipped()
                    .into_iter()
                    .map(|s| (s.room.to_string(), s.why))
                    .collect(),
            );
            let now = tokio::time::Instant::now();
            let held = fleet.as_ref().map(|f| f.held.borrow().clone());
            if let Some(h) = &held {
                health.set_room_holders(h.holders.clone());
            }
            let claims = held
                .as_ref()
                .map(|h| h.valid_at(now).cloned().unwrap_or_default());
            rooms.apply(&wanted, claims.as_ref());
            held.and_then(|h| h.valid_until)
                .filter(|until| *until > now)
        };
        wanted_changed.mark_unchanged();
        let mut fence = apply(&mut rooms);
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
                        shared.reconfigure(&config);
                    }
                    Reloaded::Reconnect => {
                        shared.reconfigure(&config);
                        stale = true;
                        follow_output(&output_tx, &config.output);
                        break true;
                    }
                },
                Ok(()) = wanted_changed.changed() => fence = apply(&mut rooms),
                () = next_held(&mut held_changed) => fence = apply(&mut rooms),
                () = sleep_until_some(fence) => {
                    tracing::warn!("the etcd lease was not renewed in time: fenced, stopping this instance's rooms");
                    fence = apply(&mut rooms);
                }
                Some(()) = rooms.reap() => {}
            }
        };
        session_stop.cancel();
        if let Some(d) = discovery {
            let _ = d.await;
        }
        let lasted = opened.elapsed();
        rooms.stop_all(cancel).await;
        // The files are final: without Janus, the rooms are for the others to record.
        if let Some(f) = &fleet {
            f.janus_up(false);
        }
        if stale {
            settings = None;
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), session.destroy()).await;
        if cancel || lasted >= STABLE_SESSION {
            backoff.reset();
        } else {
            let wait = backoff.next_wait();
            tracing::warn!(
                ?lasted,
                "the session with Janus was short-lived; reconnecting in {wait:?}"
            );
            retry_in = Some(wait);
        }
    }
    // The files are final: the rooms are the others' now.
    if let Some(f) = fleet {
        f.release().await;
    }
    supervisor.abort();
    sweeper.abort();
    expiry.abort();
    shared.uploads.settle(EVENTS_SETTLE).await;
    shared.events.settle(EVENTS_SETTLE).await;
    shared.events_stop.cancel();
    side.shutdown_background();
    tracing::info!("stopped");
}

/// Waits for the fleet's claims to change; never, outside a fleet (or once its task ended).
async fn next_held(held: &mut Option<tokio::sync::watch::Receiver<Held>>) {
    if let Some(rx) = held
        && rx.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
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

/// `[output] keep_days` (never deleting what `[storage]` has not uploaded yet): sweeps the
/// output directory at start, every
/// [`crate::retention::SWEEP_EVERY`] and after a reload changed `[output]`, off the async
/// threads.
async fn retention(
    mut output: tokio::sync::watch::Receiver<OutputConfig>,
    uploads: Uploads,
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
        let uploads = uploads.clone();
        let sweep = tokio::task::spawn_blocking(move || {
            let now = std::time::SystemTime::now();
            let deleted =
                crate::retention::sweep(&current.dir, keep, now, &|p| uploads.may_delete(p));
            uploads.forget(&deleted);
            deleted
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

/// Runs on each blocking thread of the runtime (the one thread running the tasks is the
/// caller's, not started by it). Those threads write the files (`feed::disk`) and free the
/// frames they wrote: with jemalloc's per-thread cache each kept a cache of freed frame
/// buffers, 0.4 MiB per feed at 50 feeds (`scripts/bench.sh`: 0.85 MiB peak RSS per feed,
/// 0.44 with the cache off). Off, their frees go straight back to the arena.
fn no_allocator_cache() {
    // SAFETY: `thread.tcache.enabled` is a boolean mallctl that applies to the calling
    // thread only; the name is NUL-terminated and the value is the bool it takes. Where
    // jemalloc is not the allocator (the tests), it sets jemalloc's own unused state.
    let _ = unsafe { tikv_jemalloc_ctl::raw::write(b"thread.tcache.enabled\0", false) };
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
