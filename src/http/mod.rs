//! The daemon's one HTTP server (`[http] listen`): `/metrics` (Prometheus text) and the
//! versioned JSON API under `/api/v1/` (rooms, recordings, their files, events), with its
//! OpenAPI document at `/api/v1/openapi.json`.
//!
//! It runs on a thread and tokio runtime of its own, so a busy or slow client never takes
//! time from the media loop (the recording runtime has one thread). What it shares with the
//! service is the [`Api`] context: the room registry, the health, the recordings index and
//! the event bus.
//!
//! Access: bearer tokens from `[[http.tokens]]`, each `read` or `control`. Without tokens
//! the API answers loopback peers only (`config check` refuses a non-loopback `[http]
//! listen` without them). Every error is JSON: `{"error": {"code", "message"}}`.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::{Config, Scope, TokenConfig};
use crate::events::Events;
use crate::health::Health;
use crate::recordings::Index;
use crate::registry::Registry;

mod events;
mod meetings;
mod page;
mod recordings;
mod rooms;

/// The largest request body taken (a room's settings are a few hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// What the API may change with a reload of the config.
#[derive(Debug, Clone)]
pub struct Access {
    pub tokens: Vec<TokenConfig>,
    /// The Janus server's name (`[janus] name`).
    pub server: String,
    /// `[janus] string_ids`: room ids in paths are strings.
    pub string_ids: bool,
    /// `[http] share_key`: signs the page's share links.
    pub share_key: Option<crate::secret::Secret>,
}

impl Access {
    pub fn from_config(config: &Config) -> Access {
        Access {
            tokens: config.tokens().to_vec(),
            server: config.janus.name.clone(),
            string_ids: config.janus.string_ids,
            share_key: config.share_key().cloned(),
        }
    }
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct Api {
    pub access: Arc<RwLock<Access>>,
    pub registry: Registry,
    pub health: Arc<Health>,
    pub index: Arc<Index>,
    /// Where recordings whose local copy is gone are read back from.
    pub uploads: crate::storage::Uploads,
    pub events: Events,
    /// The Prometheus text, when metrics are recorded.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl Api {
    fn access(&self) -> Access {
        self.access
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Takes a reloaded config's tokens and names.
    pub fn reconfigure(&self, config: &Config) {
        *self.access.write().unwrap_or_else(|e| e.into_inner()) = Access::from_config(config);
    }
}

/// An API error: its status and a JSON body `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable word: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `payload_too_large`, `internal`.
    pub code: String,
    /// What was wrong, for people.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        let mut r = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// Runs `f` (disk work: sidecars, manifests, checks) on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// A JSON request body: at most [`MAX_BODY`] (413 beyond), and a 400 that names the field
/// that is wrong. An empty body is `T::default()`.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        format!("the body is larger than {MAX_BODY} bytes"),
                    )
                } else {
                    ApiError::bad_request(format!("cannot read the body: {e}"))
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(T::default()));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ApiError::bad_request(format!("the body is not valid: {inner}"))
            } else {
                ApiError::bad_request(format!("field `{path}`: {inner}"))
            }
        })
    }
}

/// Checks the bearer token (or, without tokens, that the peer is on loopback) against the
/// scope the request needs: reading (GET, HEAD) needs `read`; anything that changes
/// something (PUT, DELETE, POST) needs `control`.
async fn authorize(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    let needs =
        if req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD {
            Scope::Read
        } else {
            Scope::Control
        };
    match check_access(&api.access(), peer, &req, needs) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check_access(
    access: &Access,
    peer: SocketAddr,
    req: &Request,
    needs: Scope,
) -> Result<(), ApiError> {
    // The page's cookies (see `page`) only read: nothing is changed on a cookie's word, so a
    // request another site makes the browser send can do nothing.
    if needs == Scope::Read && !req.headers().contains_key(header::AUTHORIZATION) {
        let headers = req.headers();
        if page::cookie(headers, page::TOKEN_COOKIE)
            .is_some_and(|t| token_scope(&access.tokens, t).is_some())
        {
            return Ok(());
        }
        if let (Some(key), Some(grant)) = (
            &access.share_key,
            page::cookie(headers, page::SHARE_COOKIE)
                .and_then(crate::share::Grant::from_cookie_value),
        ) && grant.verify(key, std::time::SystemTime::now()).is_ok()
            && grant.allows(req.uri().path(), req.uri().query())
        {
            return Ok(());
        }
    }
    if access.tokens.is_empty() {
        // Metrics stay as open as their listener, as before the API (`config check` warns
        // about a public one); the API is for loopback only.
        if req.uri().path() == "/metrics" {
            return Ok(());
        }
        return if peer.ip().is_loopback() || peer.ip().to_canonical().is_loopback() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "without [[http.tokens]] the API answers only on loopback",
            ))
        };
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(given) = given else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "an `Authorization: Bearer <token>` header is needed",
        ));
    };
    let scope = token_scope(&access.tokens, given)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"))?;
    if scope < needs {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token's scope is {scope:?}; {needs:?} is needed"),
        ));
    }
    Ok(())
}

/// The scope of the token `given`, compared in constant time with each configured token.
pub fn token_scope(tokens: &[TokenConfig], given: &str) -> Option<Scope> {
    use subtle::ConstantTimeEq;
    tokens
        .iter()
        .filter(|t| bool::from(t.token.expose().as_bytes().ct_eq(given.as_bytes())))
        .map(|t| t.scope)
        .max()
}

/// The API's OpenAPI document (paths are added from the routes themselves).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "janus-recorder API",
        description = "Start and stop recording Janus VideoRoom rooms, list recordings, fetch their files, follow events."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The API's routes with their OpenAPI document.
pub fn api_routes() -> (Router<Api>, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .merge(rooms::routes())
        .merge(recordings::routes())
        .merge(meetings::routes())
        .merge(events::routes());
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", v1)
        .split_for_parts()
}

/// The whole server's router: the API, its document, `/metrics`, and JSON 404s.
pub fn router(api: Api) -> Router {
    let (routes, doc) = api_routes();
    let doc = Arc::new(doc);
    let openapi = axum::routing::get(move || {
        let doc = doc.clone();
        async move { axum::Json(doc.as_ref().clone()) }
    });
    let metrics = axum::routing::get(|State(api): State<Api>| async move {
        match &api.metrics {
            Some(handle) => {
                handle.run_upkeep();
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    handle.render(),
                )
                    .into_response()
            }
            None => ApiError::not_found("metrics are not recorded").into_response(),
        }
    });
    let guarded = routes
        .route("/api/v1/openapi.json", openapi)
        .route("/metrics", metrics)
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), authorize));
    guarded
        .merge(page::routes())
        .fallback(|| async { ApiError::not_found("no such path") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// The fuzz target `api_input`: every parser of the API's input on arbitrary bytes (the
/// first line a path segment and a query string, the rest a request body), plus the small
/// parsers of the security review (URL redaction, name stripping, candidate filtering).
/// Each must answer (an error is fine), never panic.
#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
    for string_ids in [false, true] {
        let access = Access {
            tokens: vec![],
            server: "default".into(),
            string_ids,
            share_key: None,
        };
        if let Ok(room) = rooms::room_id(&access, first) {
            let _ = rooms::start_body(body.as_bytes(), room);
        }
    }
    let _ = crate::recordings::parse_id(first);
    let _ = crate::recordings::Cursor::decode(first);
    if let Ok(uri) = format!("/api/v1/recordings?{first}").parse::<axum::http::Uri>() {
        let _ = recordings::parse_query(&uri);
    }
    let _ = crate::janus::redacted(first);
    let _ = crate::text::strip_hazards(&text);
    let nets: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("a network")];
    let _ = crate::rtc::filter_sdp_candidates(&text, &nets);
    let _ = token_scope(&[], first);
}

/// The server could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve HTTP on {listen}: {source}")]
pub struct HttpError {
    pub listen: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Binds `listen` now (so an address in use is said at start) and serves on `runtime` (the
/// service's side runtime, not the recording one) until it is shut down.
pub fn start(
    listen: SocketAddr,
    api: Api,
    runtime: &tokio::runtime::Handle,
) -> Result<(), HttpError> {
    let err = |source| HttpError { listen, source };
    let std_listener = std::net::TcpListener::bind(listen).map_err(err)?;
    std_listener.set_nonblocking(true).map_err(err)?;
    let _entered = runtime.enter();
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(err)?;
    runtime.spawn(async move {
        let app = router(api).into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the HTTP server stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use axum::body::Body as HttpBody;
    use axum::http::Method;
    use tower::ServiceExt;

    fn api(tokens: Vec<TokenConfig>) -> Api {
        let dir = std::env::temp_dir().join(format!("jr-http-{}", std::process::id()));
        Api {
            access: Arc::new(RwLock::new(Access {
                tokens,
                server: "default".into(),
                string_ids: false,
                share_key: None,
            })),
            registry: Registry::open(vec![], None),
            health: Arc::default(),
            index: Arc::new(Index::new(dir)),
            uploads: crate::storage::Uploads::disabled(),
            events: Events::disabled(),
            metrics: None,
        }
    }

    fn token(t: &str, scope: Scope) -> TokenConfig {
        TokenConfig {
            name: None,
            token: Secret::new(t),
            scope,
        }
    }

    async fn send(
        app: &Router,
        method: Method,
        path: &str,
        peer: &str,
        auth: Option<&str>,
    ) -> (StatusCode, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, format!("Bearer {a}"));
        }
        let mut req = req.body(HttpBody::empty()).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(peer.parse().unwrap()));
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Every operation of the OpenAPI document is served by a route (not the fallback), and
    /// every route under /api/v1 is in the document.
    #[tokio::test]
    async fn the_document_and_the_routes_agree() {
        let (_, doc) = api_routes();
        let app = router(api(vec![]));
        let mut operations = 0;
        for (path, item) in &doc.paths.paths {
            let concrete = path
                .replace("{server}", "default")
                .replace("{room}", "1")
                .replace("{id}", "1~x");
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::DELETE, &item.delete),
                (Method::POST, &item.post),
            ] {
                if op.is_none() {
                    continue;
                }
                operations += 1;
                if path.ends_with("/events") {
                    continue; // a stream that never ends
                }
                let (status, body) =
                    send(&app, method.clone(), &concrete, "127.0.0.1:1", None).await;
                assert!(
                    status != StatusCode::METHOD_NOT_ALLOWED && !body.contains("no such path"),
                    "{method} {path}: {status} {body}"
                );
            }
        }
        let levels = &doc.paths.paths["/api/v1/recordings/{id}/levels"];
        let answers = &levels.get.as_ref().unwrap().responses.responses;
        assert!(
            ["200", "401", "403", "404"]
                .iter()
                .all(|s| answers.contains_key(*s)),
            "{:?}",
            answers.keys()
        );
        assert_eq!(operations, 13, "{:?}", doc.paths.paths.keys());
        // And the other way: an undocumented path under /api/v1 is the fallback's 404.
        let (status, body) = send(&app, Method::GET, "/api/v1/roomz", "127.0.0.1:1", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.contains("no such path"), "{body}");
        let (status, _) = send(&app, Method::POST, "/api/v1/rooms", "127.0.0.1:1", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    /// The page's cookies: a login cookie reads (never changes anything); a share cookie reads
    /// only what it shares, until it expires; without either, `/` is the login page.
    #[tokio::test]
    async fn page_cookies_read_and_share_links_open_only_their_target() {
        use crate::share::{Grant, ShareTarget};
        let key = Secret::new("share-key-0123456789");
        let a = api(vec![token("read-token-0123456789", Scope::Read)]);
        a.access.write().unwrap().share_key = Some(key.clone());
        let app = router(a);
        let with_cookie = |method: Method, path: &str, cookie: String| {
            let mut req = Request::builder()
                .method(method)
                .uri(path)
                .header(header::COOKIE, cookie)
                .body(HttpBody::empty())
                .unwrap();
            req.extensions_mut()
                .insert(ConnectInfo::<SocketAddr>("10.0.0.9:5".parse().unwrap()));
            let app = app.clone();
            async move {
                let r = app.oneshot(req).await.unwrap();
                let status = r.status();
                let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        let (status, body) = send(&app, Method::GET, "/", "10.0.0.9:5", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("id=\"login\""), "{body}");
        let login = "jr_token=read-token-0123456789".to_owned();
        let (status, body) = with_cookie(Method::GET, "/", login.clone()).await;
        assert!(
            status == StatusCode::OK && body.contains("id=\"main\""),
            "{body}"
        );
        assert_eq!(
            with_cookie(Method::GET, "/api/v1/rooms", login.clone())
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            with_cookie(Method::DELETE, "/api/v1/rooms/default/1", login)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            with_cookie(
                Method::GET,
                "/api/v1/rooms",
                "jr_token=wrong-0123456789".into()
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );
        let far = u64::MAX / 2;
        let room = Grant::sign(&key, ShareTarget::Room("12".into()), far);
        let shared = format!("jr_share={}", room.cookie_value());
        assert_eq!(
            with_cookie(Method::GET, "/api/v1/meetings?room=12", shared.clone())
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            with_cookie(Method::GET, "/api/v1/rooms", shared.clone())
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        let (status, body) = with_cookie(Method::GET, "/meetings", shared).await;
        assert!(
            status == StatusCode::OK && body.contains("id=\"main\""),
            "{body}"
        );
        let expired = Grant::sign(&key, ShareTarget::Room("12".into()), 1);
        let forged = Grant {
            expires: far,
            ..expired.clone()
        };
        for g in [&expired, &forged] {
            assert_eq!(
                with_cookie(
                    Method::GET,
                    "/api/v1/meetings?room=12",
                    format!("jr_share={}", g.cookie_value())
                )
                .await
                .0,
                StatusCode::UNAUTHORIZED
            );
            let (status, _) = send(
                &app,
                Method::GET,
                &format!("/share?{}", g.query()),
                "10.0.0.9:5",
                None,
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
        let (status, _) = send(
            &app,
            Method::GET,
            &format!("/share?{}", room.query()),
            "10.0.0.9:5",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }

    /// Without tokens only loopback peers are answered; with tokens, scopes decide.
    #[tokio::test]
    async fn access_by_peer_and_token() {
        let open = router(api(vec![]));
        assert_eq!(
            send(&open, Method::GET, "/api/v1/rooms", "127.0.0.1:5", None)
                .await
                .0,
            StatusCode::OK
        );
        assert_eq!(
            send(&open, Method::GET, "/api/v1/rooms", "[::1]:5", None)
                .await
                .0,
            StatusCode::OK
        );
        let (status, body) = send(&open, Method::GET, "/api/v1/rooms", "10.0.0.9:5", None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("\"code\":\"forbidden\""), "{body}");
        // Metrics are as open as their listener without tokens (no recorder here: 404, not
        // 403).
        let (status, _) = send(&open, Method::GET, "/metrics", "10.0.0.9:5", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let locked = router(api(vec![
            token("read-token-0123456789", Scope::Read),
            token("control-token-0123456789", Scope::Control),
        ]));
        let get = |auth| send(&locked, Method::GET, "/api/v1/rooms", "10.0.0.9:5", auth);
        assert_eq!(get(None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            get(Some("read-token-012345678")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(get(Some("read-token-0123456789")).await.0, StatusCode::OK);
        assert_eq!(
            get(Some("control-token-0123456789")).await.0,
            StatusCode::OK
        );
        let del = |auth| {
            send(
                &locked,
                Method::DELETE,
                "/api/v1/rooms/default/1",
                "10.0.0.9:5",
                auth,
            )
        };
        assert_eq!(
            del(Some("read-token-0123456789")).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            del(Some("control-token-0123456789")).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            send(&locked, Method::GET, "/metrics", "10.0.0.9:5", None)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
}
