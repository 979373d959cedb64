//! Talking to systemd (`Type=notify`): READY, STATUS, WATCHDOG, RELOADING and STOPPING through
//! sd_notify (libsystemd, via the `systemd` crate). Outside systemd (no NOTIFY_SOCKET) every
//! call is a no-op.

use std::time::Duration;

/// Sends notifications; knows the watchdog interval systemd asked for.
#[derive(Debug, Clone)]
pub struct Notifier {
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads WATCHDOG_USEC (left in the environment: nothing here modifies it).
    pub fn from_env() -> Notifier {
        #[cfg(feature = "systemd")]
        let watchdog = systemd::daemon::watchdog_enabled()
            .ok()
            .filter(|usec| *usec > 0)
            .map(Duration::from_micros);
        #[cfg(not(feature = "systemd"))]
        let watchdog = None;
        Notifier { watchdog }
    }

    /// How often systemd expects WATCHDOG=1, if it does.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    pub fn ready(&self, status: &str) {
        send(&[("READY", "1"), ("STATUS", status)]);
    }

    pub fn status(&self, status: &str) {
        send(&[("STATUS", status)]);
    }

    pub fn watchdog(&self) {
        send(&[("WATCHDOG", "1")]);
    }

    pub fn reloading(&self) {
        send(&[("RELOADING", "1")]);
    }

    pub fn stopping(&self) {
        send(&[("STOPPING", "1"), ("STATUS", "finalizing recordings")]);
    }
}

/// Sends `KEY=value` lines. Values may carry peer text (Janus's reasons reach STATUS), so
/// control characters are escaped: a newline would add a line of its own (a forged
/// `WATCHDOG=1`), and a NUL would make libsystemd's wrapper panic.
#[cfg(feature = "systemd")]
fn send(state: &[(&str, &str)]) {
    let state: Vec<(&str, std::borrow::Cow<'_, str>)> = state
        .iter()
        .map(|(k, v)| (*k, crate::text::escape_control(v)))
        .collect();
    if let Err(e) = systemd::daemon::notify(state.iter()) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

#[cfg(not(feature = "systemd"))]
fn send(_state: &[(&str, &str)]) {}
