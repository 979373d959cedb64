//! The TOML config file: parsing, validation, and errors that name the file, the key and the
//! problem. Unknown keys are errors, so a typo never silently changes behaviour.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ids::RoomId;
use crate::janus::tls::TlsError;
use crate::net::{SocketPlan, interface_addresses};
use crate::secret::Secret;

/// Exit status for a config that cannot be used (`run`, `config check`, `status`).
pub const EXIT_CONFIG: i32 = 2;

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub janus: JanusConfig,
    pub output: OutputConfig,
    #[serde(default)]
    pub network: NetworkConfig,
    /// The rooms to record. May be empty when `[janus] rooms = "all"` finds them, or when
    /// the HTTP API starts them.
    #[serde(default)]
    pub rooms: Vec<RoomConfig>,
    /// The old name of `[http] listen` (Prometheus metrics only, before the API); still read.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[http]`: the one HTTP server (metrics and the JSON API).
    pub http: Option<HttpConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[[webhooks]]`: where events are POSTed, signed (see [`crate::events`]).
    #[serde(default)]
    pub webhooks: Vec<crate::events::WebhookConfig>,
    /// `[storage]`: the bucket finished recordings are uploaded to (see [`crate::storage`]).
    pub storage: Option<crate::storage::StorageConfig>,
    /// `[cluster]`: share the rooms with other instances through etcd (see [`crate::fleet`]).
    pub cluster: Option<crate::fleet::ClusterConfig>,
}

/// Where the HTTP server listens when `[http]` is given without `listen`.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9469";

/// `[http]`: the daemon's HTTP server: `/metrics` and the JSON API under `/api/v1/`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to listen (default [`DEFAULT_HTTP_LISTEN`]).
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Who may call the API. Without tokens, it answers only on a loopback address (a
    /// non-loopback `listen` without tokens is refused).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// The key that signs the recordings page's share links (`janus-recorder share`): a
    /// secret of at least [`MIN_TOKEN_CHARS`] characters. Without it there are no share links.
    #[serde(default)]
    pub share_key: Option<Secret>,
}

fn default_http_listen() -> SocketAddr {
    DEFAULT_HTTP_LISTEN.parse().expect("a valid address")
}

/// One `[[http.tokens]]`: a bearer token and what it may do.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// A name for the logs (never the token itself).
    #[serde(default)]
    pub name: Option<String>,
    /// The token: a secret (`"..."`, `{ file = ".." }` or `{ env = ".." }`), at least
    /// [`MIN_TOKEN_CHARS`] characters.
    pub token: Secret,
    pub scope: Scope,
}

/// The shortest API token accepted: a guessable token is no protection.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a token may do. `control` includes `read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Look: rooms, recordings, files, events, metrics.
    Read,
    /// Also start and stop recording rooms.
    Control,
}

/// `[limits]`: how much the daemon takes on at once.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Feeds subscribed to at once, over all rooms; publishers past it are refused (logged,
    /// `feeds_refused_total`). Unset: sized to the machine, the smaller of (soft
    /// RLIMIT_NOFILE - 64) / open files per feed and total memory / 4 MiB (see
    /// [`crate::limits`]).
    pub max_feeds: Option<std::num::NonZeroUsize>,
}

impl Config {
    /// `[limits] max_feeds`, or the default for this machine.
    pub fn max_feeds(&self) -> std::num::NonZeroUsize {
        self.limits.max_feeds.unwrap_or_else(|| {
            let (nofile, memory) = crate::limits::machine();
            crate::limits::default_max_feeds(nofile.unwrap_or(1024), memory.unwrap_or(u64::MAX))
        })
    }
}

/// `[metrics]`: the optional Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where to serve the Prometheus text format, e.g. `127.0.0.1:9469`. Unset: no endpoint.
    pub listen: Option<SocketAddr>,
}

/// `[janus]`: how to reach the Janus WebSocket API.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JanusConfig {
    /// `ws://` or `wss://` (certificates are verified against the system's CA store and
    /// `ca_file`).
    pub url: String,
    /// Janus's `api_secret`, when the server sets one.
    pub api_secret: Option<Secret>,
    /// A stored-auth token, when the server has `token_auth` on.
    pub token: Option<Secret>,
    /// A PEM file of CA certificates trusted for `wss://` besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// The server's name in the API (`/api/v1/rooms/{server}/{room}`); default `default`.
    #[serde(default = "default_server_name")]
    pub name: String,
    /// Whether this Janus uses string room ids (`string_ids = true` in its VideoRoom
    /// config): the API then takes `/rooms/default/abc` and reads `1234` as a string too.
    #[serde(default)]
    pub string_ids: bool,
    /// `"all"`: record every room of this Janus, found by listing them (besides `[[rooms]]`,
    /// which still give pins and relays for their rooms). Default `"listed"`.
    #[serde(default)]
    pub rooms: RoomsMode,
    /// With `rooms = "all"`: only these rooms (empty: every room).
    #[serde(default)]
    pub include: Vec<RoomId>,
    /// With `rooms = "all"`: never these rooms.
    #[serde(default)]
    pub exclude: Vec<RoomId>,
    /// With `rooms = "all"`: only rooms whose description matches this regular expression.
    pub description: Option<String>,
    /// The VideoRoom's `admin_key`, so that `list` shows private rooms too.
    pub admin_key: Option<Secret>,
    /// With `rooms = "all"`: how often the rooms are listed (default 2 s).
    #[serde(
        default = "default_discover_every",
        deserialize_with = "any_human_duration"
    )]
    pub discover_every: std::time::Duration,
    /// How many feeds of a room share one subscription (one Janus handle and PeerConnection,
    /// renegotiated as publishers come and go); default 16. 1: a subscription per feed.
    #[serde(default = "default_feeds_per_subscription")]
    pub feeds_per_subscription: std::num::NonZeroUsize,
    /// Record from the VideoRoom's RTP forwarders instead of subscribing (plain RTP to one
    /// socket of ours; see [`RtpForwardConfig`]). Unset: WebRTC subscriptions.
    pub rtp_forward: Option<RtpForwardConfig>,
}

/// `[janus] rtp_forward = { listen = "127.0.0.1:0" }`: Janus sends each recorded stream as
/// plain RTP (no ICE, DTLS or SRTP) to this socket, which costs Janus a fifth or less of what a
/// WebRTC subscription does, but gives no retransmission and no encryption: for a recorder
/// on Janus's own host or a private network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtpForwardConfig {
    /// The UDP address to receive on (port 0: any free port).
    pub listen: SocketAddr,
    /// The address Janus sends to, when it is not `listen`'s (which must then be given if
    /// `listen` is a wildcard address such as `0.0.0.0`).
    pub host: Option<String>,
}

impl RtpForwardConfig {
    /// The host Janus is told to send to.
    pub fn janus_host(&self) -> String {
        self.host
            .clone()
            .unwrap_or_else(|| self.listen.ip().to_string())
    }
}

fn default_feeds_per_subscription() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(16).expect("16 is not zero")
}

fn default_server_name() -> String {
    "default".into()
}

fn default_discover_every() -> std::time::Duration {
    std::time::Duration::from_secs(2)
}

/// Which rooms of the Janus are recorded: the listed ones, or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomsMode {
    /// Only `[[rooms]]` (and rooms started through the API).
    #[default]
    Listed,
    /// Every room the VideoRoom lists.
    All,
}

/// `[output]`: where recordings go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub dir: PathBuf,
    /// Start a new file (on the next video keyframe) once a recording is this long, e.g.
    /// `"4h"` or `"90m"`. Unset: one file per publication, however long.
    #[serde(default, deserialize_with = "human_duration")]
    pub split_after: Option<std::time::Duration>,
    /// Delete finished recordings (and their sidecars) this many days after they were last
    /// written (see [`crate::retention`]). Unset: keep everything.
    #[serde(default, deserialize_with = "whole_days")]
    pub keep_days: Option<std::num::NonZeroU32>,
    /// Where the daemon keeps its own state (rooms started through the API, the events
    /// outbox). Default: `<dir>/.state` (room directories never start with a dot).
    pub state_dir: Option<PathBuf>,
}

impl OutputConfig {
    /// `state_dir`, or its default.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| self.dir.join(".state"))
    }
}

/// `keep_days`: a whole number of days, at least 1.
fn whole_days<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::num::NonZeroU32>, D::Error> {
    use serde::de::Error;
    let value = toml::Value::deserialize(d)?;
    value
        .as_integer()
        .and_then(|days| u32::try_from(days).ok())
        .and_then(std::num::NonZeroU32::new)
        .map(Some)
        .ok_or_else(|| {
            D::Error::custom(format!(
                "must be a whole number of days, at least 1, not {value}"
            ))
        })
}

/// The shortest `split_after`: files shorter than a few keyframe intervals are no use.
pub const MIN_SPLIT_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// A `split_after` written for people (`"4h"`, `"90m"`, `"1h 30m"`, `"45s"`).
fn human_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d)?;
    parse_split_after(&text).map(Some).map_err(D::Error::custom)
}

/// Parses a `split_after` (at least [`MIN_SPLIT_AFTER`]); the error says why not.
pub fn parse_split_after(text: &str) -> Result<std::time::Duration, String> {
    let value = parse_duration(text)?;
    if value < MIN_SPLIT_AFTER {
        return Err(format!(
            "{text:?} is shorter than {}",
            humantime::format_duration(MIN_SPLIT_AFTER)
        ));
    }
    Ok(value)
}

/// Parses a duration written for people; the error says what was expected.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like \"4h\": {e}"))
}

/// Any positive duration written for people.
fn any_human_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::time::Duration, D::Error> {
    use serde::de::Error;
    let text = String::deserialize(d)?;
    match parse_duration(&text) {
        Ok(v) if v.is_zero() => Err(D::Error::custom(format!("{text:?} must not be zero"))),
        Ok(v) => Ok(v),
        Err(e) => Err(D::Error::custom(e)),
    }
}

/// `[network]`: the ICE side of the subscriber sessions.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Address the UDP sockets bind to. Unset or unspecified (`0.0.0.0`): one socket per
    /// advertised address, bound to that address.
    pub bind: Option<IpAddr>,
    /// Addresses offered to Janus as host candidates. Default: `bind` when it is a specific
    /// address, else every non-loopback interface address (the way Janus picks its own).
    #[serde(default)]
    pub advertise: Vec<IpAddr>,
    /// The UDP port every feed's media comes in on (one socket per advertised address, all
    /// sessions share it: the one port a firewall must open). 0 (default): a free port
    /// chosen at start, logged as the candidates.
    #[serde(default)]
    pub port: u16,
    /// The only networks Janus's ICE candidates may be in (`["10.0.0.0/8"]`); others are
    /// ignored, so no STUN goes to a host and port Janus names outside them. Empty
    /// (default): any, as long as Janus is trusted.
    #[serde(default)]
    pub candidate_networks: Vec<ipnet::IpNet>,
}

/// One `[[rooms]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomConfig {
    /// Numeric (`1234`) or string (`"hearing-7"`, for Janus's `string_ids`) room id.
    pub room: RoomId,
    /// The room's PIN, if it has one.
    pub pin: Option<Secret>,
    /// The room's `secret`, if it has one: only `[janus] rtp_forward` needs it (Janus asks
    /// for it to start a forwarder).
    pub secret: Option<Secret>,
    /// Record the room's feeds into files (default true; false for a relay-only room).
    #[serde(default = "yes")]
    pub record: bool,
    /// Also publish every feed of this room into another room (`relay = { room = 5678 }`).
    pub relay: Option<RelayConfig>,
    /// This room's own `split_after` (default: `[output] split_after`).
    #[serde(default, deserialize_with = "human_duration")]
    pub split_after: Option<std::time::Duration>,
}

impl RoomConfig {
    /// A recorded room with nothing else set.
    pub fn recorded(room: RoomId) -> RoomConfig {
        RoomConfig {
            room,
            pin: None,
            secret: None,
            record: true,
            relay: None,
            split_after: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// `relay = { ... }` of a room: where its feeds are published again, RTP forwarded without
/// re-encoding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// The target room.
    pub room: RoomId,
    /// Another Janus server (`ws://` or `wss://`); default: the same one as `[janus]`.
    pub url: Option<String>,
    /// The other server's `api_secret` and `token` (only with `url`).
    pub api_secret: Option<Secret>,
    pub token: Option<Secret>,
    /// The other server's private CA for `wss://` (only with `url`), as `[janus] ca_file`.
    pub ca_file: Option<PathBuf>,
    /// The target room's PIN.
    pub pin: Option<Secret>,
    /// Added to each relayed publisher's display name, e.g. `" (relayed)"`.
    #[serde(default)]
    pub display_suffix: String,
}

impl RelayConfig {
    /// A relay given without credentials (by the API, or kept in the state directory): to
    /// the same Janus, or to another one that needs none.
    pub fn without_credentials(
        room: RoomId,
        url: Option<String>,
        pin: Option<Secret>,
        display_suffix: String,
    ) -> RelayConfig {
        RelayConfig {
            room,
            url,
            api_secret: None,
            token: None,
            ca_file: None,
            pin,
            display_suffix,
        }
    }
}

/// A config that could not be used. Its `Display` names the file, the key and the problem.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted path of the offending key (`rooms[1].room`), when known.
    pub key: Option<String>,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config error in {}", self.file.display())?;
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: None,
            problem: format!("cannot read the file: {e}"),
        })?;
        let config = Config::parse(&text, path)?;
        refuse_inline_storage_keys(path, &text)?;
        Ok(config)
    }

    /// Parses and validates config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let err = |key: Option<String>, problem: String| ConfigError {
            file: path.to_owned(),
            key,
            problem,
        };
        let de = toml::Deserializer::parse(text).map_err(|e| err(None, one_line(e.message())))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = (key != ".").then_some(key);
            err(key, one_line(e.inner().message()))
        })?;
        config
            .validate()
            .map_err(|(key, problem)| err(Some(key), problem))?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (String, String)> {
        self.validate_keys().map_err(|(k, p)| (k.to_owned(), p))?;
        crate::events::validate_all(&self.webhooks)?;
        if let Some(storage) = &self.storage {
            storage
                .validate()
                .map_err(|(k, problem)| (format!("storage.{k}"), problem))?;
        }
        if let Some(cluster) = &self.cluster {
            cluster
                .validate()
                .map_err(|(k, problem)| (format!("cluster.{k}"), problem))?;
        }
        for (i, room) in self.rooms.iter().enumerate() {
            let key = |k: &str| format!("rooms[{i}].{k}");
            let Some(relay) = &room.relay else {
                if !room.record {
                    return Err((
                        key("record"),
                        format!("room {} is neither recorded nor relayed", room.room),
                    ));
                }
                continue;
            };
            match &relay.url {
                Some(url) if !(url.starts_with("ws://") || url.starts_with("wss://")) => {
                    return Err((
                        key("relay.url"),
                        format!(
                            "must start with ws:// or wss://, got {:?}",
                            crate::janus::redacted(url)
                        ),
                    ));
                }
                Some(url) => check_ca_file(url, relay.ca_file.as_deref())
                    .map_err(|e| (key("relay.ca_file"), e.to_string()))?,
                None if relay.room == room.room => {
                    return Err((
                        key("relay.room"),
                        format!("room {} would be relayed into itself", room.room),
                    ));
                }
                None if relay.api_secret.is_some()
                    || relay.token.is_some()
                    || relay.ca_file.is_some() =>
                {
                    return Err((
                        key("relay"),
                        "api_secret, token and ca_file are for another server: set relay.url too"
                            .into(),
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), (&'static str, String)> {
        let url = self.janus.url.as_str();
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err((
                "janus.url",
                format!(
                    "must start with ws:// or wss://, got {:?}",
                    crate::janus::redacted(url)
                ),
            ));
        }
        check_ca_file(url, self.janus.ca_file.as_deref())
            .map_err(|e| ("janus.ca_file", e.to_string()))?;
        if self.output.dir.as_os_str().is_empty() {
            return Err(("output.dir", "must not be empty".into()));
        }
        self.validate_janus_extras()?;
        self.validate_http()?;
        if self.rooms.is_empty() && self.janus.rooms == RoomsMode::Listed && self.http.is_none() {
            return Err((
                "rooms",
                "at least one [[rooms]] table is needed (or [janus] rooms = \"all\", or an \
                 [http] API to start rooms with)"
                    .into(),
            ));
        }
        for (i, room) in self.rooms.iter().enumerate() {
            if self.rooms[..i].iter().any(|r| r.room == room.room) {
                return Err(("rooms", format!("room {} is listed twice", room.room)));
            }
        }
        if let Some(ip) = self.network.advertise.iter().find(|ip| ip.is_unspecified()) {
            return Err((
                "network.advertise",
                format!("{ip} cannot be advertised to Janus"),
            ));
        }
        let specific_bind = self.network.bind.is_some_and(|ip| !ip.is_unspecified());
        if self.network.port != 0 && specific_bind && self.network.advertise.len() > 1 {
            return Err((
                "network.port",
                "with one bind address and a fixed port, advertise takes one address".into(),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// The HTTP server's address: `[http] listen`, or the older `[metrics] listen`.
    pub fn http_listen(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.listen).or(self.metrics.listen)
    }

    /// The API tokens (none without `[http]`).
    pub fn tokens(&self) -> &[TokenConfig] {
        self.http.as_ref().map_or(&[], |h| h.tokens.as_slice())
    }

    /// `[http] share_key`, the key of the page's share links.
    pub fn share_key(&self) -> Option<&Secret> {
        self.http.as_ref().and_then(|h| h.share_key.as_ref())
    }

    fn validate_janus_extras(&self) -> Result<(), (&'static str, String)> {
        let j = &self.janus;
        let name_ok = !j.name.is_empty()
            && j.name.len() <= 64
            && j.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !name_ok {
            return Err((
                "janus.name",
                format!("{:?} must be 1-64 letters, digits, '-', '_' or '.'", j.name),
            ));
        }
        if j.rooms == RoomsMode::Listed
            && (!j.include.is_empty() || !j.exclude.is_empty() || j.description.is_some())
        {
            return Err((
                "janus.rooms",
                "include, exclude and description choose among all rooms: set rooms = \"all\""
                    .into(),
            ));
        }
        if let Some(re) = &j.description {
            regex::Regex::new(re).map_err(|e| ("janus.description", one_line(&e.to_string())))?;
        }
        if let Some(f) = &j.rtp_forward {
            if f.listen.ip().is_unspecified() && f.host.is_none() {
                return Err((
                    "janus.rtp_forward.host",
                    format!(
                        "listen = \"{}\" is every address: set host to the one Janus sends to",
                        f.listen
                    ),
                ));
            }
            if f.host.as_deref().is_some_and(|h| {
                h.is_empty() || h.len() > 253 || h.chars().any(|c| c.is_whitespace() || c == '"')
            }) {
                return Err((
                    "janus.rtp_forward.host",
                    "must be a host name or address".into(),
                ));
            }
        }
        Ok(())
    }

    fn validate_http(&self) -> Result<(), (&'static str, String)> {
        if let (Some(h), Some(m)) = (&self.http, self.metrics.listen)
            && h.listen != m
        {
            return Err((
                "metrics.listen",
                "the HTTP server has one listener: remove [metrics] (it is [http] listen now)"
                    .into(),
            ));
        }
        let tokens = self.tokens();
        if let Some(t) = tokens
            .iter()
            .find(|t| t.token.expose().chars().count() < MIN_TOKEN_CHARS)
        {
            return Err((
                "http.tokens",
                format!(
                    "token {} is shorter than {MIN_TOKEN_CHARS} characters",
                    t.name.as_deref().unwrap_or("(unnamed)")
                ),
            ));
        }
        if self
            .share_key()
            .is_some_and(|k| k.expose().chars().count() < MIN_TOKEN_CHARS)
        {
            return Err((
                "http.share_key",
                format!("the share key is shorter than {MIN_TOKEN_CHARS} characters"),
            ));
        }
        // The older `[metrics] listen` may stay public without tokens: the API then answers
        // loopback peers only (see `crate::http`).
        if let Some(listen) = self.http.as_ref().map(|h| h.listen)
            && tokens.is_empty()
            && !listen.ip().is_loopback()
        {
            return Err((
                "http.listen",
                format!("{listen} is not a loopback address: the API needs [[http.tokens]] there"),
            ));
        }
        Ok(())
    }
}

/// The keys whose values are secrets (see [`Secret`]).
const SECRET_KEYS: [&str; 9] = [
    "api_secret",
    "token",
    "share_key",
    "pin",
    "secret",
    "admin_key",
    "tokens",
    "access_key_id",
    "secret_access_key",
];

/// What `config check` warns about in a config that is accepted: secrets written inline in
/// a file others may read, and the older `[metrics] listen` on a non-loopback address
/// without API tokens (the metrics, and who records what, open to the network).
pub fn warnings(path: &Path, text: &str, config: &Config) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let world_readable = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o004 != 0)
        .unwrap_or(false);
    if world_readable && let Ok(value) = text.parse::<toml::Table>() {
        let mut inline = Vec::new();
        find_inline_secrets(&toml::Value::Table(value), String::new(), &mut inline);
        if !inline.is_empty() {
            out.push(format!(
                "{} is readable by every user and holds secrets inline ({}): read them from a \
                 systemd credential, a file or the environment ({{ credential = \"NAME\" }} with \
                 LoadCredential=NAME:PATH in the unit, {{ file = \"...\" }}, {{ env = \"...\" }}), \
                 or make the file 0640",
                path.display(),
                inline.join(", ")
            ));
        }
    }
    if config.http.is_none()
        && config.tokens().is_empty()
        && let Some(listen) = config.metrics.listen
        && !listen.ip().is_loopback()
    {
        out.push(format!(
            "[metrics] listen = {listen} is not a loopback address and there are no API tokens: \
             the metrics are open to the network (the API answers loopback only); use [http] \
             with [[http.tokens]]"
        ));
    }
    out
}

/// Storage credentials open a bucket of every recording: written inline in a file every
/// user may read, the config is refused (other inline secrets are only warned about).
fn refuse_inline_storage_keys(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let world_readable = std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0);
    let Some(storage) = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| t.get("storage").and_then(|s| s.as_table()).cloned())
    else {
        return Ok(());
    };
    match ["access_key_id", "secret_access_key"]
        .into_iter()
        .find(|k| storage.get(*k).is_some_and(|v| v.is_str()))
    {
        Some(key) if world_readable => Err(ConfigError {
            file: path.to_owned(),
            key: Some(format!("storage.{key}")),
            problem: "written inline in a file every user may read: use { credential = \"NAME\" \
                      } (LoadCredential= in the unit), { file = \"...\" } or { env = \"...\" }, \
                      or make the file 0640"
                .into(),
        }),
        _ => Ok(()),
    }
}

/// Collects the dotted keys of secrets given as plain strings under `v`, URLs holding user
/// info or a query (`ws://user:pw@host/?token=...`) among them.
fn find_inline_secrets(v: &toml::Value, at: String, out: &mut Vec<String>) {
    let join = |k: &str| {
        if at.is_empty() {
            k.to_owned()
        } else {
            format!("{at}.{k}")
        }
    };
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let url_with_credentials =
                    k == "url" && v.as_str().is_some_and(|u| crate::janus::redacted(u) != u);
                if (SECRET_KEYS.contains(&k.as_str()) && v.is_str()) || url_with_credentials {
                    out.push(join(k));
                } else {
                    find_inline_secrets(v, join(k), out);
                }
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                find_inline_secrets(v, format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Why a `ca_file` setting cannot be used; its text is the [`ConfigError`]'s problem.
#[derive(Debug, thiserror::Error)]
enum CaFileError {
    /// Set beside a `ws://` URL, which speaks no TLS (`url` redacted: the error is logged).
    #[error("a CA file is only used with wss:// URLs, not {url:?}")]
    NotWss { url: String },
    /// The file cannot be read or holds no certificate.
    #[error(transparent)]
    Unusable(#[from] TlsError),
}

/// A `ca_file` must go with a `wss://` URL and hold at least one PEM certificate.
fn check_ca_file(url: &str, ca_file: Option<&Path>) -> Result<(), CaFileError> {
    let Some(path) = ca_file else { return Ok(()) };
    if !url.starts_with("wss://") {
        return Err(CaFileError::NotWss {
            url: crate::janus::redacted(url),
        });
    }
    crate::janus::tls::read_ca_file(path)?;
    Ok(())
}

/// toml's messages can span lines; a log line should not.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl NetworkConfig {
    /// The media loop's UDP sockets, one per advertised address (their port is `port`).
    pub fn socket_plan(&self) -> SocketPlan {
        let advertise = if !self.advertise.is_empty() {
            self.advertise.clone()
        } else {
            match self.bind {
                Some(ip) if !ip.is_unspecified() => vec![ip],
                _ => interface_addresses(),
            }
        };
        SocketPlan::new(self.bind, &advertise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/jr.toml"))
    }

    const GOOD: &str = r#"
        [janus]
        url = "ws://127.0.0.1:8188"
        api_secret = "s3cret"
        [output]
        dir = "/var/lib/janus-recorder"
        [network]
        bind = "10.0.0.2"
        [[rooms]]
        room = 1234
        [[rooms]]
        room = "hearing-7"
        pin = "42"
    "#;

    #[test]
    fn relay_tables_are_checked() {
        let head = "[janus]\nurl = \"ws://j:8188\"\n[output]\ndir = \"/r\"\n";
        let ok = parse(&format!(
            "{head}[[rooms]]\nroom = 1\nrecord = false\nrelay = {{ room = 2, url = \"wss://other\", token = \"t\", display_suffix = \" (r)\" }}\n"
        ))
        .unwrap();
        let relay = ok.rooms[0].relay.as_ref().unwrap();
        assert_eq!(
            (ok.rooms[0].record, relay.room.to_string()),
            (false, "2".into())
        );
        assert_eq!(relay.display_suffix, " (r)");
        for (rooms, key, problem) in [
            (
                "room = 1\nrelay = { room = 1 }",
                "rooms[0].relay.room",
                "into itself",
            ),
            (
                "room = 1\nrelay = { room = 2, url = \"http://x\" }",
                "rooms[0].relay.url",
                "ws://",
            ),
            (
                "room = 1\nrelay = { room = 2, token = \"t\" }",
                "rooms[0].relay",
                "relay.url",
            ),
            (
                "room = 1\nrecord = false",
                "rooms[0].record",
                "neither recorded nor relayed",
            ),
            (
                "room = 1\nrelay = { room = 2, colour = 1 }",
                "rooms[0].relay.colour",
                "unknown field",
            ),
        ] {
            let e = parse(&format!("{head}[[rooms]]\n{rooms}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{e}");
            assert!(e.problem.contains(problem), "{e}");
        }
    }

    #[test]
    fn parses_a_full_config() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.janus.api_secret, Some(Secret::new("s3cret")));
        assert_eq!(c.rooms[0].room, RoomId::from(1234));
        assert_eq!(c.rooms[1].room, RoomId::from("hearing-7"));
        assert_eq!(c.rooms[1].pin, Some(Secret::new("42")));
        assert_eq!(format!("{:?}", c.rooms[1].pin), "Some(Secret(..))");
        let plan: Vec<_> = c.network.socket_plan().iter().copied().collect();
        assert_eq!(plan.len(), 1);
        assert_eq!(plan[0].bind, "10.0.0.2:0".parse().unwrap());
        assert_eq!(plan[0].advertise, "10.0.0.2:0".parse().unwrap());
    }

    #[test]
    fn the_example_config_is_valid() {
        let c = Config::parse(
            include_str!("../config/config.toml"),
            Path::new("config.toml"),
        )
        .unwrap();
        assert_eq!(c.rooms.len(), 1);
        assert_eq!(c.http_listen(), Some("127.0.0.1:9469".parse().unwrap()));
    }

    #[test]
    fn secrets_from_a_file_or_the_environment() {
        let dir = std::env::temp_dir().join(format!("jr-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("api_secret");
        std::fs::write(&file, "from-file\n").unwrap();
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("JR_TEST_PIN", "from-env") };
        let text = GOOD
            .replace(
                "api_secret = \"s3cret\"",
                &format!("api_secret = {{ file = \"{}\" }}", file.display()),
            )
            .replace("pin = \"42\"", "pin = { env = \"JR_TEST_PIN\" }");
        let c = parse(&text).unwrap();
        assert_eq!(c.janus.api_secret.unwrap().expose(), "from-file");
        assert_eq!(c.rooms[1].pin.as_ref().unwrap().expose(), "from-env");

        let e = parse(&text.replace("JR_TEST_PIN", "JR_TEST_UNSET")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("rooms[1].pin"), "{e}");
        assert!(e.problem.contains("JR_TEST_UNSET is not set"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("janus.api_secret"), "{e}");
        assert!(e.problem.contains("cannot read"), "{e}");
        let e = parse(&GOOD.replace("pin = \"42\"", "pin = { path = \"x\" }")).unwrap_err();
        assert!(e.problem.contains("{ env = "), "{e}");
    }

    #[test]
    fn ca_files_are_checked_when_loaded() {
        let dir = std::env::temp_dir().join(format!("jr-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let wss = GOOD.replace("ws://", "wss://");
        let with_ca = |text: &str, path: &Path| {
            text.replace(
                "api_secret = \"s3cret\"",
                &format!("ca_file = \"{}\"", path.display()),
            )
        };
        let e = parse(&with_ca(&wss, &empty)).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("janus.ca_file"), "{e}");
        assert!(
            e.problem.contains("empty.pem") && e.problem.contains("no PEM"),
            "{e}"
        );
        let e = parse(&with_ca(&wss, &dir.join("missing.pem"))).unwrap_err();
        assert!(e.problem.contains("missing.pem"), "{e}");
        let e = parse(&with_ca(GOOD, &empty)).unwrap_err();
        assert!(e.problem.contains("only used with wss://"), "{e}");
        let relay = format!(
            "{GOOD}[[rooms]]\nroom = 9\nrelay = {{ room = 10, ca_file = \"{}\" }}\n",
            empty.display()
        );
        let e = parse(&relay).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("rooms[2].relay"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn split_after_takes_human_durations() {
        let with = |v: &str| GOOD.replace("[network]", &format!("split_after = {v}\n[network]"));
        let c = parse(&with("\"4h\"")).unwrap();
        assert_eq!(
            c.output.split_after,
            Some(std::time::Duration::from_secs(4 * 3600))
        );
        let c = parse(&with("\"1h 30m\"")).unwrap();
        assert_eq!(
            c.output.split_after,
            Some(std::time::Duration::from_secs(5400))
        );
        assert_eq!(parse(GOOD).unwrap().output.split_after, None);
        for (bad, problem) in [
            ("\"4 hours-ish\"", "not a duration"),
            ("\"1s\"", "shorter than"),
            ("14400", "string"),
        ] {
            let e = parse(&with(bad)).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("output.split_after"), "{e}");
            assert!(e.problem.contains(problem), "{bad}: {e}");
        }
    }

    #[test]
    fn keep_days_is_a_positive_whole_number() {
        let with = |v: &str| GOOD.replace("[network]", &format!("keep_days = {v}\n[network]"));
        assert_eq!(
            parse(&with("30")).unwrap().output.keep_days,
            std::num::NonZeroU32::new(30)
        );
        assert_eq!(parse(GOOD).unwrap().output.keep_days, None);
        for (bad, problem) in [
            ("0", "whole number of days, at least 1, not 0"),
            ("-3", "not -3"),
            ("1.5", "not 1.5"),
            ("\"30d\"", "not \"30d\""),
        ] {
            let e = parse(&with(bad)).unwrap_err();
            assert_eq!(e.key.as_deref(), Some("output.keep_days"), "{e}");
            assert!(e.problem.contains(problem), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let text = GOOD.replace("pin = \"42\"", "pin = \"42\"\nrecorded = true");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("config error in /etc/jr.toml"), "{e}");
        assert!(e.contains("rooms[1]"), "{e}");
        assert!(e.contains("recorded"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let text = GOOD.replace("room = 1234", "room = 12.5");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("rooms[0].room"), "{e}");
    }

    #[test]
    fn missing_section_and_bad_url_and_syntax() {
        let e = parse("[output]\ndir = \"/x\"\n[[rooms]]\nroom = 1\n").unwrap_err();
        assert!(e.problem.contains("janus"), "{e}");
        let e = parse(&GOOD.replace("ws://", "http://")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("janus.url"));
        let e = parse("[janus\nurl=").unwrap_err();
        assert!(e.key.is_none());
        assert!(!e.problem.contains('\n'));
        let e = parse(&GOOD.replace("room = \"hearing-7\"", "room = 1234")).unwrap_err();
        assert!(e.problem.contains("twice"), "{e}");
    }

    #[test]
    fn the_api_needs_tokens_off_loopback_and_one_listener() {
        let base = "[janus]\nurl = \"ws://j\"\n[output]\ndir = \"/r\"\n";
        let c = parse(&format!("{base}[http]\n")).unwrap();
        assert_eq!(c.http_listen(), Some(DEFAULT_HTTP_LISTEN.parse().unwrap()));
        assert!(c.rooms.is_empty(), "rooms may come from the API");
        let e = parse(&format!("{base}[http]\nlisten = \"0.0.0.0:9469\"\n")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("http.listen"), "{e}");
        assert!(e.problem.contains("tokens"), "{e}");
        let token = "[[http.tokens]]\ntoken = \"0123456789abcdef\"\nscope = \"read\"\n";
        let c = parse(&format!("{base}[http]\nlisten = \"0.0.0.0:9469\"\n{token}")).unwrap();
        assert_eq!(c.tokens()[0].scope, Scope::Read);
        let e = parse(&format!(
            "{base}[http]\n[[http.tokens]]\ntoken = \"short\"\nscope = \"read\"\n"
        ))
        .unwrap_err();
        assert!(e.problem.contains("shorter than 16"), "{e}");
        let e = parse(&format!(
            "{base}[http]\n[[http.tokens]]\ntoken = \"0123456789abcdef\"\nscope = \"admin\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("http.tokens[0].scope"), "{e}");
        let e = parse(&format!(
            "{base}[http]\nlisten = \"127.0.0.1:1\"\n[metrics]\nlisten = \"127.0.0.1:2\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("metrics.listen"), "{e}");
        // Without [http] or [[rooms]] or rooms = "all", nothing would ever be recorded.
        let e = parse(base).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("rooms"), "{e}");
    }

    #[test]
    fn rooms_all_and_its_filters() {
        let base = "[output]\ndir = \"/r\"\n";
        let c = parse(&format!(
            "[janus]\nurl = \"ws://j\"\nrooms = \"all\"\nexclude = [1, \"x\"]\ndescription = \"^class\"\ndiscover_every = \"500ms\"\n{base}"
        ))
        .unwrap();
        assert_eq!(c.janus.rooms, RoomsMode::All);
        assert_eq!(c.janus.exclude, [RoomId::from(1), RoomId::from("x")]);
        assert_eq!(
            c.janus.discover_every,
            std::time::Duration::from_millis(500)
        );
        for (janus, key, problem) in [
            ("rooms = \"some\"", "janus.rooms", "unknown variant"),
            ("include = [1]", "janus.rooms", "rooms = \"all\""),
            (
                "rooms = \"all\"\ndescription = \"(\"",
                "janus.description",
                "regex",
            ),
            (
                "rooms = \"all\"\ndiscover_every = \"0s\"",
                "janus.discover_every",
                "zero",
            ),
            ("name = \"a/b\"\nrooms = \"all\"", "janus.name", "letters"),
        ] {
            let e = parse(&format!("[janus]\nurl = \"ws://j\"\n{janus}\n{base}")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{janus}: {e}");
            assert!(e.problem.contains(problem), "{janus}: {e}");
        }
    }

    #[test]
    fn rtp_forward_is_parsed_and_checked() {
        let base = "[output]\ndir = \"/r\"\n[[rooms]]\nroom = 1\nsecret = { env = \"HOME\" }\n";
        let c = parse(&format!(
            "[janus]\nurl = \"ws://j\"\nrtp_forward = {{ listen = \"127.0.0.1:5100\" }}\n{base}"
        ))
        .unwrap();
        let f = c.janus.rtp_forward.as_ref().unwrap();
        assert_eq!(f.janus_host(), "127.0.0.1");
        assert_eq!(f.listen.port(), 5100);
        assert!(c.rooms[0].secret.is_some());
        let c = parse(&format!(
            "[janus]\nurl = \"ws://j\"\nrtp_forward = {{ listen = \"0.0.0.0:0\", host = \"10.0.0.5\" }}\n{base}"
        ))
        .unwrap();
        assert_eq!(c.janus.rtp_forward.unwrap().janus_host(), "10.0.0.5");
        for (forward, key, problem) in [
            (
                "{ listen = \"0.0.0.0:0\" }",
                "janus.rtp_forward.host",
                "every address",
            ),
            (
                "{ listen = \"[::]:0\" }",
                "janus.rtp_forward.host",
                "every address",
            ),
            (
                "{ listen = \"127.0.0.1:0\", host = \"a b\" }",
                "janus.rtp_forward.host",
                "host name",
            ),
            (
                "{ listen = \"localhost\" }",
                "janus.rtp_forward.listen",
                "socket address",
            ),
            (
                "{ listen = \"127.0.0.1:0\", port = 3 }",
                "janus.rtp_forward.port",
                "unknown field",
            ),
        ] {
            let e = parse(&format!(
                "[janus]\nurl = \"ws://j\"\nrtp_forward = {forward}\n{base}"
            ))
            .unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{forward}: {e}");
            assert!(e.problem.contains(problem), "{forward}: {e}");
        }
    }

    #[test]
    fn inline_secrets_in_a_world_readable_file_are_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("jr-warn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        // A URL's user info and query are secrets too.
        let text = format!(
            "{GOOD}[metrics]\nlisten = \"0.0.0.0:9469\"\n[[rooms]]\nroom = 5\npin = {{ env = \"HOME\" }}\n"
        )
        .replace("ws://127.0.0.1:8188", "ws://admin:pw@127.0.0.1:8188/?token=t");
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let config = parse(&text).unwrap();
        let w = warnings(&path, &text, &config);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("janus.api_secret, janus.url, rooms[1].pin"),
            "{w:?}"
        );
        assert!(w[0].contains("credential"), "{w:?}");
        assert!(
            !w[0].contains("rooms[2]"),
            "a secret from the environment is fine: {w:?}"
        );
        assert!(w[1].contains("0.0.0.0:9469"), "{w:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            warnings(&path, &text, &config).len(),
            1,
            "0640: only the listener"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// `[cluster]` is optional; its problems name the file, the key under `cluster.` and
    /// the problem.
    #[test]
    fn cluster_is_parsed_and_its_errors_name_the_key() {
        assert!(parse(GOOD).unwrap().cluster.is_none());
        let ok = parse(&format!(
            "{GOOD}[cluster]\nendpoints = [\"http://10.0.0.5:2379\"]\ninstance = \"rec-a\"\n\
             user = \"u\"\npassword = {{ env = \"HOME\" }}\n"
        ))
        .unwrap();
        let c = ok.cluster.unwrap();
        assert_eq!((c.instance.as_str(), c.lease_ttl.as_secs()), ("rec-a", 10));
        for (extra, key) in [
            ("lease_ttl = \"1s\"", "cluster.lease_ttl"),
            ("lease_ttl = 10", "cluster.lease_ttl"),
            ("password = \"p\"", "cluster.user"),
            ("tls = true", "cluster.tls"),
        ] {
            let e = parse(&format!(
                "{GOOD}[cluster]\nendpoints = [\"http://e:2379\"]\ninstance = \"a\"\n{extra}\n"
            ))
            .unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{extra}: {e}");
            assert!(
                e.to_string()
                    .starts_with("config error in /etc/jr.toml: key `cluster"),
                "{e}"
            );
        }
    }

    #[test]
    fn storage_is_parsed_and_checked() {
        let ok = parse(&format!(
            "{GOOD}[storage]\nendpoint = \"http://127.0.0.1:3900\"\nregion = \"garage\"\n\
             bucket = \"rec\"\npath_style = true\nkey = \"x/{{room}}/{{file}}\"\n\
             access_key_id = {{ env = \"HOME\" }}\nsecret_access_key = {{ env = \"HOME\" }}\n\
             keep_local = 3\nmax_bytes_per_second = 1000\n"
        ))
        .unwrap();
        let s = ok.storage.unwrap();
        assert_eq!(s.max_bytes_per_second.map(|r| r.get()), Some(1000));
        assert_eq!(
            s.keep_local,
            crate::storage::KeepLocal::Days(3.try_into().unwrap())
        );
        assert_eq!(s.key.to_string(), "x/{room}/{file}");
        assert!(s.path_style);
        let minimal = parse(&format!("{GOOD}[storage]\nbucket = \"rec\"\n")).unwrap();
        let s = minimal.storage.unwrap();
        assert_eq!(
            (s.keep_local, s.key.to_string(), s.region.as_str()),
            (
                crate::storage::KeepLocal::Keep,
                "{room}/{date}/{file}".into(),
                "us-east-1"
            )
        );
        for (table, key, problem) in [
            ("bucket = \"Rec\"", "storage.bucket", "not a bucket name"),
            (
                "bucket = \"rec\"\nendpoint = \"ftp://x\"",
                "storage.endpoint",
                "http://",
            ),
            (
                "bucket = \"rec\"\nkey = \"{room}\"",
                "storage.key",
                "must hold {file}",
            ),
            (
                "bucket = \"rec\"\nkeep_local = \"forever\"",
                "storage.keep_local",
                "until-uploaded",
            ),
            (
                "bucket = \"rec\"\nkeep_local = 0",
                "storage.keep_local",
                "at least 1",
            ),
            (
                "bucket = \"rec\"\naccess_key_id = { env = \"HOME\" }",
                "storage.secret_access_key",
                "go together",
            ),
            (
                "bucket = \"rec\"\nsecret_access_key = { env = \"JR_NO_SUCH_VAR\" }",
                "storage.secret_access_key",
                "JR_NO_SUCH_VAR is not set",
            ),
            (
                "bucket = \"rec\"\nbukket = 1",
                "storage.bukket",
                "unknown field",
            ),
        ] {
            let e = parse(&format!("{GOOD}[storage]\n{table}\n")).unwrap_err();
            assert_eq!(e.key.as_deref(), Some(key), "{table}: {e}");
            assert!(e.problem.contains(problem), "{table}: {e}");
        }
    }

    #[test]
    fn inline_storage_keys_in_a_world_readable_file_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let text = format!(
            "{GOOD}[storage]\nbucket = \"rec\"\naccess_key_id = \"GK1\"\nsecret_access_key = \"s\"\n"
        );
        std::fs::write(&path, &text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("storage.access_key_id"), "{e}");
        assert!(e.problem.contains("credential"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        Config::load(&path).unwrap();
    }

    #[test]
    fn advertise_overrides_bind_for_nat() {
        let text = GOOD.replace(
            "bind = \"10.0.0.2\"",
            "bind = \"10.0.0.2\"\nadvertise = [\"203.0.113.9\"]",
        );
        let plan: Vec<_> = parse(&text)
            .unwrap()
            .network
            .socket_plan()
            .iter()
            .copied()
            .collect();
        assert_eq!(
            plan,
            vec![crate::net::SocketSpec {
                bind: "10.0.0.2:0".parse().unwrap(),
                advertise: "203.0.113.9:0".parse().unwrap()
            }]
        );
    }
}
