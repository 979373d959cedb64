//! [`Secret`]: credentials (Janus's `api_secret`, tokens, room PINs) kept out of logs. Its own
//! module so that the config (which reads them) and the Janus client (which sends them) both
//! use it without the client depending on the config.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

std::thread_local! {
    /// Whether secrets from files and the environment are read (see [`unresolved`]).
    static RESOLVE: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// What a secret from a file or the environment holds while [`unresolved`] runs: long enough
/// for every length check, and saying what it is if it ever shows.
pub const UNRESOLVED: &str = "(not read: config check --skip-secrets)";

/// Runs `f` (a config parse) without reading secrets from files or the environment: they
/// are taken as [`UNRESOLVED`]. For `config check --skip-secrets`, which the package runs as
/// root outside the unit, where the unit's environment and credentials are not.
pub fn unresolved<T>(f: impl FnOnce() -> T) -> T {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            RESOLVE.with(|r| r.set(true));
        }
    }
    RESOLVE.with(|r| r.set(false));
    let _restore = Restore;
    f()
}

/// A secret given in the config text (`"..."`), read from a file (`{ file = "/run/x" }`, one
/// trailing newline dropped) or from an environment variable (`{ env = "NAME" }`), so it need
/// not sit in the config. It is read when the config is loaded (and on every reload); its
/// `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        use serde::de::Error;
        const EXPECTED: &str = r#"expected a string, { file = "PATH" } or { env = "NAME" }"#;
        let value = toml::Value::deserialize(d)?;
        match value {
            toml::Value::String(s) => Ok(Secret(s)),
            toml::Value::Table(t) if t.len() == 1 => match t.iter().next() {
                Some((k, toml::Value::String(_)))
                    if (k == "file" || k == "env") && !RESOLVE.with(|r| r.get()) =>
                {
                    Ok(Secret(UNRESOLVED.to_owned()))
                }
                Some((k, toml::Value::String(path))) if k == "file" => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| D::Error::custom(format!("cannot read {path}: {e}")))?;
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    Ok(Secret(text.strip_suffix('\r').unwrap_or(text).to_owned()))
                }
                Some((k, toml::Value::String(name))) if k == "env" => {
                    std::env::var(name).map(Secret).map_err(|_| {
                        D::Error::custom(format!("environment variable {name} is not set"))
                    })
                }
                _ => Err(D::Error::custom(EXPECTED)),
            },
            _ => Err(D::Error::custom(EXPECTED)),
        }
    }
}

/// From the command line or the environment (`janus-recorder publish`).
impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::new(s))
    }
}
