//! `[storage]`: where finished recordings are uploaded (an S3-compatible bucket), how object
//! keys are made ([`KeyTemplate`]) and what happens to the local copy ([`KeepLocal`]).

use std::fmt;

use serde::Deserialize;

use crate::secret::Secret;

/// The key template used when `[storage]` gives none.
pub const DEFAULT_KEY: &str = "{room}/{date}/{file}";

/// `[storage]`: an S3-compatible bucket the finished recordings go to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `http://` or `https://` URL of the S3 API (an S3-compatible server). Unset: AWS S3
    /// for `region`.
    pub endpoint: Option<String>,
    /// The bucket's region (default `us-east-1`; Garage's default is `garage`).
    #[serde(default = "default_region")]
    pub region: String,
    pub bucket: String,
    /// Address the bucket as `ENDPOINT/BUCKET/KEY` (most self-hosted servers) instead of
    /// `BUCKET.ENDPOINT/KEY`.
    #[serde(default)]
    pub path_style: bool,
    /// How each file's object key is made (default [`DEFAULT_KEY`]).
    #[serde(default)]
    pub key: KeyTemplate,
    /// The access key id and secret key, as secrets (`{ env = .. }`, `{ file = .. }`,
    /// `{ credential = .. }`). Both unset: the usual AWS chain (`AWS_ACCESS_KEY_ID`...,
    /// the instance's role).
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    /// What happens to the local copy once it is uploaded and verified.
    #[serde(default)]
    pub keep_local: KeepLocal,
    /// The most bytes per second uploads may take (unset: as fast as the storage takes
    /// them), so that uploads leave room on a shared uplink.
    pub max_bytes_per_second: Option<std::num::NonZeroU64>,
}

fn default_region() -> String {
    "us-east-1".into()
}

impl StorageConfig {
    /// What is wrong with it, if anything: the key (under `storage.`) and the problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(endpoint) = &self.endpoint {
            let url = reqwest::Url::parse(endpoint)
                .map_err(|e| ("endpoint", format!("{endpoint:?} is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(("endpoint", "must start with http:// or https://".into()));
            }
            if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
                return Err((
                    "endpoint",
                    "must not hold credentials: use access_key_id and secret_access_key".into(),
                ));
            }
        }
        if self.region.is_empty() {
            return Err(("region", "must not be empty".into()));
        }
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self
                .bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !bucket_ok {
            return Err((
                "bucket",
                format!(
                    "{:?} is not a bucket name (3-63 lowercase letters, digits, '-' or '.')",
                    self.bucket
                ),
            ));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err((
                "secret_access_key",
                "access_key_id and secret_access_key go together (or neither, for the AWS chain)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// What happens to a recording's local files once they are uploaded and verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepLocal {
    /// `"keep"` (default): they stay (`[output] keep_days` may still delete them).
    #[default]
    Keep,
    /// `"until-uploaded"`: deleted as soon as the upload is verified.
    UntilUploaded,
    /// A number of days: deleted that long after they were last written, once uploaded.
    Days(std::num::NonZeroU32),
}

impl<'de> Deserialize<'de> for KeepLocal {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<KeepLocal, D::Error> {
        use serde::de::Error;
        let value = toml::Value::deserialize(d)?;
        match &value {
            toml::Value::String(s) if s == "keep" => Ok(KeepLocal::Keep),
            toml::Value::String(s) if s == "until-uploaded" => Ok(KeepLocal::UntilUploaded),
            toml::Value::Integer(n) => u32::try_from(*n)
                .ok()
                .and_then(std::num::NonZeroU32::new)
                .map(KeepLocal::Days)
                .ok_or_else(|| D::Error::custom(format!("{n} days: must be at least 1"))),
            _ => Err(D::Error::custom(format!(
                "expected \"keep\", \"until-uploaded\" or a number of days, not {value}"
            ))),
        }
    }
}

/// One placeholder of a [`KeyTemplate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Room,
    Date,
    Feed,
    Display,
    File,
}

impl Var {
    const ALL: [(&'static str, Var); 5] = [
        ("room", Var::Room),
        ("date", Var::Date),
        ("feed", Var::Feed),
        ("display", Var::Display),
        ("file", Var::File),
    ];
}

/// One piece of a [`KeyTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var),
}

/// An object key template such as `{room}/{date}/{file}`: text and the placeholders
/// `{room}`, `{date}` (`YYYY-MM-DD`, UTC, when the recording started), `{feed}`,
/// `{display}` and `{file}` (which it must hold, or two files would share a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    text: String,
    pieces: Vec<Piece>,
}

impl Default for KeyTemplate {
    fn default() -> KeyTemplate {
        DEFAULT_KEY.parse().expect("the default template parses")
    }
}

impl fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for KeyTemplate {
    type Err = String;

    fn from_str(text: &str) -> Result<KeyTemplate, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{text:?}: a '{{' without its '}}'"))?;
            let name = &rest[open + 1..open + close];
            let var = Var::ALL
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    format!(
                        "{text:?}: unknown placeholder {{{name}}} (known: {{room}}, {{date}}, \
                         {{feed}}, {{display}}, {{file}})"
                    )
                })?;
            pieces.push(Piece::Var(var));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{text:?}: a '}}' without its '{{'"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        if !pieces.contains(&Piece::Var(Var::File)) {
            return Err(format!(
                "{text:?} must hold {{file}}, or two recordings would share a key"
            ));
        }
        if text.starts_with('/') {
            return Err(format!("{text:?}: a key does not start with '/'"));
        }
        Ok(KeyTemplate {
            text: text.to_owned(),
            pieces,
        })
    }
}

impl<'de> Deserialize<'de> for KeyTemplate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<KeyTemplate, D::Error> {
        use serde::de::Error;
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// What a [`KeyTemplate`]'s placeholders stand for, for one file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyVars {
    pub room: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Empty for a room manifest.
    pub feed: String,
    pub display: String,
    /// The local file's name.
    pub file: String,
}

impl KeyTemplate {
    /// The object key for `vars`. Each value is made one path segment (`/` and control
    /// characters become `_`, `.` and `..` become `_`); segments left empty (a manifest's
    /// `{feed}`) are dropped.
    pub fn render(&self, vars: &KeyVars) -> String {
        let mut key = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => key.push_str(t),
                Piece::Var(v) => key.push_str(&segment(match v {
                    Var::Room => &vars.room,
                    Var::Date => &vars.date,
                    Var::Feed => &vars.feed,
                    Var::Display => &vars.display,
                    Var::File => &vars.file,
                })),
            }
        }
        key.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| if s == "." || s == ".." { "_" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// A value made safe as (part of) one key segment.
fn segment(value: &str) -> String {
    let s: String = value
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s == "." || s == ".." { "_".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> KeyVars {
        KeyVars {
            room: "1234".into(),
            date: "2026-12-05".into(),
            feed: "77".into(),
            display: "Ann/..".into(),
            file: "a.webm".into(),
        }
    }

    #[test]
    fn templates_render_each_placeholder_as_one_segment() {
        let t: KeyTemplate = "rec/{room}/{date}/{feed}-{display}/{file}".parse().unwrap();
        assert_eq!(t.render(&vars()), "rec/1234/2026-12-05/77-Ann_../a.webm");
        let manifest = KeyVars {
            feed: String::new(),
            display: String::new(),
            ..vars()
        };
        let t: KeyTemplate = "{room}/{feed}/{file}".parse().unwrap();
        assert_eq!(t.render(&manifest), "1234/a.webm");
        let dots = KeyVars {
            display: "..".into(),
            ..vars()
        };
        let t: KeyTemplate = "{display}/{file}".parse().unwrap();
        assert_eq!(t.render(&dots), "_/a.webm");
        assert_eq!(
            KeyTemplate::default().render(&vars()),
            "1234/2026-12-05/a.webm"
        );
    }

    #[test]
    fn bad_templates_say_why() {
        for (text, says) in [
            ("{room}/{date}", "must hold {file}"),
            ("{room}/{when}/{file}", "unknown placeholder {when}"),
            ("{room/{file}", "unknown placeholder"),
            ("{file", "without its '}'"),
            ("{file}}", "without its '{'"),
            ("/{file}", "does not start with '/'"),
        ] {
            let e = text.parse::<KeyTemplate>().unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
