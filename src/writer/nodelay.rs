//! `TCP_NODELAY` on the writer's connections.
//!
//! sqlx 0.9.0 no longer disables Nagle's algorithm on its TCP sockets (launchbadge/sqlx#4335;
//! the fix, #4336, came after 0.9.0). For the writer that is a 40 ms stall per `COPY`: the
//! `CopyDone` message is a small write following the data, and Nagle holds it until the server
//! acknowledges the data's last segment, which the server delays (Linux: at least 40 ms)
//! because it has nothing to send back during `COPY FROM STDIN`. A batch of three `COPY`s
//! then spends about 120 ms waiting on an idle connection (what that cost the ingest is in
//! `BENCHMARKS.md`; libpq sets `TCP_NODELAY` on every connection).
//!
//! sqlx exposes neither the socket nor an option for it, so after connecting the writer asks
//! the server which port the connection comes from (`inet_client_port()`), finds its own TCP
//! socket bound to that port and connected to the server's port, and sets the option on it.
//! Where the server sees another port than ours (a NAT, a proxy in between), over a Unix
//! socket (no Nagle there), or on systems other than Linux, nothing is changed.

use sqlx::postgres::PgConnection;

/// Sets `TCP_NODELAY` on the socket of `conn`, a connection to `server_port`. Best effort:
/// returns whether the option is now set (`false` over a Unix socket, behind a proxy, on
/// other systems, or when the lookup fails); never fails the connection.
pub(crate) async fn set_nodelay(conn: &mut PgConnection, server_port: u16) -> bool {
    let ports: (Option<i32>, Option<i32>) =
        match sqlx::query_as("SELECT inet_client_port(), inet_server_port()")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(ports) => ports,
            Err(_) => return false,
        };
    let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
    let (Some(client), Some(server)) = (port(ports.0), port(ports.1)) else {
        // A Unix socket: no Nagle to turn off.
        return false;
    };
    if server != server_port {
        // A proxy or NAT in between: the ports the server sees are not ours.
        return false;
    }
    set_on_socket(client, server_port)
}

/// The descriptor of this process's TCP socket with local port `local` and peer port `peer`,
/// when exactly one matches (the same local port may serve connections to other hosts on the
/// same port: then which is ours is not known).
#[cfg(target_os = "linux")]
fn our_socket(local: u16, peer: u16) -> Option<i32> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let mut matching = dir.flatten().filter_map(|entry| {
        let fd = entry.file_name().to_str()?.parse::<i32>().ok()?;
        (socket_ports(fd) == Some((local, peer))).then_some(fd)
    });
    match (matching.next(), matching.next()) {
        (Some(fd), None) => Some(fd),
        _ => None,
    }
}

/// Sets `TCP_NODELAY` on [`our_socket`]; whether it was set.
#[cfg(target_os = "linux")]
fn set_on_socket(local: u16, peer: u16) -> bool {
    our_socket(local, peer).is_some_and(|fd| {
        let on: libc::c_int = 1;
        // SAFETY: `fd` is a plain integer (a closed or reused descriptor only makes the call
        // fail or apply to that socket, both harmless); `on` outlives the call and its size is
        // passed with it.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        rc == 0
    })
}

#[cfg(not(target_os = "linux"))]
fn set_on_socket(_local: u16, _peer: u16) -> bool {
    false
}

/// Whether this process's TCP socket with local port `local` and peer port `peer` has
/// `TCP_NODELAY`; `None` when there is no single such socket (or off Linux). For the crate's
/// tests, which check the writer's connections from outside.
#[doc(hidden)]
pub fn tcp_nodelay_of(local: u16, peer: u16) -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        let fd = our_socket(local, peer)?;
        let mut on: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: as in `set_on_socket`; `on` and `len` are ours, `len` holds `on`'s size.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&raw mut on).cast(),
                &raw mut len,
            )
        };
        (rc == 0).then_some(on != 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (local, peer);
        None
    }
}

/// The local and peer ports of `fd` when it is a connected IPv4 or IPv6 TCP socket.
#[cfg(target_os = "linux")]
pub(crate) fn socket_ports(fd: i32) -> Option<(u16, u16)> {
    fn port(
        f: unsafe extern "C" fn(
            libc::c_int,
            *mut libc::sockaddr,
            *mut libc::socklen_t,
        ) -> libc::c_int,
        fd: i32,
    ) -> Option<u16> {
        // SAFETY: an all-zero `sockaddr_storage` is a valid value of that plain C struct.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `addr` and `len` are ours and outlive the call; `len` holds `addr`'s size,
        // so the kernel writes at most that many bytes.
        let rc = unsafe { f(fd, (&raw mut addr).cast(), &raw mut len) };
        if rc != 0 {
            return None;
        }
        match libc::c_int::from(addr.ss_family) {
            libc::AF_INET => {
                // SAFETY: the kernel wrote an AF_INET address, a `sockaddr_in`, which fits
                // in (and is less aligned than) `sockaddr_storage`.
                let a = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in>() };
                Some(u16::from_be(a.sin_port))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for a `sockaddr_in6`.
                let a = unsafe { &*(&raw const addr).cast::<libc::sockaddr_in6>() };
                Some(u16::from_be(a.sin6_port))
            }
            _ => None,
        }
    }
    Some((port(libc::getsockname, fd)?, port(libc::getpeername, fd)?))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn finds_the_socket_by_its_ports_and_sets_the_option_on_it_alone() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap().port();
        let a = TcpStream::connect(("127.0.0.1", server)).unwrap();
        let b = TcpStream::connect(("127.0.0.1", server)).unwrap();
        let a_port = a.local_addr().unwrap().port();
        assert_eq!(socket_ports(a.as_raw_fd()), Some((a_port, server)));
        let b_port = b.local_addr().unwrap().port();
        assert_eq!(tcp_nodelay_of(a_port, server), Some(false));
        assert_eq!(tcp_nodelay_of(b_port, server), Some(false));

        assert!(set_on_socket(a_port, server));
        assert_eq!(tcp_nodelay_of(a_port, server), Some(true));
        assert_eq!(
            tcp_nodelay_of(b_port, server),
            Some(false),
            "another connection to the server is left alone"
        );
        // No socket with these ports: nothing set.
        assert!(!set_on_socket(a_port, server.wrapping_add(1)));
        // A listening socket has no peer.
        assert_eq!(socket_ports(listener.as_raw_fd()).map(|p| p.1), None);
    }
}
