//! Which session a datagram on the shared socket belongs to. A STUN request names its target
//! by our ICE username fragment (`USERNAME = "<our ufrag>:<their ufrag>"`); everything else
//! (STUN responses, DTLS, SRTP) by the remote address, learnt from those requests and from
//! the STUN checks a session sends.

use foldhash::HashMap;
use std::net::SocketAddr;

/// A session (one str0m `Rtc`) of the media loop; not Janus's session id ([`crate::ids::SessionId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RtcId(pub u64);

/// STUN's USERNAME attribute (RFC 8489 section 14.3).
const USERNAME: u16 = 0x0006;
/// STUN's magic cookie, at bytes 4..8 of every STUN message.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// Whether `data` is a STUN message (RFC 7983: first byte 0..=3, and the magic cookie).
pub fn is_stun(data: &[u8]) -> bool {
    data.len() >= 20 && data[0] < 4 && data[4..8] == MAGIC_COOKIE
}

/// The ufrag of the receiving side named in a STUN message's USERNAME (the part before the
/// colon), if it has one. Every length is checked: the datagram comes from the network.
pub fn stun_target_ufrag(data: &[u8]) -> Option<&str> {
    if !is_stun(data) {
        return None;
    }
    let body_len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + body_len)?;
    let mut at = 0;
    while let Some(header) = body.get(at..at + 4) {
        let kind = u16::from_be_bytes([header[0], header[1]]);
        let len = u16::from_be_bytes([header[2], header[3]]) as usize;
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            return name.split(':').next();
        }
        // Attributes are padded to 4 bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// The routing table of one media loop.
#[derive(Debug, Default)]
pub struct Routes {
    by_ufrag: HashMap<String, RtcId>,
    /// (our socket, remote address) to session.
    by_addr: HashMap<(usize, SocketAddr), RtcId>,
    /// What each session owns, so closing it forgets all of it.
    owned: HashMap<RtcId, Vec<(usize, SocketAddr)>>,
}

impl Routes {
    /// A new session, known by its ufrag.
    pub fn add_session(&mut self, id: RtcId, ufrag: &str) {
        self.by_ufrag.insert(ufrag.to_owned(), id);
        self.owned.entry(id).or_default();
    }

    /// Forgets a session and every address routed to it.
    pub fn remove_session(&mut self, id: RtcId) {
        self.by_ufrag.retain(|_, s| *s != id);
        for key in self.owned.remove(&id).unwrap_or_default() {
            if self.by_addr.get(&key) == Some(&id) {
                self.by_addr.remove(&key);
            }
        }
    }

    /// Routes `remote` on `socket` to `id` from now on (the latest STUN exchange wins).
    pub fn learn(&mut self, socket: usize, remote: SocketAddr, id: RtcId) {
        let key = (socket, remote);
        if self.by_addr.get(&key) == Some(&id) {
            return;
        }
        if let Some(previous) = self.by_addr.insert(key, id)
            && let Some(keys) = self.owned.get_mut(&previous)
        {
            keys.retain(|k| *k != key);
        }
        if let Some(keys) = self.owned.get_mut(&id) {
            keys.push(key);
        }
    }

    /// The session a datagram from `remote` on `socket` belongs to. A STUN request naming a
    /// known ufrag also routes its source address to that session.
    pub fn route(&mut self, socket: usize, remote: SocketAddr, data: &[u8]) -> Option<RtcId> {
        if let Some(ufrag) = stun_target_ufrag(data)
            && let Some(&id) = self.by_ufrag.get(ufrag)
        {
            self.learn(socket, remote, id);
            return Some(id);
        }
        self.by_addr.get(&(socket, remote)).copied()
    }

    /// How many sessions are known.
    #[cfg(test)]
    pub fn sessions(&self) -> usize {
        self.owned.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN binding request with the given attributes (type, value).
    fn stun(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attrs {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn the_target_ufrag_is_read_after_other_attributes() {
        // PRIORITY first (4 bytes), then a 5-byte ICE-CONTROLLING-like value that needs padding.
        let m = stun(&[
            (0x0024, &[0, 0, 0, 1]),
            (0x802A, &[1, 2, 3, 4, 5]),
            (USERNAME, b"ours1234:theirs"),
        ]);
        assert_eq!(stun_target_ufrag(&m), Some("ours1234"));
        assert_eq!(stun_target_ufrag(&stun(&[(0x0024, &[0, 0, 0, 1])])), None);
    }

    #[test]
    fn hostile_stun_is_refused_without_panic() {
        let good = stun(&[(USERNAME, b"abc:def")]);
        for cut in 0..good.len() {
            let _ = stun_target_ufrag(&good[..cut]);
        }
        let mut long = good.clone();
        long[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(stun_target_ufrag(&long), None);
        let mut attr_too_long = good.clone();
        attr_too_long[22..24].copy_from_slice(&500u16.to_be_bytes());
        assert_eq!(stun_target_ufrag(&attr_too_long), None);
        let mut not_utf8 = good;
        not_utf8[24] = 0xff;
        assert_eq!(stun_target_ufrag(&not_utf8), None);
        // DTLS and RTP first bytes are never STUN.
        assert!(!is_stun(&[22; 40]));
        assert!(!is_stun(&[0x80; 40]));
    }

    #[test]
    fn requests_teach_addresses_and_closing_forgets_them() {
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:4001".parse().unwrap();
        let mut r = Routes::default();
        r.add_session(RtcId(1), "one");
        r.add_session(RtcId(2), "two");
        // Unknown address, not STUN: nobody's.
        assert_eq!(r.route(0, a, &[0x80; 40]), None);
        // A request for "one" from a: a belongs to 1 from now on.
        assert_eq!(
            r.route(0, a, &stun(&[(USERNAME, b"one:x")])),
            Some(RtcId(1))
        );
        assert_eq!(r.route(0, a, &[0x80; 40]), Some(RtcId(1)));
        // Another socket is another route.
        assert_eq!(r.route(1, a, &[0x80; 40]), None);
        // Session 2 sends a check to b: b's answers are 2's.
        r.learn(0, b, RtcId(2));
        assert_eq!(r.route(0, b, &[22; 40]), Some(RtcId(2)));
        // a moves to session 2 (a new ICE exchange); closing 1 must not take a with it.
        assert_eq!(
            r.route(0, a, &stun(&[(USERNAME, b"two:y")])),
            Some(RtcId(2))
        );
        r.remove_session(RtcId(1));
        assert_eq!(r.route(0, a, &[0x80; 40]), Some(RtcId(2)));
        r.remove_session(RtcId(2));
        assert_eq!(r.route(0, a, &[0x80; 40]), None);
        assert_eq!(r.route(0, b, &[0x80; 40]), None);
        assert_eq!(r.route(0, a, &stun(&[(USERNAME, b"two:y")])), None);
        assert_eq!(r.sessions(), 0);
    }
}
