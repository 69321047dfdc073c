//! A real mosquitto broker for tests and benchmarks: started on 127.0.0.1 on a free port with
//! persistence on, in its own scratch directory; stopped, killed and restarted on the same port
//! and data directory at will. Started as root, mosquitto drops to its own unprivileged user,
//! so the directory is made writable for it.

#![allow(dead_code)]

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the broker requires of clients.
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// `(user, password)`: turns anonymous access off.
    pub user: Option<(String, String)>,
    /// Server certificate and key (PEM), and the CA: the listener speaks TLS only.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// With `tls`: clients must present a certificate signed by the CA.
    pub require_client_certificate: bool,
}

pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

fn mosquitto_binary() -> PathBuf {
    for p in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("mosquitto is not installed: run `sudo apt-get install mosquitto` (./quickstart and .ci/run install it)");
}

impl Broker {
    pub fn start(name: &str, options: BrokerOptions) -> Broker {
        let dir =
            std::env::temp_dir().join(format!("lookout-mosquitto-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let port = free_port();
        let mut conf = format!(
            "listener {port} 127.0.0.1\n\
             persistence true\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             max_queued_messages 0\n\
             max_inflight_messages 0\n\
             log_dest file {dir}/mosquitto.log\n\
             log_type error\nlog_type warning\nlog_type notice\n",
            dir = dir.display()
        );
        match &options.user {
            Some((user, password)) => {
                let pwfile = dir.join("passwd");
                let status = Command::new("mosquitto_passwd")
                    .args(["-b", "-c"])
                    .arg(&pwfile)
                    .args([user, password])
                    .status()
                    .expect("mosquitto_passwd (package mosquitto) is not installed");
                assert!(status.success());
                fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o644)).unwrap();
                conf += &format!(
                    "allow_anonymous false\npassword_file {}\n",
                    pwfile.display()
                );
            }
            None => conf += "allow_anonymous true\n",
        }
        if let Some((cert, key, ca)) = &options.tls {
            conf += &format!(
                "certfile {}\nkeyfile {}\ncafile {}\n",
                cert.display(),
                key.display(),
                ca.display()
            );
            if options.require_client_certificate {
                conf += "require_certificate true\n";
            }
        }
        fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let mut broker = Broker {
            port,
            dir,
            child: None,
        };
        broker.restart();
        broker
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Starts the broker again on the same port and data directory; waits until it listens.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = Command::new(mosquitto_binary())
                .arg("-c")
                .arg(self.dir.join("mosquitto.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start mosquitto");
            while Instant::now() < deadline {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port still held by the last instance: try again
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start; its log:\n{}",
                fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the broker with `signal` ("TERM": it saves its database; "KILL": it does not).
    pub fn stop(&mut self, signal: &str) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop("KILL");
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// What a subscriber heard: (topic, payload) in arrival order.
#[cfg(feature = "mqtt")]
pub type Heard = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// Subscribes to `topic` on the broker at `port` and records every publish; returns once the
/// broker acknowledged the subscription.
#[cfg(feature = "mqtt")]
pub fn subscribe(port: u16, topic: &str) -> Heard {
    use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};
    let id = format!("test-{port}-{}-{}", std::process::id(), topic.len());
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(o, 64);
    client.subscribe(topic, QoS::AtLeastOnce).unwrap();
    let heard: Heard = Default::default();
    let sink = heard.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Incoming::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    sink.lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    heard
}
