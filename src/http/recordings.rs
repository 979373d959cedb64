//! `/api/v1/recordings`: the recordings on disk, one with its check verdict, and its file
//! (HTTP ranges, a file still being written included).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tower::ServiceExt;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Api, ApiError, ErrorBody};
use crate::recordings::{Cursor, Page, RecState, RecordingInfo, Verdict};

pub(super) fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_recordings))
        .routes(routes!(get_recording))
        .routes(routes!(recording_file))
}

/// The filters of `GET /recordings`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this room (its id as written).
    room: Option<String>,
    /// Started at or after (RFC 3339).
    since: Option<String>,
    /// Started before (RFC 3339).
    until: Option<String>,
    /// `recording`, `finished`, `failed` or `interrupted`.
    state: Option<String>,
    /// At most this many (default 100, at most 1000).
    limit: Option<String>,
    /// From the previous page's `next_cursor`.
    cursor: Option<String>,
}

impl ListQuery {
    fn parse(self) -> Result<crate::recordings::Query, ApiError> {
        let time = time_param;
        let limit = match self.limit {
            None => 100,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=crate::recordings::MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "limit: a number from 1 to {}",
                        crate::recordings::MAX_LIMIT
                    )));
                }
            },
        };
        Ok(crate::recordings::Query {
            room: self.room,
            since: time("since", self.since)?,
            until: time("until", self.until)?,
            state: self
                .state
                .map(|s| {
                    RecState::parse(&s).ok_or_else(|| {
                        ApiError::bad_request(
                            "state: one of recording, finished, failed, interrupted",
                        )
                    })
                })
                .transpose()?,
            limit,
            cursor: self
                .cursor
                .map(|c| {
                    Cursor::decode(&c)
                        .ok_or_else(|| ApiError::bad_request("cursor: not a cursor of this API"))
                })
                .transpose()?,
        })
    }
}

/// A query parameter that is an RFC 3339 time (empty: none), or a 400 naming it.
pub(super) fn time_param(name: &str, v: Option<String>) -> Result<Option<SystemTime>, ApiError> {
    v.filter(|v| !v.is_empty())
        .map(|v| {
            OffsetDateTime::parse(&v, &Rfc3339)
                .map(SystemTime::from)
                .map_err(|e| ApiError::bad_request(format!("{name}: not an RFC 3339 time: {e}")))
        })
        .transpose()
}

/// A query string parsed and checked as the handler does (for the fuzz target).
pub(super) fn parse_query(uri: &axum::http::Uri) -> Result<crate::recordings::Query, ApiError> {
    let Query(q) =
        Query::<ListQuery>::try_from_uri(uri).map_err(|e| ApiError::bad_request(e.body_text()))?;
    q.parse()
}

/// Recordings, oldest first: finished ones from their sidecars, live ones with their
/// duration and bytes so far.
#[utoipa::path(
    get,
    path = "/recordings",
    params(ListQuery),
    responses(
        (status = 200, body = Page),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)
    )
)]
async fn list_recordings(
    State(api): State<Api>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let q = q.parse()?;
    let index = api.index.clone();
    let page = tokio::task::spawn_blocking(move || index.list(&q, SystemTime::now()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(page))
}

/// One recording: its sidecar, and the check tool's verdict on its file.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingDetail {
    #[serde(flatten)]
    pub recording: RecordingInfo,
    pub check: Verdict,
}

/// Verdicts already computed, by file and its size and time (a finished file's verdict
/// never changes; a growing file's is computed again as it grows).
type VerdictCache = Mutex<HashMap<PathBuf, (u64, SystemTime, Verdict)>>;

fn verdicts() -> &'static VerdictCache {
    static CACHE: std::sync::OnceLock<VerdictCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The check tool's verdict on `path`, cached; `unchecked` when the file is not here (only
/// in object storage, or deleted a moment ago).
pub(super) fn verdict(path: &std::path::Path) -> Verdict {
    let Some(md) = std::fs::metadata(path).ok() else {
        return Verdict::unchecked();
    };
    let md = Some(md);
    let key = md
        .as_ref()
        .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
    let cache = verdicts();
    if let Some((len, at)) = key
        && let Some((l, a, v)) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(path)
        && (*l, *a) == (len, at)
    {
        return v.clone();
    }
    let v = Verdict::of(&crate::check::check_file(path, &Default::default()));
    if let Some((len, at)) = key {
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.len() > 10_000 {
            c.clear();
        }
        c.insert(path.to_owned(), (len, at, v.clone()));
    }
    v
}

/// One recording with the check tool's verdict on its file (for a live one, on what is
/// written so far).
#[utoipa::path(
    get,
    path = "/recordings/{id}",
    params(("id" = String, Path, description = "The recording's id")),
    responses(
        (status = 200, body = RecordingDetail),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
async fn get_recording(
    State(api): State<Api>,
    Path(id): Path<String>,
) -> Result<Json<RecordingDetail>, ApiError> {
    let index = api.index.clone();
    let detail = tokio::task::spawn_blocking(move || {
        let recording = index.get(&id, SystemTime::now())?;
        let check = verdict(&recording.media);
        Some(RecordingDetail { recording, check })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    detail
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such recording"))
}

/// The recording's media file (`video/webm` or `video/x-matroska`), with HTTP ranges (206);
/// a file still being written is served as far as it is written, one whose local copy
/// `keep_local` deleted is read back from object storage.
#[utoipa::path(
    get,
    path = "/recordings/{id}/file",
    params(("id" = String, Path, description = "The recording's id")),
    responses(
        (status = 200, description = "The whole file", content_type = "video/webm"),
        (status = 206, description = "The range asked for"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 416, description = "A range outside the file"),
        (status = 502, body = ErrorBody, description = "Only in object storage, which failed")
    )
)]
async fn recording_file(
    State(api): State<Api>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let index: Arc<crate::recordings::Index> = api.index.clone();
    let recording = tokio::task::spawn_blocking(move || index.get(&id, SystemTime::now()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .ok_or_else(|| ApiError::not_found("no such recording"))?;
    let media = recording.media;
    if !recording.local {
        return from_storage(&api.uploads, &media, req.headers()).await;
    }
    // Its type from the extension: `video/webm`, `video/x-matroska`.
    let served = tower_http::services::ServeFile::new(&media)
        .oneshot(req)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(served.into_response())
}

/// Serves an uploaded recording whose local copy `keep_local` deleted, from the bucket,
/// with the same ranges (206, 416) as a file on disk.
async fn from_storage(
    uploads: &crate::storage::Uploads,
    media: &std::path::Path,
    headers: &axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    use crate::storage::FetchError;
    use axum::http::{StatusCode, header};
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let fetched = match uploads.fetch(media, range).await {
        Ok(f) => f,
        Err(FetchError::Unsatisfiable(size)) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{size}"))],
            )
                .into_response());
        }
        Err(e @ FetchError::NotUploaded) => return Err(ApiError::not_found(e.to_string())),
        Err(e) => {
            tracing::warn!(path = %media.display(), error = %e, "cannot serve a recording from object storage");
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                "storage",
                e.to_string(),
            ));
        }
    };
    let content_type = match media.extension().and_then(|e| e.to_str()) {
        Some("mkv") => "video/x-matroska",
        _ => "video/webm",
    };
    let r = &fetched.range;
    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, r.end - r.start);
    response = if fetched.partial {
        response.status(StatusCode::PARTIAL_CONTENT).header(
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{}",
                r.start,
                r.end.saturating_sub(1),
                fetched.size
            ),
        )
    } else {
        response.status(StatusCode::OK)
    };
    response
        .body(axum::body::Body::from_stream(fetched.body))
        .map_err(|e| ApiError::internal(e.to_string()))
}
