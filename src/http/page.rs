//! The recordings page: static HTML, CSS and JavaScript from the binary, served at `/` (and
//! the app's own paths), a login that turns a token into a cookie, and share links
//! (`/share?...`, see [`crate::share`]) that set a cookie opening one recording or room.
//!
//! The cookies are HttpOnly and SameSite=Strict, Secure when the request came over TLS to a
//! proxy (`X-Forwarded-Proto: https` or `Forwarded: proto=https`). A cookie only ever reads
//! (see `check_access`): nothing that changes anything can be done with one.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{Api, check_access, token_scope};
use crate::config::Scope;
use crate::share::{Grant, GrantError, ShareTarget};

/// The cookie that holds a token after a login.
pub const TOKEN_COOKIE: &str = "jr_token";
/// The cookie that holds a share link's grant.
pub const SHARE_COOKIE: &str = "jr_share";

const INDEX_HTML: &str = include_str!("page/index.html");
const LOGIN_HTML: &str = include_str!("page/login.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// The page's paths: each serves the app (or the login page); the app reads the path.
const APP_PATHS: [&str; 5] = ["/", "/meetings", "/meeting/{id}", "/recording/{id}", "/now"];

/// What every page answer carries: no framing, no sniffing, no referrer (a share link's
/// signature stays out of other sites' logs), and a policy that runs only our own script.
fn page_headers(content_type: &'static str) -> [(header::HeaderName, HeaderValue); 5] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                 media-src 'self' blob:; object-src 'none'; base-uri 'none'; \
                 frame-ancestors 'none'; form-action 'self'",
            ),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// The value of cookie `name` in the request, if it has one.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the client reached us over TLS (through a proxy that says so).
fn over_tls(headers: &HeaderMap) -> bool {
    let proto = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    proto(header::HeaderName::from_static("x-forwarded-proto"))
        .is_some_and(|p| p.split(',').next().map(str::trim) == Some("https"))
        || proto(header::FORWARDED).is_some_and(|f| {
            f.split([';', ','])
                .any(|kv| kv.trim().replace('"', "") == "proto=https")
        })
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, Secure over TLS; `max_age`
/// seconds (0 deletes it).
fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if over_tls(headers) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

fn html(status: StatusCode, body: String) -> Response {
    (status, page_headers("text/html; charset=utf-8"), body).into_response()
}

/// The login page, with a message (plain text: escaped).
fn login_page(status: StatusCode, message: &str) -> Response {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    html(status, LOGIN_HTML.replace("{message}", &escaped))
}

/// The app for whoever may read (a token, a login cookie, a share cookie, or loopback without
/// tokens); the login page for anyone else.
async fn app(
    State(api): State<Api>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let access = api.access();
    let shared = cookie(req.headers(), SHARE_COOKIE)
        .and_then(Grant::from_cookie_value)
        .zip(access.share_key.as_ref())
        .is_some_and(|(g, key)| g.verify(key, SystemTime::now()).is_ok());
    if shared || check_access(&access, peer, &req, Scope::Read).is_ok() {
        html(StatusCode::OK, INDEX_HTML.to_owned())
    } else {
        login_page(StatusCode::OK, "")
    }
}

/// `POST /login`, a JSON body `{"token": "..."}`: a known token becomes the login cookie
/// (204), anything else is 401.
async fn login(headers: HeaderMap, State(api): State<Api>, body: axum::body::Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Login {
        token: String,
    }
    let token = serde_json::from_slice::<Login>(&body).map(|l| l.token);
    let access = api.access();
    match token {
        Ok(t)
            if !t.is_empty()
                && !t.contains([';', ',', ' ', '"', '\\'])
                && token_scope(&access.tokens, &t).is_some() =>
        {
            let cookie = set_cookie(&headers, TOKEN_COOKIE, &t, 30 * 24 * 3600);
            (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
        }
        _ => super::ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token")
            .into_response(),
    }
}

/// `POST /logout`: both cookies deleted.
async fn logout(headers: HeaderMap) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    for name in [TOKEN_COOKIE, SHARE_COOKIE] {
        r.headers_mut()
            .append(header::SET_COOKIE, set_cookie(&headers, name, "", 0));
    }
    r
}

/// `GET /share?recording=ID&expires=E&sig=S` (or `room=R`): a valid link sets the share
/// cookie until it expires and goes to what it shares; a wrong or expired one is 401.
async fn share(headers: HeaderMap, State(api): State<Api>, req: Request) -> Response {
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let target = param("recording")
        .and_then(|r| ShareTarget::parse("recording", r))
        .or_else(|| param("room").and_then(|r| ShareTarget::parse("room", r)));
    let grant = target
        .zip(param("expires").and_then(|e| e.parse().ok()))
        .map(|(target, expires)| Grant {
            target,
            expires,
            signature: param("sig").unwrap_or("").to_owned(),
        });
    let now = SystemTime::now();
    let checked = match (grant, api.access().share_key) {
        (Some(g), Some(key)) => g.verify(&key, now).map(|()| g),
        _ => Err(GrantError::Invalid),
    };
    match checked {
        Ok(g) => {
            let left = g.expires.saturating_sub(
                now.duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs(),
            );
            let to = match &g.target {
                ShareTarget::Recording(id) => format!("/recording/{id}"),
                ShareTarget::Room(room) => format!("/meetings?room={room}&shared=1"),
            };
            let location = HeaderValue::from_str(&to).unwrap_or(HeaderValue::from_static("/"));
            (
                StatusCode::SEE_OTHER,
                [
                    (
                        header::SET_COOKIE,
                        set_cookie(&headers, SHARE_COOKIE, &g.cookie_value(), left),
                    ),
                    (header::LOCATION, location),
                    (
                        header::REFERRER_POLICY,
                        HeaderValue::from_static("no-referrer"),
                    ),
                ],
            )
                .into_response()
        }
        Err(e) => html(
            StatusCode::UNAUTHORIZED,
            LOGIN_HTML.replace("{message}", &e.to_string()),
        ),
    }
}

/// One static file of the page.
fn asset(content_type: &'static str, body: &'static str) -> axum::routing::MethodRouter<Api> {
    get(move || async move { (page_headers(content_type), body) })
}

/// The page's routes (outside the API's access check: each decides for itself).
pub(super) fn routes() -> Router<Api> {
    let mut r = Router::new()
        .route(
            "/login",
            get(|| async { login_page(StatusCode::OK, "") }).post(login),
        )
        .route("/logout", post(logout))
        .route("/share", get(share))
        .route(
            "/assets/app.js",
            asset("text/javascript; charset=utf-8", APP_JS),
        )
        .route(
            "/assets/style.css",
            asset("text/css; charset=utf-8", STYLE_CSS),
        );
    for path in APP_PATHS {
        r = r.route(path, get(app));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_tls() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; jr_token=abc; b=2"),
        );
        assert_eq!(cookie(&h, TOKEN_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, SHARE_COOKIE), None);
        assert!(!over_tls(&h));
        let plain = set_cookie(&h, "x", "y", 5);
        assert_eq!(
            plain.to_str().unwrap(),
            "x=y; Path=/; HttpOnly; SameSite=Strict; Max-Age=5"
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(over_tls(&h));
        assert!(
            set_cookie(&h, "x", "y", 5)
                .to_str()
                .unwrap()
                .ends_with("; Secure")
        );
        let mut f = HeaderMap::new();
        f.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=1.2.3.4;proto=https"),
        );
        assert!(over_tls(&f));
    }
}
