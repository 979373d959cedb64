//! The Janus API client: WebSocket transport, transactions, keepalive ([`client`]), TLS trust for `wss://` ([`tls`]) and the
//! parsed form of everything Janus sends ([`messages`]).

pub mod client;
pub mod messages;
pub mod tls;
pub mod videoroom;

pub use client::{Auth, Handle, JanusError, Session};
pub use tls::TlsTrust;

/// A Janus URL as it may be shown (logs, room manifests, errors): without user info and
/// query, which can hold credentials (`ws://user:pw@host/?token=...`).
pub fn redacted(url: &str) -> String {
    let Ok(mut u) = reqwest::Url::parse(url) else {
        // Not a URL we could connect to anyway; its text may still hold secrets.
        return "(a URL that does not parse)".into();
    };
    let had_user = !u.username().is_empty() || u.password().is_some();
    let had_query = u.query().is_some();
    if !had_user && !had_query && u.fragment().is_none() {
        return url.to_owned(); // as written: nothing to hide
    }
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    let mut s = u.to_string();
    if had_user && let Some(i) = s.find("://") {
        s.insert_str(i + 3, "(redacted)@");
    }
    if had_query {
        s.push_str("?(redacted)");
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_in_urls_are_redacted() {
        use super::redacted;
        assert_eq!(redacted("ws://127.0.0.1:8188"), "ws://127.0.0.1:8188");
        assert_eq!(
            redacted("wss://user:pw@janus.example.org/ws?token=s3cret#x"),
            "wss://(redacted)@janus.example.org/ws?(redacted)"
        );
        assert!(!redacted("ws://a:b@h/?t=s3cret").contains("s3cret"));
        assert_eq!(redacted("not a url s3cret"), "(a URL that does not parse)");
    }
}
