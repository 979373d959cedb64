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

/// A secret given in the config text (`"..."`), read from a file (`{ file = "/run/x" }`),
/// from a systemd credential (`{ credential = "NAME" }`: the file `NAME` in
/// `$CREDENTIALS_DIRECTORY`, which `LoadCredential=NAME:/path` in the unit fills) or from an
/// environment variable (`{ env = "NAME" }`), so it need not sit in the config. Files and
/// credentials lose one trailing newline. It is read when the config is loaded (and on every
/// reload); its `Debug` never shows it.
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

/// Where a secret that is not written inline is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source<'a> {
    File(&'a str),
    Credential(&'a str),
    Env(&'a str),
}

/// Why a secret could not be read (the config error names the key).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
enum ReadError {
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error(
        "credential {0:?}: CREDENTIALS_DIRECTORY is not set (give the unit \
         LoadCredential={0}:/path/to/the/secret, or use {{ file = ... }} outside systemd)"
    )]
    NoCredentials(String),
    #[error("credential {0:?}: a credential name is one file name (no '/', not '.' or '..')")]
    BadCredentialName(String),
    #[error("environment variable {0} is not set")]
    NoEnv(String),
}

impl Source<'_> {
    /// Reads the secret; `credentials` is `$CREDENTIALS_DIRECTORY`, if set.
    fn read(self, credentials: Option<&std::ffi::OsStr>) -> Result<String, ReadError> {
        let from_file = |path: &std::path::Path| {
            let text = std::fs::read_to_string(path).map_err(|e| ReadError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
        };
        match self {
            Source::File(path) => from_file(std::path::Path::new(path)),
            Source::Credential(name) => {
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(ReadError::BadCredentialName(name.to_owned()));
                }
                let dir = credentials
                    .filter(|d| !d.is_empty())
                    .ok_or_else(|| ReadError::NoCredentials(name.to_owned()))?;
                from_file(&std::path::Path::new(dir).join(name))
            }
            Source::Env(name) => std::env::var(name).map_err(|_| ReadError::NoEnv(name.into())),
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        use serde::de::Error;
        const EXPECTED: &str =
            r#"expected a string, { file = "PATH" }, { credential = "NAME" } or { env = "NAME" }"#;
        let value = toml::Value::deserialize(d)?;
        let table = match value {
            toml::Value::String(s) => return Ok(Secret(s)),
            toml::Value::Table(t) if t.len() == 1 => t,
            _ => return Err(D::Error::custom(EXPECTED)),
        };
        let source = match table.iter().next() {
            Some((k, toml::Value::String(v))) => match k.as_str() {
                "file" => Source::File(v),
                "credential" => Source::Credential(v),
                "env" => Source::Env(v),
                _ => return Err(D::Error::custom(EXPECTED)),
            },
            _ => return Err(D::Error::custom(EXPECTED)),
        };
        if !RESOLVE.with(|r| r.get()) {
            return Ok(Secret(UNRESOLVED.to_owned()));
        }
        let credentials = std::env::var_os("CREDENTIALS_DIRECTORY");
        source
            .read(credentials.as_deref())
            .map(Secret)
            .map_err(D::Error::custom)
    }
}

/// The fuzz target `secret_source`: a secret as the config gives it (TOML text, also read
/// without resolving, as `--skip-secrets` does), a credential name against a directory that
/// does not exist, and the terminal escaping of what errors say. Each must answer (an error
/// is fine), never panic. Nothing is read but that missing directory.
#[doc(hidden)]
pub fn fuzz_input(data: &[u8]) {
    #[derive(Deserialize)]
    struct Holder {
        #[allow(dead_code)]
        s: Secret,
    }
    let text = String::from_utf8_lossy(data);
    let _ = unresolved(|| toml::from_str::<Holder>(&text).map_err(|e| e.to_string()));
    // Resolving reads files: not `{ file }` (it could name /dev/zero); credentials' names
    // never leave their directory, and the fuzzer has none.
    let reads_a_file = toml::from_str::<toml::Table>(&text).is_ok_and(
        |t| matches!(t.get("s"), Some(toml::Value::Table(source)) if source.contains_key("file")),
    );
    if !reads_a_file {
        let _ = toml::from_str::<Holder>(&text);
    }
    let missing = std::ffi::OsStr::new("/nonexistent/janus-recorder-fuzz");
    if let Err(e) = Source::Credential(&text).read(Some(missing)) {
        let _ = crate::text::escape_lines(&e.to_string());
    }
}

/// From the command line or the environment (`janus-recorder publish`).
impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// `{ credential = "NAME" }` reads `$CREDENTIALS_DIRECTORY/NAME` (what `LoadCredential=`
    /// fills), one trailing newline dropped; a name cannot leave that directory, and without
    /// the directory the error says what to add to the unit.
    #[test]
    fn credentials_come_from_the_credentials_directory() {
        let dir = std::env::temp_dir().join(format!("jr-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("api_secret"), "janusrocks\n").unwrap();
        let creds = Some(dir.as_os_str());
        assert_eq!(
            Source::Credential("api_secret").read(creds).unwrap(),
            "janusrocks"
        );
        let missing = Source::Credential("token").read(creds).unwrap_err();
        assert!(missing.to_string().contains("token"), "{missing}");
        for bad in ["../etc/shadow", "/etc/shadow", "..", ".", ""] {
            assert_eq!(
                Source::Credential(bad).read(creds),
                Err(ReadError::BadCredentialName(bad.into()))
            );
        }
        let unset = Source::Credential("api_secret").read(None).unwrap_err();
        assert!(
            unset.to_string().contains("LoadCredential=api_secret:"),
            "{unset}"
        );
        assert!(
            Source::Credential("api_secret")
                .read(Some(OsStr::new("")))
                .is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The config's forms, and `--skip-secrets` reading none of them.
    #[test]
    fn parses_every_form() {
        #[derive(Deserialize)]
        struct T {
            s: Secret,
        }
        let parse = |text: &str| toml::from_str::<T>(text).map(|t| t.s);
        assert_eq!(parse(r#"s = "x""#).unwrap().expose(), "x");
        let e = parse(r#"s = { credential = "surely-not-set-anywhere" }"#)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("surely-not-set-anywhere"), "{e}");
        assert!(parse(r#"s = { vault = "x" }"#).is_err());
        assert!(parse(r#"s = { file = "a", env = "b" }"#).is_err());
        let skipped = unresolved(|| parse(r#"s = { credential = "api_secret" }"#));
        assert_eq!(skipped.unwrap().expose(), UNRESOLVED);
    }
}
