//! `TCP_NODELAY` on the writer's connections: a workaround, behind the default feature
//! `tcp-nodelay`.
//!
//! **Delete this module** (and the feature) when the sqlx dependency is raised to a release
//! that contains launchbadge/sqlx#4336, which sets the option itself: 0.9.0, the newest in the
//! registry when this was written, does not.
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

#[cfg(target_os = "linux")]
use std::net::SocketAddr;
#[cfg(target_os = "linux")]
use std::os::fd::BorrowedFd;

#[cfg(target_os = "linux")]
use rustix::net::{getpeername, getsockname, sockopt};
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

/// Calls `f` with this process's TCP socket whose local port is `local` and peer port `peer`,
/// when exactly one matches (the same local port may serve connections to other hosts on the
/// same port: then which is ours is not known).
#[cfg(target_os = "linux")]
fn with_our_socket<T>(local: u16, peer: u16, f: impl FnOnce(BorrowedFd<'_>) -> T) -> Option<T> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let mut matching = dir.flatten().filter_map(|entry| {
        let fd = entry.file_name().to_str()?.parse::<i32>().ok()?;
        (with_fd(fd, socket_ports) == Some((local, peer))).then_some(fd)
    });
    match (matching.next(), matching.next()) {
        (Some(fd), None) => Some(with_fd(fd, f)),
        _ => None,
    }
}

/// Borrows a descriptor of this process found in `/proc/self/fd`, for one call.
#[cfg(target_os = "linux")]
fn with_fd<T>(fd: i32, f: impl FnOnce(BorrowedFd<'_>) -> T) -> T {
    // SAFETY: the one `unsafe` left here: the descriptor is not ours to own, so another thread
    // may close it (and the number be reused) during the call. The calls made on it only read
    // a socket's addresses or set one socket option: on a closed descriptor they fail, on a
    // reused one they read or set a harmless option of that socket; nothing is freed or
    // written through the descriptor's memory.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    f(fd)
}

/// Sets `TCP_NODELAY` on our socket with these ports; whether it was set.
#[cfg(target_os = "linux")]
fn set_on_socket(local: u16, peer: u16) -> bool {
    with_our_socket(local, peer, |fd| sockopt::set_tcp_nodelay(fd, true).is_ok()).unwrap_or(false)
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
        with_our_socket(local, peer, |fd| sockopt::tcp_nodelay(fd).ok()).flatten()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (local, peer);
        None
    }
}

/// The local and peer ports of `fd` when it is a connected IPv4 or IPv6 TCP socket.
#[cfg(target_os = "linux")]
fn socket_ports(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let local = SocketAddr::try_from(getsockname(fd).ok()?).ok()?;
    let peer = SocketAddr::try_from(getpeername(fd).ok()??).ok()?;
    Some((local.port(), peer.port()))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn finds_the_socket_by_its_ports_and_sets_the_option_on_it_alone() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap().port();
        let a = TcpStream::connect(("127.0.0.1", server)).unwrap();
        let b = TcpStream::connect(("127.0.0.1", server)).unwrap();
        let a_port = a.local_addr().unwrap().port();
        assert_eq!(socket_ports(a.as_fd()), Some((a_port, server)));
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
        assert_eq!(socket_ports(listener.as_fd()).map(|p| p.1), None);
    }
}
