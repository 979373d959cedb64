//! Typed identifiers. Janus uses numeric ids by default and strings when a room is configured
//! with `string_ids = true`; both forms are kept exactly as Janus sent them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Janus id that is either a number or (with `string_ids`) a string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum JanusId {
    Num(u64),
    Str(String),
}

/// For people (logs, STATUS, metrics labels, the terminal): a string id's control
/// characters and bidi overrides escaped, as peer text always is (see [`crate::text`]); a
/// string id comes from whoever created the room or joined it. JSON carries the id as it is.
impl fmt::Display for JanusId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JanusId::Num(n) => write!(f, "{n}"),
            JanusId::Str(s) => crate::text::Escaped(s).fmt(f),
        }
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub JanusId);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<u64> for $name {
            fn from(n: u64) -> Self {
                $name(JanusId::Num(n))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(JanusId::Str(s.to_owned()))
            }
        }
    };
}

id_type!(
    /// A VideoRoom room id (`room`).
    RoomId
);
id_type!(
    /// A VideoRoom participant/publisher id (`id`, `feed`).
    FeedId
);

/// A Janus session id (always numeric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub u64);

/// A Janus plugin handle id (always numeric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HandleId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for HandleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_and_string_ids_round_trip() {
        let n: RoomId = serde_json::from_str("1234").unwrap();
        assert_eq!(n, RoomId::from(1234));
        let s: RoomId = serde_json::from_str("\"hearing-7\"").unwrap();
        assert_eq!(s, RoomId::from("hearing-7"));
        assert_eq!(serde_json::to_string(&n).unwrap(), "1234");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"hearing-7\"");
        // Janus ids exceed 2^53; they must survive exactly.
        let big: FeedId = serde_json::from_str("7761355596944940123").unwrap();
        assert_eq!(big.to_string(), "7761355596944940123");
    }

    /// A string id cannot forge a log line or drive a terminal (before: written raw).
    #[test]
    fn string_ids_are_shown_escaped() {
        assert_eq!(FeedId::from("alice").to_string(), "alice");
        assert_eq!(
            FeedId::from("x\n2026 ERROR forged\u{1b}[2J").to_string(),
            "x\\n2026 ERROR forged\\u{1b}[2J"
        );
        let json = serde_json::to_string(&FeedId::from("a\nb")).unwrap();
        assert_eq!(json, "\"a\\nb\"", "JSON keeps the id as it is");
    }
}
