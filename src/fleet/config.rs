//! `[cluster]`: the etcd cluster a fleet of recorders shares its rooms through, this
//! instance's name in it, and the lease that holds its rooms.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// The lease TTL when `[cluster]` gives none.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// The shortest TTL accepted: renewing at a third of it and fencing at two thirds leaves
/// about a second to renew in.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(3);
/// Where every key of the fleet lives when `[cluster]` gives no `prefix`.
pub const DEFAULT_PREFIX: &str = "/janus-recorder";

/// `[cluster]`: several daemons configured with the same rooms share them, each room
/// recorded by the one instance holding its key in etcd.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// etcd's client URLs (`http://` or `https://`), e.g. `["http://10.0.0.5:2379"]`.
    pub endpoints: Vec<String>,
    /// This instance's name: unique in the fleet; it is in every key it holds and in the
    /// manifests of what it records.
    pub instance: String,
    /// How long the instance's rooms stay its own after it last renewed its lease (whole
    /// seconds, at least [`MIN_LEASE_TTL`]). It renews every third of it and stops
    /// recording at two thirds without a renewal.
    #[serde(default = "default_ttl", deserialize_with = "ttl")]
    pub lease_ttl: Duration,
    /// The key prefix the fleet shares (default [`DEFAULT_PREFIX`]): fleets with different
    /// prefixes share one etcd without seeing each other.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// A private CA for `https://` endpoints (PEM).
    pub ca_file: Option<PathBuf>,
    /// etcd's user and password (its auth), the password as a secret (`{ credential = .. }`,
    /// `{ file = .. }`, `{ env = .. }`).
    pub user: Option<String>,
    pub password: Option<Secret>,
}

fn default_ttl() -> Duration {
    DEFAULT_LEASE_TTL
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.into()
}

fn ttl<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    crate::config::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl ClusterConfig {
    /// What is wrong with it, if anything: the key (under `cluster.`) and the problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.endpoints.is_empty() {
            return Err(("endpoints", "at least one etcd endpoint is needed".into()));
        }
        for e in &self.endpoints {
            let url = reqwest::Url::parse(e)
                .map_err(|err| ("endpoints", format!("{e:?} is not a URL: {err}")))?;
            match url.scheme() {
                "http" => {}
                "https" if self.ca_file.is_some() => {}
                "https" => {
                    return Err((
                        "ca_file",
                        format!("{e} is https://: name the CA of etcd's certificate"),
                    ));
                }
                _ => {
                    return Err((
                        "endpoints",
                        format!("{e}: must start with http:// or https://"),
                    ));
                }
            }
            if url.host_str().is_none() || !url.username().is_empty() || url.password().is_some() {
                return Err((
                    "endpoints",
                    format!("{e}: a host (and no credentials: use user and password)"),
                ));
            }
        }
        if self.instance.is_empty()
            || !self
                .instance
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err((
                "instance",
                format!(
                    "{:?}: letters, digits, '-', '_' and '.' only (it is part of etcd keys)",
                    self.instance
                ),
            ));
        }
        if self.lease_ttl < MIN_LEASE_TTL || self.lease_ttl.subsec_nanos() != 0 {
            return Err((
                "lease_ttl",
                format!(
                    "{:?}: whole seconds, at least {MIN_LEASE_TTL:?}",
                    self.lease_ttl
                ),
            ));
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') {
            return Err((
                "prefix",
                format!(
                    "{:?}: starts with '/' and does not end with one",
                    self.prefix
                ),
            ));
        }
        if let Some(ca) = &self.ca_file {
            crate::janus::tls::read_ca_file(ca).map_err(|e| ("ca_file", e.to_string()))?;
            if self.endpoints.iter().all(|e| e.starts_with("http://")) {
                return Err(("ca_file", "is for https:// endpoints".into()));
            }
        }
        match (&self.user, &self.password) {
            (Some(_), None) => Err(("password", "user needs a password".into())),
            (None, Some(_)) => Err(("user", "password needs a user".into())),
            _ => Ok(()),
        }
    }

    /// How often the lease is renewed: a third of its TTL.
    pub fn renew_every(&self) -> Duration {
        self.lease_ttl / 3
    }

    /// How long without a renewal the instance goes on recording: two thirds of the TTL,
    /// so that it has stopped before etcd can let the lease expire and another take over.
    pub fn fence_after(&self) -> Duration {
        self.lease_ttl * 2 / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Result<ClusterConfig, String> {
        let text =
            format!("endpoints = [\"http://127.0.0.1:2379\"]\ninstance = \"rec-a\"\n{extra}");
        let c: ClusterConfig = toml::from_str(&text).map_err(|e| e.message().to_owned())?;
        c.validate().map_err(|(k, p)| format!("{k}: {p}"))?;
        Ok(c)
    }

    #[test]
    fn defaults_and_derived_times() {
        let c = parse("").unwrap();
        assert_eq!(c.lease_ttl, Duration::from_secs(10));
        assert_eq!(c.prefix, "/janus-recorder");
        assert_eq!(
            c.renew_every(),
            Duration::from_millis(3333) + Duration::from_nanos(333_333)
        );
        assert_eq!(c.fence_after(), Duration::from_nanos(6_666_666_666));
        assert_eq!(
            parse("lease_ttl = \"6s\"").unwrap().fence_after(),
            Duration::from_secs(4)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, want) in [
            ("lease_ttl = \"2s\"", "lease_ttl:"),
            ("lease_ttl = \"3500ms\"", "lease_ttl:"),
            ("lease_ttl = \"soon\"", "soon"),
            ("prefix = \"x/\"", "prefix:"),
            ("user = \"u\"", "password: user needs a password"),
            ("password = \"p\"", "user: password needs a user"),
        ] {
            let e = parse(extra).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let e = toml::from_str::<ClusterConfig>("endpoints = []\ninstance = \"a\"")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.0, "endpoints");
        let e =
            toml::from_str::<ClusterConfig>("endpoints = [\"https://e:2379\"]\ninstance = \"a\"")
                .unwrap()
                .validate()
                .unwrap_err();
        assert_eq!(e.0, "ca_file");
        let e = toml::from_str::<ClusterConfig>("endpoints = [\"http://e\"]\ninstance = \"a/b\"")
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.0, "instance");
    }
}
