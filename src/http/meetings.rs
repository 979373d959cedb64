//! `/api/v1/meetings`: one entry per room watch, from the room manifests, each recording
//! placed on the room clock (what the recordings page shows), and a recording's sidecar.

use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::recordings::{time_param, verdict};
use super::{Api, ApiError, ErrorBody, blocking};
use crate::meetings::{Meeting, MeetingQuery, MeetingState, Meetings};

pub(super) fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_meetings))
        .routes(routes!(get_meeting))
        .routes(routes!(recording_sidecar))
        .routes(routes!(recording_timeline))
        .routes(routes!(meeting_room_file))
        .routes(routes!(recording_levels))
}

/// The filters of `GET /meetings`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MeetingsQuery {
    /// Only this room (its id as written, or its directory's name).
    room: Option<String>,
    /// A participant's display name contains this (case-insensitive).
    participant: Option<String>,
    /// Started at or after (RFC 3339).
    since: Option<String>,
    /// Started before (RFC 3339).
    until: Option<String>,
    /// `recording`, `finished`, `failed` or `interrupted`.
    state: Option<String>,
}

impl MeetingsQuery {
    fn parse(self) -> Result<MeetingQuery, ApiError> {
        let time = time_param;
        Ok(MeetingQuery {
            room: self.room.filter(|r| !r.is_empty()),
            participant: self.participant.filter(|p| !p.is_empty()),
            since: time("since", self.since)?,
            until: time("until", self.until)?,
            state: self
                .state
                .filter(|s| !s.is_empty())
                .map(|s| {
                    MeetingState::parse(&s).ok_or_else(|| {
                        ApiError::bad_request(
                            "state: one of recording, finished, failed, interrupted",
                        )
                    })
                })
                .transpose()?,
        })
    }
}

/// A meeting's id in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MeetingPath {
    /// The meeting's id (`<room directory>~<manifest stem>`).
    id: String,
}

/// A recording's id in a path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RecordingPath {
    /// The recording's id (`<room directory>~<file stem>`).
    id: String,
}

/// What reading one meeting or recording may answer besides its content.
#[derive(utoipa::IntoResponses)]
#[expect(
    dead_code,
    reason = "never built: it describes answers in the OpenAPI document"
)]
pub enum ReadErrors {
    /// No token, or a wrong one.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token's scope, or the peer, is not enough.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such meeting or recording.
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// The meetings list.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeetingList {
    /// Newest first.
    pub meetings: Vec<Meeting>,
}

/// Meetings (room watches), newest first, with their participants, size, state and the check
/// tool's verdict on their files.
#[utoipa::path(
    get,
    path = "/meetings",
    params(MeetingsQuery),
    responses(
        (status = 200, body = MeetingList),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)
    )
)]
async fn list_meetings(
    State(api): State<Api>,
    query: Result<Query<MeetingsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<MeetingList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let q = q.parse()?;
    let index = api.index.clone();
    let meetings = blocking(move || {
        Meetings {
            index: &index,
            verdict: &verdict,
        }
        .list(&q, SystemTime::now())
    })
    .await?;
    Ok(Json(MeetingList { meetings }))
}

/// One meeting: its recordings, each with its offset on the room clock.
#[utoipa::path(
    get,
    path = "/meetings/{id}",
    params(MeetingPath),
    responses(
        (status = 200, body = Meeting),
        ReadErrors
    )
)]
async fn get_meeting(
    State(api): State<Api>,
    Path(MeetingPath { id }): Path<MeetingPath>,
) -> Result<Json<Meeting>, ApiError> {
    let index = api.index.clone();
    blocking(move || {
        Meetings {
            index: &index,
            verdict: &verdict,
        }
        .get(&id, SystemTime::now())
    })
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::not_found("no such meeting"))
}

/// The recording's sidecar file as it is on disk (a download).
#[utoipa::path(
    get,
    path = "/recordings/{id}/sidecar",
    params(RecordingPath),
    responses(
        (status = 200, description = "The sidecar JSON", content_type = "application/json"),
        ReadErrors
    )
)]
async fn recording_sidecar(
    State(api): State<Api>,
    Path(RecordingPath { id }): Path<RecordingPath>,
) -> Result<Response, ApiError> {
    let name = format!("{}.json", id.split_once('~').map_or("", |(_, s)| s));
    let disposition = format!("attachment; filename=\"{name}\"");
    beside_recording(&api, id, "application/json", &disposition, |index, id| {
        crate::meetings::sidecar_path(index, id).and_then(|p| std::fs::read(p).ok())
    })
    .await
}

/// A file made from what is beside recording `id` by `make` (on a blocking thread); 404
/// when it gives nothing.
async fn beside_recording(
    api: &Api,
    id: String,
    content_type: &'static str,
    disposition: &str,
    make: impl FnOnce(&crate::recordings::Index, &str) -> Option<Vec<u8>> + Send + 'static,
) -> Result<Response, ApiError> {
    let index = api.index.clone();
    let body = blocking(move || make(&index, &id))
        .await?
        .ok_or_else(|| ApiError::not_found("no such recording, or nothing of this kind for it"))?;
    Ok(file_answer(content_type, disposition, body))
}

/// The check tool's timeline picture of the recording's file (`check --timeline`): a lane
/// per track, gaps, keyframes and problems.
#[utoipa::path(
    get,
    path = "/recordings/{id}/timeline.svg",
    params(RecordingPath),
    responses(
        (status = 200, description = "The picture", content_type = "image/svg+xml"),
        ReadErrors
    )
)]
async fn recording_timeline(
    State(api): State<Api>,
    Path(RecordingPath { id }): Path<RecordingPath>,
) -> Result<Response, ApiError> {
    beside_recording(&api, id, "image/svg+xml", "inline", |index, id| {
        // A file only in object storage is not read back whole for a picture.
        let r = index.get(id, SystemTime::now()).filter(|r| r.local)?;
        let mut report = crate::check::check_file(&r.media, &Default::default());
        // The file's name only: the server's directories are not the viewer's business.
        report.file = r.file.into();
        Some(crate::check::timeline::svg(&report).into_bytes())
    })
    .await
}

/// The recording's audio levels (see `crate::levels`): one byte per 100 ms of the file,
/// `127 - dBov` (127 the loudest, 0 silence or none reported). Written when the file is
/// finalized: 404 before, and for recordings without Janus's audio-level extension.
#[utoipa::path(
    get,
    path = "/recordings/{id}/levels",
    params(RecordingPath),
    responses(
        (status = 200, description = "The levels", content_type = "application/octet-stream"),
        ReadErrors
    )
)]
async fn recording_levels(
    State(api): State<Api>,
    Path(RecordingPath { id }): Path<RecordingPath>,
) -> Result<Response, ApiError> {
    beside_recording(
        &api,
        id,
        "application/octet-stream",
        "inline",
        |index, id| {
            let sidecar = crate::meetings::sidecar_path(index, id)?;
            std::fs::read(crate::levels::path_beside(&sidecar)).ok()
        },
    )
    .await
}

/// Hands the room file's bytes to the response as they are made; a client gone away is a
/// write error, which stops the making.
struct ToResponse(tokio::sync::mpsc::Sender<std::io::Result<axum::body::Bytes>>);

impl std::io::Write for ToResponse {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(axum::body::Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The whole meeting as one Matroska file (what `janus-recorder room` makes: every
/// recording's tracks on the room clock, nothing re-encoded), streamed as it is made, not
/// stored.
#[utoipa::path(
    get,
    path = "/meetings/{id}/room.mkv",
    params(MeetingPath),
    responses(
        (status = 200, description = "The room file", content_type = "video/x-matroska"),
        (status = 409, body = ErrorBody, description = "Files only in object storage"),
        ReadErrors
    )
)]
async fn meeting_room_file(
    State(api): State<Api>,
    Path(MeetingPath { id }): Path<MeetingPath>,
) -> Result<Response, ApiError> {
    use crate::roomfile::{RoomOutput, TimeArg, Window};
    let index = api.index.clone();
    let meeting = blocking(move || {
        Meetings {
            index: &index,
            verdict: &|_| crate::recordings::Verdict::unchecked(),
        }
        .get(&id, SystemTime::now())
    })
    .await?
    .ok_or_else(|| ApiError::not_found("no such meeting"))?;
    if meeting.recordings.iter().any(|r| !r.local) {
        return Err(ApiError::conflict(
            "some of this meeting's files are only in object storage (keep_local): download \
             them one by one",
        ));
    }
    let zero = time::OffsetDateTime::parse(
        &meeting.zero_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| ApiError::internal(e.to_string()))?;
    // The watch's recordings, from the first one's start to a second past the last one's end
    // (the room's other watches do not overlap it).
    let window = Window {
        from: Some(TimeArg::At(zero)),
        to: Some(TimeArg::At(
            zero + std::time::Duration::from_millis(meeting.duration_ms + 1000),
        )),
    };
    let dir = api.index.dir().join(&meeting.room_dir);
    let (tx, mut rx) = tokio::sync::mpsc::channel(8);
    let errors = tx.clone();
    tokio::task::spawn_blocking(move || {
        let made =
            crate::roomfile::make_room(&dir, window, RoomOutput::Stream(Box::new(ToResponse(tx))));
        if let Err(e) = made {
            tracing::warn!(dir = %dir.display(), error = %e, "the room file for the page failed");
            let _ = errors.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    // The first bytes (or the error) before the answer, so a room that cannot be made is a
    // clear error, not a broken download.
    let first = match rx.recv().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(ApiError::not_found(e.to_string())),
        None => return Err(ApiError::internal("the room file ended before it began")),
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let body =
        futures_util::StreamExt::chain(futures_util::stream::once(async move { Ok(first) }), rest);
    let name = format!(
        "room-{}-{}.mkv",
        meeting.room_dir,
        meeting.id.rsplit('~').next().unwrap_or("")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "video/x-matroska".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// A file made here: its type, how to show it, and a policy under which nothing in it runs.
fn file_answer(content_type: &'static str, disposition: &str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CONTENT_DISPOSITION, disposition.to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'".to_owned(),
            ),
        ],
        body,
    )
        .into_response()
}
