//! Share links of the recordings page: `janus-recorder share RECORDING|ROOM --for 7d` prints a
//! URL that opens one recording, or every meeting of one room, without a token, until it
//! expires. The link carries what it shares, its expiry (Unix seconds) and an HMAC-SHA256 of
//! both with `[http] share_key`; opening it sets a cookie with the same three, checked again
//! on every request (see `crate::http`), so a changed key or a passed expiry ends it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use hmac::{Hmac, KeyInit, Mac};

use crate::config::{Config, EXIT_CONFIG};
use crate::secret::Secret;

type HmacSha256 = Hmac<sha2::Sha256>;

/// What a link shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareTarget {
    /// One recording, by its id (`<room directory>~<file stem>`).
    Recording(String),
    /// Every meeting and recording of one room, by its directory name.
    Room(String),
}

impl ShareTarget {
    /// `recording` or `room`: the query parameter and the first word of the signed text.
    pub fn kind(&self) -> &'static str {
        match self {
            ShareTarget::Recording(_) => "recording",
            ShareTarget::Room(_) => "room",
        }
    }

    /// The recording id or room directory.
    pub fn name(&self) -> &str {
        match self {
            ShareTarget::Recording(s) | ShareTarget::Room(s) => s,
        }
    }

    /// From a kind and name as a link carries them; names are checked like ids (no path can
    /// come from one).
    pub fn parse(kind: &str, name: &str) -> Option<ShareTarget> {
        match kind {
            "recording" => {
                crate::recordings::parse_id(name).map(|_| ShareTarget::Recording(name.to_owned()))
            }
            "room" => crate::recordings::parse_id(&format!("{name}~x"))
                .map(|_| ShareTarget::Room(name.to_owned())),
            _ => None,
        }
    }

    /// From the command line's argument: a recording id has a `~`, a room does not.
    pub fn from_arg(arg: &str) -> Option<ShareTarget> {
        if arg.contains('~') {
            ShareTarget::parse("recording", arg)
        } else {
            ShareTarget::parse("room", arg)
        }
    }
}

/// A signed grant: what, until when, and the signature (lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub target: ShareTarget,
    /// Unix seconds after which the grant is refused.
    pub expires: u64,
    pub signature: String,
}

/// Why a grant is refused (the page says which; both are 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("this share link is not valid")]
    Invalid,
    #[error("this share link has expired")]
    Expired,
}

fn mac(key: &Secret, target: &ShareTarget, expires: u64) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(key.expose().as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{}\n{}\n{expires}", target.kind(), target.name()).as_bytes());
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Grant {
    /// Signs `target` until `expires` with `key`.
    pub fn sign(key: &Secret, target: ShareTarget, expires: u64) -> Grant {
        let signature = hex(&mac(key, &target, expires).finalize().into_bytes());
        Grant {
            target,
            expires,
            signature,
        }
    }

    /// Checks the signature (in constant time) and the expiry at `now`.
    pub fn verify(&self, key: &Secret, now: SystemTime) -> Result<(), GrantError> {
        use subtle::ConstantTimeEq;
        let expected = hex(&mac(key, &self.target, self.expires).finalize().into_bytes());
        if !bool::from(expected.as_bytes().ct_eq(self.signature.as_bytes())) {
            return Err(GrantError::Invalid);
        }
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if now >= self.expires {
            return Err(GrantError::Expired);
        }
        Ok(())
    }

    /// The link's query string: `recording=ID&expires=E&sig=HEX` (ids need no escaping).
    pub fn query(&self) -> String {
        format!(
            "{}={}&expires={}&sig={}",
            self.target.kind(),
            self.target.name(),
            self.expires,
            self.signature
        )
    }

    /// The cookie's value: `kind:name:expires:sig` (no character a cookie cannot hold).
    pub fn cookie_value(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.target.kind(),
            self.target.name(),
            self.expires,
            self.signature
        )
    }

    /// Parses [`Grant::cookie_value`] (the signature is checked by [`Grant::verify`]).
    pub fn from_cookie_value(v: &str) -> Option<Grant> {
        let mut parts = v.split(':');
        let (kind, name, expires, sig) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Grant {
            target: ShareTarget::parse(kind, name)?,
            expires: expires.parse().ok()?,
            signature: sig.to_owned(),
        })
    }

    /// Whether this grant lets a GET of `path` (with `query`) through: the shared recording's
    /// API paths, or every meeting and recording of the shared room, and the meetings list
    /// filtered to that room.
    pub fn allows(&self, path: &str, query: Option<&str>) -> bool {
        let id_ok = |id: &str| match &self.target {
            ShareTarget::Recording(r) => id == r,
            ShareTarget::Room(room) => id
                .split_once('~')
                .is_some_and(|(dir, _)| dir == room.as_str()),
        };
        if let Some(rest) = path.strip_prefix("/api/v1/recordings/") {
            let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
            return id_ok(id) && ["", "file", "sidecar", "timeline.svg", "levels"].contains(&tail);
        }
        let ShareTarget::Room(room) = &self.target else {
            return false;
        };
        if let Some(rest) = path.strip_prefix("/api/v1/meetings/") {
            let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
            return id_ok(id) && ["", "room.mkv"].contains(&tail);
        }
        if path == "/api/v1/meetings" {
            return query.is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.strip_prefix("room=") == Some(room.as_str()))
            });
        }
        false
    }
}

/// `janus-recorder share`'s arguments.
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// A recording id (`1234~4628025967289650-Alice-20261125T101500Z`) or a room (`1234`).
    pub what: String,
    /// How long the link works (`7d`, `12h`, `30m`).
    #[arg(long = "for", default_value = "7d", value_parser = humantime::parse_duration)]
    pub valid_for: Duration,
    /// The daemon's config file (its `[http] share_key` and `listen`).
    #[arg(long, default_value = "/etc/janus-recorder/config.toml")]
    pub config: PathBuf,
    /// The page's address as people reach it (default: `http://` and `[http] listen`), e.g.
    /// `https://recordings.example.org`.
    #[arg(long)]
    pub base: Option<String>,
}

/// Prints the share link; 0, or [`EXIT_CONFIG`] (2) when the config has no share key or the
/// argument names no recording or room.
pub fn run(args: &ShareArgs) -> i32 {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_CONFIG;
        }
    };
    let Some(key) = config.share_key() else {
        eprintln!(
            "no share key: set [http] share_key in {}",
            args.config.display()
        );
        return EXIT_CONFIG;
    };
    let Some(target) = ShareTarget::from_arg(&args.what) else {
        eprintln!(
            "{:?} is neither a recording id (ROOM~STEM) nor a room",
            args.what
        );
        return EXIT_CONFIG;
    };
    let base = match (&args.base, config.http_listen()) {
        (Some(b), _) => b.trim_end_matches('/').to_owned(),
        (None, Some(listen)) => format!("http://{listen}"),
        (None, None) => {
            eprintln!("no [http] listen: give --base");
            return EXIT_CONFIG;
        }
    };
    let expires = (SystemTime::now() + args.valid_for)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let grant = Grant::sign(key, target, expires);
    println!("{base}/share?{}", grant.query());
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_grants_verify_until_they_expire() {
        let key = Secret::new("a-share-key-0123456789");
        let t = ShareTarget::from_arg("1234~7-Alice-20261201T000000Z").unwrap();
        let g = Grant::sign(&key, t, 1000);
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(g.verify(&key, at(999)), Ok(()));
        assert_eq!(g.verify(&key, at(1000)), Err(GrantError::Expired));
        assert_eq!(
            g.verify(&Secret::new("another-key-0123456789"), at(1)),
            Err(GrantError::Invalid)
        );
        let mut later = g.clone();
        later.expires = 2000;
        assert_eq!(later.verify(&key, at(1)), Err(GrantError::Invalid));
        let back = Grant::from_cookie_value(&g.cookie_value()).unwrap();
        assert_eq!(back, g);
        assert!(Grant::from_cookie_value("room:../etc:1:ab").is_none());
        assert!(ShareTarget::from_arg("a/b").is_none());
    }

    #[test]
    fn grants_open_only_what_they_share() {
        let key = Secret::new("a-share-key-0123456789");
        let rec = Grant::sign(&key, ShareTarget::from_arg("12~a-b").unwrap(), 1);
        assert!(rec.allows("/api/v1/recordings/12~a-b", None));
        assert!(rec.allows("/api/v1/recordings/12~a-b/file", None));
        assert!(!rec.allows("/api/v1/recordings/12~a-c/file", None));
        assert!(!rec.allows("/api/v1/recordings/12~a-b/../x", None));
        assert!(!rec.allows("/api/v1/meetings", Some("room=12")));
        assert!(!rec.allows("/api/v1/rooms", None));
        let room = Grant::sign(&key, ShareTarget::from_arg("12").unwrap(), 1);
        assert!(room.allows("/api/v1/meetings", Some("room=12")));
        assert!(!room.allows("/api/v1/meetings", Some("room=13")));
        assert!(!room.allows("/api/v1/meetings", None));
        assert!(room.allows("/api/v1/meetings/12~20261201T000000Z", None));
        assert!(!room.allows("/api/v1/meetings/120~20261201T000000Z", None));
        assert!(room.allows("/api/v1/meetings/12~20261201T000000Z/room.mkv", None));
        assert!(!room.allows("/api/v1/meetings/12~20261201T000000Z/x", None));
        assert!(room.allows("/api/v1/recordings/12~x/file", None));
        assert!(!room.allows("/api/v1/recordings/1~x/file", None));
    }
}
