//! TLS for `wss://` Janus servers: rustls with the aws-lc-rs provider (the one str0m already
//! builds), trusting the system's CA store plus an optional private CA file.
//!
//! The provider is named explicitly for every client config rather than taken from rustls's
//! process-wide default, which is unset unless someone installs it: the first handshake then
//! panics (how `wss://` once crashed the daemon).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};
use rustls::{ClientConfig, RootCertStore};

/// Why no TLS client config could be made, or a CA file cannot be used. The CA file
/// variants name the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No `ca_file`, and the system's CA store holds no usable certificate.
    #[error(
        "no CA certificates: the system store is empty (install ca-certificates) \
         and no ca_file is set"
    )]
    NoRoots,
    /// The CA file cannot be read.
    #[error("{}: {source}", path.display())]
    CaFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CA file is not PEM.
    #[error("{}: not a PEM file: {source:?}", path.display())]
    NotPem {
        path: PathBuf,
        #[source]
        source: pem::Error,
    },
    /// The CA file is PEM but holds no certificate.
    #[error("{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", path.display())]
    NoCertificate { path: PathBuf },
    /// rustls refused a certificate of the CA file as a trust anchor.
    #[error("{}: unusable CA certificate: {source}", path.display())]
    UnusableCertificate {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// rustls could not set up the protocol versions with the crypto provider.
    #[error("TLS set-up: {0}")]
    Setup(#[source] rustls::Error),
}

/// Which certificate authorities a `wss://` server's certificate may chain to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsTrust {
    /// A PEM file of extra CA certificates (a private CA), trusted beside the system's.
    pub ca_file: Option<PathBuf>,
}

impl TlsTrust {
    /// Trust the system's CA store and the certificates in `ca_file`, if any.
    pub fn new(ca_file: Option<PathBuf>) -> TlsTrust {
        TlsTrust { ca_file }
    }

    /// A rustls client config for one connection attempt. The CA file is read on every
    /// attempt, so a replaced file is picked up at the next reconnect; the system store is
    /// read once per process.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
        if let Some(path) = &self.ca_file {
            for cert in read_ca_file(path)? {
                roots
                    .add(cert)
                    .map_err(|source| TlsError::UnusableCertificate {
                        path: path.clone(),
                        source,
                    })?;
            }
        } else if added == 0 {
            return Err(TlsError::NoRoots);
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The certificates of a PEM file; an error names the file and what is wrong with it.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |e: pem::Error| match e {
        pem::Error::Io(source) => TlsError::CaFileUnreadable {
            path: path.to_path_buf(),
            source,
        },
        source => TlsError::NotPem {
            path: path.to_path_buf(),
            source,
        },
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(fail)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The system's CA certificates, loaded once (they are only read, and reading them takes a
/// while). Unreadable entries are logged and skipped.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!(error = %e, "a system CA certificate could not be loaded");
        }
        found.certs
    })
}

/// Warns when an `api_secret` or token would cross the network unencrypted.
pub fn warn_if_credentials_in_clear(url: &str, has_credentials: bool) {
    if has_credentials && plaintext_credentials_risk(url) {
        tracing::warn!(
            url = %crate::janus::redacted(url),
            "the api_secret/token will travel unencrypted over ws:// to a host that is not \
             this machine: use wss://"
        );
    }
}

/// Why sending credentials to `url` is unsafe: plain `ws://` to a host that is not loopback.
pub fn plaintext_credentials_risk(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("ws://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    !loopback
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_over_plain_ws_are_a_risk_only_off_loopback() {
        for url in [
            "ws://janus.example:8188",
            "ws://10.0.0.5:8188/",
            "ws://[2001:db8::1]:8188",
            "ws://user@janus.example",
        ] {
            assert!(plaintext_credentials_risk(url), "{url}");
        }
        for url in [
            "wss://janus.example:8989",
            "ws://127.0.0.1:8188",
            "ws://127.3.4.5",
            "ws://localhost:8188",
            "ws://[::1]:8188/janus",
        ] {
            assert!(!plaintext_credentials_risk(url), "{url}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_naming_it() {
        let dir = std::env::temp_dir().join(format!("jr-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = read_ca_file(&path).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("ca.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let missing = read_ca_file(&dir.join("missing.pem")).unwrap_err();
        assert!(
            matches!(missing, TlsError::CaFileUnreadable { .. }),
            "{missing:?}"
        );
        assert!(missing.to_string().contains("missing.pem"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_client_config_is_built_without_a_process_default_provider() {
        // Would panic inside rustls if the provider were left to the process default.
        assert!(TlsTrust::default().client_config().is_ok());
    }
}
