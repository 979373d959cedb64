//! `/api/v1/rooms`: which rooms are recorded, and starting or stopping one.

use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Access, Api, ApiError, Body, ErrorBody};
use crate::config::{RelayConfig, RoomConfig, parse_duration, parse_split_after};
use crate::health::RoomState;
use crate::ids::{JanusId, RoomId};
use crate::output::rfc3339;
use crate::registry::{ApiRoom, RegistryError, Source};
use crate::secret::Secret;

pub(super) fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_rooms))
        .routes(routes!(start_room, stop_room))
}

/// One room the daemon records (or skips).
#[derive(Debug, Serialize, ToSchema)]
pub struct RoomEntry {
    /// The Janus server's name (`[janus] name`).
    pub server: String,
    #[schema(value_type = Object)]
    pub room: RoomId,
    /// `config`, `api` or `discovered`.
    pub source: Option<Source>,
    /// `joining`, `watching`, `retrying` (with `reason`), `skipped` (with `reason`) or
    /// `stopped` (wanted, but not joined now: no connection to Janus).
    pub state: String,
    pub reason: Option<String>,
    /// Feeds being written to files now.
    pub feeds_recording: usize,
    /// In a fleet (`[cluster]`): the instance that holds the room's key and records it
    /// (none: nobody holds it now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_by: Option<String>,
    /// When an API room stops by itself.
    pub until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RoomList {
    pub rooms: Vec<RoomEntry>,
}

/// Every room the daemon records, where it comes from and what it is doing; rooms found by
/// `rooms = "all"` but not recorded are listed as `skipped`, with the reason.
#[utoipa::path(
    get,
    path = "/rooms",
    responses(
        (status = 200, body = RoomList),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)
    )
)]
async fn list_rooms(State(api): State<Api>) -> Json<RoomList> {
    let server = api.access().server;
    let mut rooms: Vec<RoomEntry> = api
        .registry
        .wanted()
        .into_iter()
        .map(|w| {
            let (state, reason) = match api.health.room_state(&w.config.room) {
                Some(RoomState::Joining) => ("joining", None),
                Some(RoomState::Watching) => ("watching", None),
                Some(RoomState::Retrying(why)) => ("retrying", Some(why)),
                None => ("stopped", None),
            };
            RoomEntry {
                server: server.clone(),
                feeds_recording: api.health.room_feeds(&w.config.room),
                recorded_by: api.health.room_holder(&w.config.room),
                room: w.config.room,
                source: Some(w.source),
                state: state.into(),
                reason,
                until: w.until.map(rfc3339),
            }
        })
        .collect();
    rooms.extend(api.registry.skipped().into_iter().map(|s| RoomEntry {
        server: server.clone(),
        room: s.room,
        source: None,
        state: "skipped".into(),
        reason: Some(s.why),
        feeds_recording: 0,
        recorded_by: None,
        until: None,
    }));
    Json(RoomList { rooms })
}

/// The optional body of `PUT /rooms/{server}/{room}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRoom {
    /// The room's PIN, if it has one.
    pub pin: Option<String>,
    /// Also publish every feed into another room.
    pub relay: Option<RelayRequest>,
    /// Stop by itself at this time (RFC 3339).
    pub until: Option<String>,
    /// Or after this long (`"2h"`, `"90m"`).
    pub max_duration: Option<String>,
    /// Continue recordings this long in a new part (`"1h"`; at least 5 s).
    pub split_after: Option<String>,
}

/// Where a room's feeds are relayed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    /// The target room.
    #[schema(value_type = Object)]
    pub room: JanusId,
    /// Another Janus server (`ws://` or `wss://`); default the same one. Its credentials, if
    /// it needs any, cannot be given here: relay to it from the config.
    pub url: Option<String>,
    /// The target room's PIN.
    pub pin: Option<String>,
    /// Added to each relayed publisher's display name.
    #[serde(default)]
    pub display_suffix: String,
}

/// Parses a room id from a path as the server's rooms are numbered: numbers, or with
/// `string_ids` strings (1 to 128 printable characters).
pub(super) fn room_id(access: &Access, raw: &str) -> Result<RoomId, ApiError> {
    if access.string_ids {
        let ok =
            !raw.is_empty() && raw.chars().count() <= 128 && !raw.chars().any(char::is_control);
        return ok.then(|| RoomId::from(raw)).ok_or_else(|| {
            ApiError::bad_request("room: a string id of 1 to 128 printable characters is needed")
        });
    }
    raw.parse::<u64>().map(RoomId::from).map_err(|_| {
        ApiError::bad_request(format!(
            "room: {:?} is not a room number (this server has no string_ids)",
            crate::text::Escaped(raw).to_string()
        ))
    })
}

/// A `PUT` body parsed and checked as the handler does (for the fuzz target).
pub(super) fn start_body(bytes: &[u8], room: RoomId) -> Result<ApiRoom, ApiError> {
    let body: StartRoom = if bytes.iter().all(u8::is_ascii_whitespace) {
        StartRoom::default()
    } else {
        serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(e.to_string()))?
    };
    body.into_api_room(room, SystemTime::now())
}

/// The server in a path must be ours.
fn check_server(access: &Access, server: &str) -> Result<(), ApiError> {
    if server == access.server {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "no Janus server named {:?} (this daemon records {:?})",
            crate::text::Escaped(server).to_string(),
            access.server
        )))
    }
}

impl StartRoom {
    /// The room to record, checked field by field.
    fn into_api_room(self, room: RoomId, now: SystemTime) -> Result<ApiRoom, ApiError> {
        let until = match (&self.until, &self.max_duration) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "field `until`: give until or max_duration, not both",
                ));
            }
            (Some(u), None) => {
                let t = OffsetDateTime::parse(u, &Rfc3339)
                    .map(SystemTime::from)
                    .map_err(|e| ApiError::bad_request(format!("field `until`: {e}")))?;
                if t <= now {
                    return Err(ApiError::bad_request("field `until`: is in the past"));
                }
                Some(t)
            }
            (None, Some(d)) => {
                let d = parse_duration(d)
                    .map_err(|e| ApiError::bad_request(format!("field `max_duration`: {e}")))?;
                if d.is_zero() {
                    return Err(ApiError::bad_request(
                        "field `max_duration`: must not be zero",
                    ));
                }
                Some(now + d.min(Duration::from_secs(100 * 365 * 86_400)))
            }
            (None, None) => None,
        };
        let split_after = self
            .split_after
            .as_deref()
            .map(parse_split_after)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("field `split_after`: {e}")))?;
        let relay = match self.relay {
            None => None,
            Some(r) => {
                if let Some(url) = &r.url
                    && !(url.starts_with("ws://") || url.starts_with("wss://"))
                {
                    return Err(ApiError::bad_request(
                        "field `relay.url`: must start with ws:// or wss://",
                    ));
                }
                let target = RoomId(r.room);
                if r.url.is_none() && target == room {
                    return Err(ApiError::bad_request(
                        "field `relay.room`: a room cannot be relayed into itself",
                    ));
                }
                Some(RelayConfig::without_credentials(
                    target,
                    r.url,
                    r.pin.map(Secret::new),
                    r.display_suffix,
                ))
            }
        };
        Ok(ApiRoom {
            config: RoomConfig {
                pin: self.pin.map(Secret::new),
                relay,
                split_after,
                ..RoomConfig::recorded(room)
            },
            until,
            started_at: now,
        })
    }
}

/// Starts recording a room now. It is kept in the state directory and recorded again after
/// a restart, until it is stopped or its `until` passes.
#[utoipa::path(
    put,
    path = "/rooms/{server}/{room}",
    params(
        ("server" = String, Path, description = "The Janus server's name (`[janus] name`)"),
        ("room" = String, Path, description = "The room id")
    ),
    request_body(content = Option<StartRoom>, content_type = "application/json"),
    responses(
        (status = 201, body = RoomEntry, description = "Recording"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such server"),
        (status = 409, body = ErrorBody, description = "Already recorded"),
        (status = 413, body = ErrorBody)
    )
)]
async fn start_room(
    State(api): State<Api>,
    Path((server, room)): Path<(String, String)>,
    Body(body): Body<StartRoom>,
) -> Result<(StatusCode, Json<RoomEntry>), ApiError> {
    let access = api.access();
    check_server(&access, &server)?;
    let room = room_id(&access, &room)?;
    let wanted = body.into_api_room(room.clone(), SystemTime::now())?;
    let until = wanted.until;
    let registry = api.registry.clone();
    tokio::task::spawn_blocking(move || registry.start_api(wanted))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(registry_error)?;
    tracing::info!(%room, "recording started through the API");
    Ok((
        StatusCode::CREATED,
        Json(RoomEntry {
            server: access.server,
            room,
            source: Some(Source::Api),
            state: "joining".into(),
            reason: None,
            feeds_recording: 0,
            recorded_by: None,
            until: until.map(rfc3339),
        }),
    ))
}

/// Stops recording a room started through the API: its files are finalized, ending
/// `stopped`.
#[utoipa::path(
    delete,
    path = "/rooms/{server}/{room}",
    params(
        ("server" = String, Path, description = "The Janus server's name"),
        ("room" = String, Path, description = "The room id")
    ),
    responses(
        (status = 204, description = "Stopped"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No such server, or the room is not recorded"),
        (status = 409, body = ErrorBody, description = "Recorded because of the config or discovery")
    )
)]
async fn stop_room(
    State(api): State<Api>,
    Path((server, room)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let access = api.access();
    check_server(&access, &server)?;
    let room = room_id(&access, &room)?;
    let registry = api.registry.clone();
    let r = room.clone();
    tokio::task::spawn_blocking(move || registry.stop_api(&r))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(registry_error)?;
    tracing::info!(%room, "recording stopped through the API");
    Ok(StatusCode::NO_CONTENT)
}

fn registry_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::AlreadyRecorded { .. } | RegistryError::NotFromApi { .. } => {
            ApiError::conflict(e.to_string())
        }
        RegistryError::NotRecorded(_) => ApiError::not_found(e.to_string()),
        RegistryError::Save(_) => ApiError::internal(e.to_string()),
    }
}
