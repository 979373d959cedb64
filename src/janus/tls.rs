//! TLS for `wss://` Janus servers: rustls with the aws-lc-rs provider (the one str0m already
//! builds), trusting the system's CA store plus an optional private CA file.
//!
//! The provider is named explicitly for every client config rather than taken from rustls's
//! process-wide default, which is unset unless someone installs it: the first handshake then
//! panics (how `wss://` once crashed the daemon).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

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
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, String> {
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
        if let Some(path) = &self.ca_file {
            for cert in read_ca_file(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
            }
        } else if added == 0 {
            return Err(
                "no CA certificates: the system store is empty (install ca-certificates) \
                 and no ca_file is set"
                    .into(),
            );
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// The certificates of a PEM file; an error names the file and what is wrong with it.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let fail = |e: String| format!("{}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(pem_error(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(pem_error(e)))?;
    if certs.is_empty() {
        return Err(fail(
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        ));
    }
    Ok(certs)
}

fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not a PEM file: {other:?}"),
    }
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
        assert!(
            e.contains("ca.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let missing = read_ca_file(&dir.join("missing.pem")).unwrap_err();
        assert!(missing.contains("missing.pem"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_client_config_is_built_without_a_process_default_provider() {
        // Would panic inside rustls if the provider were left to the process default.
        assert!(TlsTrust::default().client_config().is_ok());
    }
}
