//! Running under systemd: readiness and watchdog pings over the `NOTIFY_SOCKET` datagram
//! protocol (`sd_notify(3)`), written by hand because it is one `sendto` and libsystemd is a
//! system library the default build must not need. Outside systemd every call is a no-op.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// A connection to the service manager, if lookout runs under one.
#[derive(Debug)]
pub struct ServiceManager {
    socket: UnixDatagram,
    address: String,
    /// Half the `WatchdogSec=` systemd asked for: ping at least this often.
    pub watchdog_interval: Option<Duration>,
}

impl ServiceManager {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment; `None` when unset.
    pub fn from_env() -> Option<ServiceManager> {
        let address = std::env::var("NOTIFY_SOCKET").ok()?;
        let watchdog_interval = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&us| us > 0)
            .map(|us| Duration::from_micros(us / 2));
        let socket = UnixDatagram::unbound().ok()?;
        Some(ServiceManager {
            socket,
            address,
            watchdog_interval,
        })
    }

    /// Sends one notification, e.g. `READY=1`, `WATCHDOG=1`, `STOPPING=1`, `STATUS=...`.
    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        if let Some(name) = self.address.strip_prefix('@') {
            // An abstract socket: its name lives outside the file system.
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            self.socket.send_to_addr(state.as_bytes(), &addr)?;
        } else {
            self.socket.send_to(state.as_bytes(), &self.address)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_the_socket_systemd_names() {
        let path = std::env::temp_dir().join(format!("lookout-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let manager = ServiceManager {
            socket: UnixDatagram::unbound().unwrap(),
            address: path.display().to_string(),
            watchdog_interval: None,
        };
        manager.notify("READY=1\nSTATUS=detecting").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=detecting");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn abstract_sockets_are_addressed_by_name() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("lookout-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let manager = ServiceManager {
            socket: UnixDatagram::unbound().unwrap(),
            address: format!("@{name}"),
            watchdog_interval: Some(Duration::from_secs(5)),
        };
        manager.notify("WATCHDOG=1").unwrap();
        let mut buf = [0u8; 16];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
