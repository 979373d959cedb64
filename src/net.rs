//! The media side's addresses: which UDP sockets a str0m session opens, and this host's
//! interface addresses (what Janus itself offers by default).

use std::net::{IpAddr, SocketAddr};

/// One UDP socket of a session: the address it binds and the host candidate Janus is told
/// (they differ behind 1:1 NAT, where the socket binds a private address and Janus is told
/// the public one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketSpec {
    pub bind: SocketAddr,
    pub advertise: SocketAddr,
}

/// The sockets every session opens, one per advertised address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketPlan(Vec<SocketSpec>);

impl SocketPlan {
    /// Sockets on ephemeral ports (port 0), one per advertised address, each bound to `bind`
    /// when that is a specific address, else to the advertised address itself.
    pub fn new(bind: Option<IpAddr>, advertise: &[IpAddr]) -> SocketPlan {
        let specific = bind.filter(|ip| !ip.is_unspecified());
        SocketPlan(
            advertise
                .iter()
                .map(|&adv| SocketSpec {
                    bind: SocketAddr::new(specific.unwrap_or(adv), 0),
                    advertise: SocketAddr::new(adv, 0),
                })
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = &SocketSpec> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The advertised addresses, for the log.
    pub fn advertised(&self) -> Vec<IpAddr> {
        self.0.iter().map(|s| s.advertise.ip()).collect()
    }
}

/// Every non-loopback, non-link-local interface address of this host.
pub fn interface_addresses() -> Vec<IpAddr> {
    let Ok(ifaces) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    ifaces
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
        .collect()
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}
