//! The media loop's UDP sockets: one per advertised address, bound with large buffers,
//! read in batches through quinn-udp (`recvmmsg`, GRO), and taken out of the runtime's epoll
//! in the loop's steady pace (it then reads on its tick only).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use quinn_udp::{RecvMeta, UdpSocketState};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::net::SocketSpec;

/// The socket buffers asked for: a second of 200 feeds' media.
const SOCKET_BUFFER: usize = 16 * 1024 * 1024;

/// A socket bound (outside any runtime) and the host candidate it is advertised as.
pub(super) struct Bound {
    socket: std::net::UdpSocket,
    state: UdpSocketState,
    pub advertised: SocketAddr,
}

impl Bound {
    /// Binds `spec`'s address on `port` (0: an ephemeral one), non-blocking, with large
    /// buffers.
    pub(super) fn bind(spec: &SocketSpec, port: u16) -> io::Result<Bound> {
        let bind = SocketAddr::new(spec.bind.ip(), port);
        let socket = std::net::UdpSocket::bind(bind)
            .map_err(|e| io::Error::new(e.kind(), format!("binding UDP {bind}: {e}")))?;
        socket.set_nonblocking(true)?;
        let state = UdpSocketState::new((&socket).into())?;
        no_control_messages(&socket);
        grow_buffers(&socket, &state);
        let advertised = SocketAddr::new(spec.advertise.ip(), socket.local_addr()?.port());
        Ok(Bound {
            socket,
            state,
            advertised,
        })
    }

    /// The socket in the runtime the loop runs on (watched by its epoll).
    pub(super) fn into_port(self) -> io::Result<Port> {
        Ok(Port {
            socket: PortSocket::Watched(UdpSocket::from_std(self.socket)?),
            state: self.state,
            advertised: self.advertised,
        })
    }
}

/// A socket on `addr` (port 0: an ephemeral one) that no runtime watches, non-blocking, with
/// large buffers, for a reader that reads on a tick of its own (the RTP forwarders' receiver).
pub(crate) fn bind_unwatched(
    addr: SocketAddr,
) -> io::Result<(std::net::UdpSocket, UdpSocketState)> {
    let socket = std::net::UdpSocket::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("binding UDP {addr}: {e}")))?;
    socket.set_nonblocking(true)?;
    let state = UdpSocketState::new((&socket).into())?;
    no_control_messages(&socket);
    grow_buffers(&socket, &state);
    Ok((socket, state))
}

/// Turns off the per-datagram control messages quinn-udp asks the kernel for and nothing
/// here reads: the destination address (each socket is bound to one), the TOS/ECN byte and
/// a receive timestamp. The kernel built and copied three of them for every datagram
/// (`put_cmsg`, `__sock_recv_timestamp`: about 3% of the daemon's CPU at 50 forwarded
/// feeds). UDP GRO's segment size stays on: it is how a coalesced read is split.
fn no_control_messages(socket: &std::net::UdpSocket) {
    for (level, name) in [
        (libc::IPPROTO_IP, libc::IP_PKTINFO),
        (libc::IPPROTO_IP, libc::IP_RECVTOS),
        (libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
        (libc::IPPROTO_IPV6, libc::IPV6_RECVTCLASS),
        (libc::SOL_SOCKET, libc::SO_TIMESTAMPNS),
    ] {
        // An option the socket's family lacks fails harmlessly.
        set_int_option(socket, level, name, 0);
    }
}

/// `setsockopt` of an int option; whether the kernel took it is read back by the caller
/// where it matters.
fn set_int_option(
    socket: &std::net::UdpSocket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt reads `value`, an int we own, for the length given.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Asks for large socket buffers: one socket carries every feed, and the default (about
/// 200 KiB) holds only milliseconds of 100 feeds. SO_RCVBUFFORCE goes past
/// `net.core.rmem_max` where the process may (CAP_NET_ADMIN); else the sysctl caps it and
/// the log says so.
fn grow_buffers(socket: &std::net::UdpSocket, state: &UdpSocketState) {
    let _ = state.set_recv_buffer_size(socket.into(), SOCKET_BUFFER);
    let _ = state.set_send_buffer_size(socket.into(), SOCKET_BUFFER);
    let got = state.recv_buffer_size(socket.into()).unwrap_or(0);
    if got < SOCKET_BUFFER {
        set_int_option(
            socket,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            SOCKET_BUFFER as libc::c_int,
        );
    }
    let got = state.recv_buffer_size(socket.into()).unwrap_or(0);
    if got < SOCKET_BUFFER {
        tracing::warn!(
            bytes = got,
            wanted = SOCKET_BUFFER,
            "small UDP receive buffer: raise net.core.rmem_max (sysctl) so bursts of many feeds are not dropped"
        );
    }
}

/// One socket of the loop and the host candidate it is advertised as.
pub(super) struct Port {
    pub socket: PortSocket,
    pub state: UdpSocketState,
    pub advertised: SocketAddr,
}

/// A socket, watched by the runtime's epoll or not. The runtime's IO driver wakes for every
/// datagram on a socket it watches, whether or not a task waits on it; in the steady pace
/// the loop reads on its tick only, so the socket is taken out of epoll then (at 50 feeds,
/// 1,500 wake-ups a second that did nothing).
pub(super) enum PortSocket {
    Watched(UdpSocket),
    Unwatched(std::net::UdpSocket),
    /// Taking it out of epoll failed, which the runtime reports only for a socket already
    /// closed; also the value while it changes state.
    Lost,
}

impl PortSocket {
    /// Puts the socket in epoll (`watched`) or takes it out. A failure leaves it as it was
    /// (logged): unwatched, the loop still reads it on every tick.
    pub(super) fn watch(self, watched: bool) -> PortSocket {
        match (self, watched) {
            (PortSocket::Unwatched(s), true) => {
                // Registered through a duplicate, so a failure keeps the socket.
                match s.try_clone().and_then(UdpSocket::from_std) {
                    Ok(t) => PortSocket::Watched(t),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot watch the media socket; reading it on the tick");
                        PortSocket::Unwatched(s)
                    }
                }
            }
            (PortSocket::Watched(t), false) => match t.into_std() {
                Ok(s) => PortSocket::Unwatched(s),
                Err(e) => {
                    tracing::error!(error = %e, "lost the media socket taking it out of epoll");
                    PortSocket::Lost
                }
            },
            (s, _) => s,
        }
    }

    /// One batch of datagrams, without waiting.
    pub(super) fn recv(
        &self,
        state: &UdpSocketState,
        bufs: &mut [IoSliceMut<'_>],
        metas: &mut [RecvMeta],
    ) -> io::Result<usize> {
        match self {
            // Through `try_io`, so a WouldBlock clears the runtime's readiness.
            PortSocket::Watched(t) => {
                t.try_io(Interest::READABLE, || state.recv(t.into(), bufs, metas))
            }
            PortSocket::Unwatched(s) => state.recv(s.into(), bufs, metas),
            PortSocket::Lost => Err(lost()),
        }
    }

    pub(super) fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        match self {
            PortSocket::Watched(t) => t.try_send_to(data, to),
            PortSocket::Unwatched(s) => s.send_to(data, to),
            PortSocket::Lost => Err(lost()),
        }
    }

    /// Datagrams the kernel dropped on this socket since it was opened because its receive
    /// buffer was full (SO_MEMINFO's drop count, one system call); None if it cannot say.
    pub(super) fn drops(&self) -> Option<u32> {
        use std::os::fd::AsRawFd;
        let fd = match self {
            PortSocket::Watched(t) => t.as_raw_fd(),
            PortSocket::Unwatched(s) => s.as_raw_fd(),
            PortSocket::Lost => return None,
        };
        // More room than the kernel's SK_MEMINFO_VARS (9); it fills what it has.
        let mut info = [0u32; 16];
        let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `info`, which we own.
        let got = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let drops = libc::SK_MEMINFO_DROPS as usize;
        (got == 0 && len as usize > drops * 4).then(|| info[drops])
    }

    pub(super) fn poll_recv_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self {
            PortSocket::Watched(t) => t.poll_recv_ready(cx).map(drop),
            PortSocket::Unwatched(_) | PortSocket::Lost => std::task::Poll::Pending,
        }
    }
}

fn lost() -> io::Error {
    io::Error::other("the media socket was lost")
}

/// Waits until one of the sockets is readable; its index.
pub(super) async fn readable(ports: &[Port]) -> usize {
    std::future::poll_fn(|cx| {
        for (i, p) in ports.iter().enumerate() {
            if p.socket.poll_recv_ready(cx).is_ready() {
                return std::task::Poll::Ready(i);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Datagrams that find the receive buffer full are counted, as the kernel counts them.
    #[test]
    fn the_kernels_drops_are_read() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let state = UdpSocketState::new((&rx).into()).unwrap();
        state.set_recv_buffer_size((&rx).into(), 4096).unwrap();
        let to = rx.local_addr().unwrap();
        let port = PortSocket::Unwatched(rx);
        assert_eq!(port.drops(), Some(0));
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..100 {
            tx.send_to(&[0; 1000], to).unwrap();
        }
        let drops = port.drops().unwrap();
        assert!((50..=100).contains(&drops), "{drops}");
        assert_eq!(PortSocket::Lost.drops(), None);
    }
}
