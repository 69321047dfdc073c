//! MQTT publishing that loses nothing silently. `publish` only appends to a bounded queue
//! (oldest dropped and counted when full), so inference never waits on the network. One
//! worker thread runs the MQTT client (rumqttc) and hands it at most `inflight` messages at a
//! time; a message leaves lookout's books only when the broker acknowledged it (QoS 1) or it
//! was written to the socket (QoS 0). Because lookout keeps every unacknowledged message
//! until its PUBACK, a broker that restarts without the session (rumqttc then discards what it
//! had in flight) costs nothing: lookout queues those messages again. With a persistent
//! session the broker also keeps what it acknowledged for offline subscribers.
//!
//! Topics are `<prefix>/<kind>` (`detections`, `tracks`, `masks`, `lidar`, `status`) and
//! `<prefix>/classes/<first_class_id>`; status and class tables are retained. The link itself
//! publishes a retained `online` status on every connection and leaves an `offline` one as
//! its last will, so subscribers see a device die.
//!
//! TLS is rustls with the `ring` provider: pure Rust plus a little C/assembly built by `cc`,
//! so it cross-compiles with the plain gcc toolchains (rumqttc's default, aws-lc, needs cmake
//! and clang and minutes more build).

use super::broker::{BrokerUrl, MqttSection, PayloadFormat};
use super::json::{message_json, ClassNames};
use super::{PublishError, Publisher, PublisherStats};
use lookout_wire::{Body, Header, Message, Status, MAX_FRAME_LEN, PROTOCOL_VERSION};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, LastWill,
    MqttOptions, Outgoing, QoS, TlsConfiguration, Transport,
};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A password that never shows up in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA certificates to trust; `None` uses the system's store.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for brokers that authenticate clients.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

/// Everything the MQTT link needs, defaults filled in.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub broker: BrokerUrl,
    pub device_id: u16,
    pub client_id: String,
    pub topic_prefix: String,
    pub qos: u8,
    pub keep_alive: Duration,
    pub queue_size: usize,
    pub payload: PayloadFormat,
    pub persistent_session: bool,
    pub credentials: Option<Credentials>,
    /// Set for `mqtts://` URLs or when a CA file is given.
    pub tls: Option<TlsFiles>,
    /// Reconnection back-off starts at 100 ms and doubles up to this.
    pub reconnect_max: Duration,
    /// Messages handed to the client but not yet acknowledged, at most.
    pub inflight: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("MQTT broker URL {0}")]
    Url(String),
    #[error("no MQTT broker given: pass --mqtt mqtt://host:port or set url in the [mqtt] section of the board config")]
    NoUrl,
    #[error("MQTT password file {path} cannot be read ({source}): check mqtt.password_file")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("environment variable {0} (mqtt.password_env) is not set: export it before starting lookout")]
    PasswordEnv(String),
    #[error("mqtt.password_file/password_env is set but mqtt.username is not: brokers need both")]
    PasswordWithoutUser,
    #[error("TLS file {path} ({key}): {problem}")]
    TlsFile {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot start the MQTT worker thread: {0}")]
    Thread(std::io::Error),
}

/// A warning when the secret at `path` can be read by its group or by others.
fn readable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "MQTT password file {} can be read by other users (mode {:o}): `chmod 600 {}` (owner: the user lookout runs as)",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

impl MqttConfig {
    /// Defaults for `url` and this device; every setting can then be changed.
    pub fn new(url: &str, device_id: u16) -> Result<MqttConfig, MqttError> {
        let broker = BrokerUrl::parse(url).map_err(MqttError::Url)?;
        let tls = broker.tls.then_some(TlsFiles {
            ca_file: None,
            client_auth: None,
        });
        Ok(MqttConfig {
            broker,
            device_id,
            client_id: format!("lookout-{device_id}"),
            topic_prefix: format!("lookout/{device_id}"),
            qos: 1,
            keep_alive: Duration::from_secs(30),
            queue_size: 10_000,
            payload: PayloadFormat::Postcard,
            persistent_session: true,
            credentials: None,
            tls,
            reconnect_max: Duration::from_secs(30),
            inflight: 100,
        })
    }

    /// Resolves a board config's `[mqtt]` section; `url` (from `--mqtt`) wins over its url.
    /// Reads the password now, so a missing secret fails at start-up, not at the first connect.
    pub fn from_section(
        section: &MqttSection,
        url: Option<&str>,
        device_id: u16,
    ) -> Result<MqttConfig, MqttError> {
        let url = url.or(section.url.as_deref()).ok_or(MqttError::NoUrl)?;
        let mut c = MqttConfig::new(url, device_id)?;
        if let Some(v) = &section.client_id {
            c.client_id = v.clone();
        }
        if let Some(v) = &section.topic_prefix {
            c.topic_prefix = v.trim_end_matches('/').to_string();
        }
        c.qos = section.qos.unwrap_or(c.qos);
        if let Some(k) = section.keep_alive_s {
            c.keep_alive = Duration::from_secs(k.into());
        }
        c.queue_size = section.queue_size.unwrap_or(c.queue_size);
        c.payload = section.payload.unwrap_or(c.payload);
        c.persistent_session = section.persistent_session.unwrap_or(c.persistent_session);
        if let Some(s) = section.reconnect_max_s {
            c.reconnect_max = Duration::from_secs_f64(s);
        }
        let password = match (&section.password_file, &section.password_env) {
            (Some(path), _) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| MqttError::PasswordFile {
                        path: path.clone(),
                        source,
                    })?;
                if let Some(warning) = readable_by_others(path) {
                    log::warn!("{warning}");
                }
                Some(Secret(text.lines().next().unwrap_or("").to_string()))
            }
            (None, Some(var)) => Some(Secret(
                std::env::var(var).map_err(|_| MqttError::PasswordEnv(var.clone()))?,
            )),
            (None, None) => None,
        };
        c.credentials = match (&section.username, password) {
            (Some(username), password) => Some(Credentials {
                username: username.clone(),
                password,
            }),
            (None, Some(_)) => return Err(MqttError::PasswordWithoutUser),
            (None, None) => None,
        };
        if section.ca_file.is_some() || section.client_cert_file.is_some() || c.broker.tls {
            c.tls = Some(TlsFiles {
                ca_file: section.ca_file.clone(),
                client_auth: section
                    .client_cert_file
                    .clone()
                    .zip(section.client_key_file.clone()),
            });
        }
        Ok(c)
    }

    /// The topic a body is published on.
    pub fn topic(&self, body: &Body) -> String {
        match body {
            Body::ClassTable(t) => {
                format!("{}/classes/{}", self.topic_prefix, t.first_class_id)
            }
            other => format!("{}/{}", self.topic_prefix, other.kind()),
        }
    }

    fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }

    fn encode(&self, message: &Message) -> Result<Vec<u8>, PublishError> {
        match self.payload {
            PayloadFormat::Postcard => {
                let mut buf = vec![0u8; MAX_FRAME_LEN];
                let n = lookout_wire::encode_message(message, &mut buf)
                    .map_err(PublishError::Encode)?
                    .len();
                buf.truncate(n);
                Ok(buf)
            }
            PayloadFormat::Json => Ok(message_json(message, &ClassNames::new())
                .to_string()
                .into_bytes()),
        }
    }

    /// The status the link publishes itself: `online` on connect, `offline` as last will and
    /// on a clean close. Outside the device's numbered stream, so its sequence is 0.
    fn link_status(&self, online: bool) -> Message {
        Message {
            header: Header {
                version: PROTOCOL_VERSION,
                device_id: self.device_id,
                sequence: 0,
                timestamp_us: 0,
                frame_id: 0,
            },
            body: Body::Status(Status {
                online,
                uptime_s: 0,
                fps_centi: 0,
                frames_dropped: 0,
                messages_dropped: 0,
                temperature_centi_c: None,
                throttled: 0,
            }),
        }
    }

    fn options(&self) -> Result<MqttOptions, MqttError> {
        let mut o = MqttOptions::new(&self.client_id, &self.broker.host, self.broker.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_session(!self.persistent_session);
        o.set_inflight(self.inflight.max(1));
        o.set_pending_throttle(Duration::ZERO);
        o.set_max_packet_size(MAX_FRAME_LEN * 4, MAX_FRAME_LEN * 4);
        let will = self.link_status(false);
        let payload = self
            .encode(&will)
            .map_err(|e| MqttError::Tls(e.to_string()))?;
        o.set_last_will(LastWill::new(
            self.topic(&will.body),
            payload,
            QoS::AtLeastOnce,
            true,
        ));
        if let Some(c) = &self.credentials {
            let password = c.password.as_ref().map_or("", |s| s.0.as_str());
            o.set_credentials(&c.username, password);
        }
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(
                rustls_config(tls)?,
            ))));
        }
        Ok(o)
    }
}

fn tls_file_error(path: &Path, key: &'static str, problem: impl std::fmt::Display) -> MqttError {
    MqttError::TlsFile {
        path: path.to_path_buf(),
        key,
        problem: problem.to_string(),
    }
}

fn rustls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, MqttError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let mut roots = rustls::RootCertStore::empty();
    match &files.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_file_error(path, "mqtt.ca_file", e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_file_error(path, "mqtt.ca_file", e))?;
            if certs.is_empty() {
                return Err(tls_file_error(
                    path,
                    "mqtt.ca_file",
                    "no PEM certificate in it",
                ));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| tls_file_error(path, "mqtt.ca_file", e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(MqttError::Tls(
                    "no CA certificates in the system store: install ca-certificates or set mqtt.ca_file".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match &files.client_auth {
        None => Ok(builder.with_no_client_auth()),
        Some((cert_path, key_path)) => {
            let certs = CertificateDer::pem_file_iter(cert_path)
                .map_err(|e| tls_file_error(cert_path, "mqtt.client_cert_file", e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| tls_file_error(cert_path, "mqtt.client_cert_file", e))?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| tls_file_error(key_path, "mqtt.client_key_file", e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| tls_file_error(cert_path, "mqtt.client_cert_file", e))
        }
    }
}

/// What the MQTT link has done, beyond the counters every publisher keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MqttStats {
    pub publisher: PublisherStats,
    /// Handed to the client and not yet acknowledged (part of `publisher.queued`).
    pub in_flight: u64,
    pub connected: bool,
    /// Failed connection attempts and lost connections.
    pub connection_failures: u64,
    /// Why the last connection attempt failed or the connection was lost.
    pub last_error: Option<String>,
    /// Unacknowledged messages sent again because the broker came back without our session.
    pub resent: u64,
}

/// One message on its way; `counted` is false for the link's own status messages, which
/// stay out of the application's counters.
#[derive(Debug, Clone)]
struct Outbound {
    id: u64,
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    counted: bool,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outbound>,
    /// Handed to the client, packet id not yet known (in order).
    awaiting_pkid: VecDeque<Outbound>,
    /// Sent at QoS 1, waiting for PUBACK.
    by_pkid: HashMap<u16, Outbound>,
    /// The client found this packet id still in use and holds the message until it frees.
    collided: Option<(u16, Outbound)>,
    next_id: u64,
    stats: MqttStats,
    /// The connection dropped since the last CONNACK: rumqttc moved what it held into its
    /// retransmission list, which it clears if the broker has no session for us.
    disconnected_since_connack: bool,
    closing: bool,
}

impl State {
    fn outstanding(&self) -> usize {
        self.awaiting_pkid.len() + self.by_pkid.len() + usize::from(self.collided.is_some())
    }

    fn refresh_counts(&mut self) {
        let counted = |m: &Outbound| u64::from(m.counted);
        let queued: u64 = self.queue.iter().map(counted).sum();
        let in_flight: u64 = self.awaiting_pkid.iter().map(counted).sum::<u64>()
            + self.by_pkid.values().map(counted).sum::<u64>()
            + self.collided.iter().map(|(_, m)| counted(m)).sum::<u64>();
        self.stats.in_flight = in_flight;
        self.stats.publisher.queued = queued + in_flight;
    }

    fn done(&mut self, m: &Outbound) {
        if m.counted {
            self.stats.publisher.sent += 1;
        }
    }

    fn push(&mut self, topic: String, payload: Vec<u8>, retain: bool, counted: bool, cap: usize) {
        while self.queue.len() >= cap {
            // Latest data is worth more than old data to a robot's consumers.
            if let Some(old) = self.queue.pop_front() {
                if old.counted {
                    self.stats.publisher.dropped += 1;
                }
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        if counted {
            self.stats.publisher.published += 1;
        }
        self.queue.push_back(Outbound {
            id,
            topic,
            payload,
            retain,
            counted,
        });
    }

    /// Puts messages the client lost back at the head of the queue, oldest first.
    fn requeue_in_flight(&mut self) {
        let mut lost: Vec<Outbound> = self.awaiting_pkid.drain(..).collect();
        lost.extend(self.by_pkid.drain().map(|(_, m)| m));
        lost.extend(self.collided.take().map(|(_, m)| m));
        lost.sort_by_key(|m| m.id);
        for m in lost.into_iter().rev() {
            self.queue.push_front(m);
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Signalled whenever the queue or the in-flight set shrinks (for `flush`).
    drained: Condvar,
    /// Wakes the feeder task: new messages, freed in-flight slots, connection changes.
    wake: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the counters inconsistent enough to matter here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Publishes to an MQTT broker; see the module documentation for the guarantees.
pub struct MqttPublisher {
    config: MqttConfig,
    shared: Arc<Shared>,
    worker: Option<std::thread::JoinHandle<()>>,
    closed: bool,
}

impl MqttPublisher {
    /// Starts the link. Returns at once: connecting happens in the background, and messages
    /// published before the broker answers wait in the queue.
    pub fn start(config: MqttConfig) -> Result<MqttPublisher, MqttError> {
        let options = config.options()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            drained: Condvar::new(),
            wake: tokio::sync::Notify::new(),
        });
        let worker = {
            let shared = Arc::clone(&shared);
            let config = config.clone();
            std::thread::Builder::new()
                .name("mqtt".into())
                .spawn(move || run_worker(options, config, shared))
                .map_err(MqttError::Thread)?
        };
        log::info!(
            "mqtt: publishing to {}://{}:{} as {} under {}/ (QoS {}, {} session)",
            if config.broker.tls { "mqtts" } else { "mqtt" },
            config.broker.host,
            config.broker.port,
            config.client_id,
            config.topic_prefix,
            config.qos,
            if config.persistent_session {
                "persistent"
            } else {
                "clean"
            }
        );
        Ok(MqttPublisher {
            config,
            shared,
            worker: Some(worker),
            closed: false,
        })
    }

    pub fn config(&self) -> &MqttConfig {
        &self.config
    }

    pub fn mqtt_stats(&self) -> MqttStats {
        let mut s = self.shared.lock();
        s.refresh_counts();
        s.stats.clone()
    }

    /// Waits until the broker accepted a connection, up to `timeout`.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.lock();
        while !s.stats.connected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .shared
                .drained
                .wait_timeout(s, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Publishes the retained `offline` status, waits up to `timeout` for everything queued
    /// to be acknowledged, disconnects and stops the worker. Returns whether all was delivered.
    pub fn close(&mut self, timeout: Duration) -> bool {
        if self.closed {
            return self.shared.lock().stats.publisher.queued == 0;
        }
        self.closed = true;
        let offline = self.config.link_status(false);
        if let Ok(payload) = self.config.encode(&offline) {
            let topic = self.config.topic(&offline.body);
            let cap = self.config.queue_size + 1;
            self.shared.lock().push(topic, payload, true, false, cap);
            self.shared.wake.notify_one();
        }
        let delivered = self.flush(timeout);
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        delivered
    }
}

impl Publisher for MqttPublisher {
    fn publish(&mut self, message: &Message) -> Result<(), PublishError> {
        if self.closed {
            return Err(PublishError::Closed);
        }
        let payload = self.config.encode(message)?;
        let topic = self.config.topic(&message.body);
        let retain = matches!(message.body, Body::Status(_) | Body::ClassTable(_));
        self.shared
            .lock()
            .push(topic, payload, retain, true, self.config.queue_size);
        self.shared.wake.notify_one();
        Ok(())
    }

    fn stats(&self) -> PublisherStats {
        self.mqtt_stats().publisher
    }

    fn last_error(&self) -> Option<String> {
        self.shared.lock().stats.last_error.clone()
    }

    fn flush(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.lock();
        loop {
            if s.queue.is_empty() && s.outstanding() == 0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .shared
                .drained
                .wait_timeout(s, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for MqttPublisher {
    fn drop(&mut self) {
        self.close(Duration::from_secs(2));
    }
}

/// Explains a connection failure in terms of what the user should check.
fn describe(error: &ConnectionError, config: &MqttConfig) -> String {
    let at = format!("{}:{}", config.broker.host, config.broker.port);
    match error {
        ConnectionError::ConnectionRefused(code) => match code {
            // mosquitto answers a wrong password with "not authorised".
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => format!(
                "broker {at} refused client {} ({code:?}): check mqtt.username, the password \
                 (mqtt.password_file / mqtt.password_env) and the broker's ACL",
                config.client_id
            ),
            ConnectReturnCode::BadClientId => {
                format!("broker {at} refused client id {}", config.client_id)
            }
            other => format!("broker {at} refused the connection ({other:?})"),
        },
        ConnectionError::Tls(e) => format!(
            "TLS with {at} failed: {e} (check mqtt.ca_file and that the certificate names {})",
            config.broker.host
        ),
        ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("nothing accepts connections at {at}: is the broker running?")
        }
        ConnectionError::NetworkTimeout => format!("connecting to {at} timed out"),
        ConnectionError::MqttState(e) => format!("connection to {at} lost ({e})"),
        other => format!("connection to {at}: {other}"),
    }
}

fn run_worker(options: MqttOptions, config: MqttConfig, shared: Arc<Shared>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!("mqtt: cannot start the network runtime: {e}");
            shared.lock().stats.last_error = Some(e.to_string());
            return;
        }
    };
    // The request channel never holds more than the in-flight window: lookout's own queue
    // is where messages wait.
    let (client, eventloop) = AsyncClient::new(options, usize::from(config.inflight) + 2);
    runtime.block_on(async {
        tokio::join!(
            feed(&client, &config, &shared),
            drive(eventloop, &config, &shared)
        );
    });
}

/// Moves messages from lookout's queue to the client while connected and the window allows.
async fn feed(client: &AsyncClient, config: &MqttConfig, shared: &Shared) {
    let window = usize::from(config.inflight.max(1));
    loop {
        let next = {
            let mut s = shared.lock();
            if s.closing {
                break;
            }
            if s.stats.connected && s.outstanding() < window {
                let m = s.queue.pop_front();
                if let Some(m) = &m {
                    s.awaiting_pkid.push_back(m.clone());
                }
                m
            } else {
                None
            }
        };
        match next {
            Some(m) => {
                let qos = if m.counted {
                    config.qos()
                } else {
                    QoS::AtLeastOnce
                };
                if client
                    .publish(m.topic, qos, m.retain, m.payload)
                    .await
                    .is_err()
                {
                    break; // the event loop is gone
                }
            }
            None => shared.wake.notified().await,
        }
    }
    let _ = client.disconnect().await;
}

/// Runs the client's event loop: tracks acknowledgements, reconnects with back-off.
async fn drive(mut eventloop: EventLoop, config: &MqttConfig, shared: &Shared) {
    let first_backoff = Duration::from_millis(100);
    let mut backoff = first_backoff;
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                if on_event(event, config, shared) {
                    break;
                }
                backoff = first_backoff;
            }
            Err(e) => {
                let closing = {
                    let mut s = shared.lock();
                    if s.stats.connected {
                        s.disconnected_since_connack = true;
                        s.stats.publisher.reconnects += 1;
                    }
                    s.stats.connected = false;
                    s.stats.connection_failures += 1;
                    let why = describe(&e, config);
                    if s.stats.last_error.as_deref() != Some(why.as_str()) {
                        log::warn!("mqtt: {why}; retrying");
                    }
                    s.stats.last_error = Some(why);
                    s.closing
                };
                shared.drained.notify_all();
                if closing {
                    break;
                }
                // Sleep in slices so that closing does not wait out a long back-off.
                let until = Instant::now() + backoff;
                while Instant::now() < until && !shared.lock().closing {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                backoff = (backoff * 2).min(config.reconnect_max.max(first_backoff));
            }
        }
    }
}

/// Books one client event; returns true when the connection was closed on purpose.
fn on_event(event: Event, config: &MqttConfig, shared: &Shared) -> bool {
    let mut s = shared.lock();
    match event {
        Event::Incoming(Incoming::ConnAck(ack)) => {
            if s.disconnected_since_connack && !ack.session_present {
                let lost = s.outstanding();
                if lost > 0 {
                    log::info!("mqtt: broker has no session for us; re-sending {lost} unacknowledged messages");
                }
                s.stats.resent += lost as u64;
                s.requeue_in_flight();
            }
            s.disconnected_since_connack = false;
            s.stats.connected = true;
            log::info!(
                "mqtt: connected to {}:{} (session {})",
                config.broker.host,
                config.broker.port,
                if ack.session_present {
                    "resumed"
                } else {
                    "new"
                }
            );
            // The broker may have published our last will: say we are back, first.
            let online = config.link_status(true);
            if let Ok(payload) = config.encode(&online) {
                let id = s.next_id;
                s.next_id += 1;
                s.queue.push_front(Outbound {
                    id,
                    topic: config.topic(&online.body),
                    payload,
                    retain: true,
                    counted: false,
                });
            }
            drop(s);
            shared.wake.notify_one();
            shared.drained.notify_all();
        }
        Event::Outgoing(Outgoing::Publish(pkid)) => {
            if pkid == 0 {
                // QoS 0: written to the socket is as far as anyone will ever know.
                if let Some(m) = s.awaiting_pkid.pop_front() {
                    s.done(&m);
                }
                drop(s);
                shared.wake.notify_one();
                shared.drained.notify_all();
            } else if s.by_pkid.contains_key(&pkid) {
                // A retransmission after reconnecting.
            } else if s.collided.as_ref().is_some_and(|(p, _)| *p == pkid) {
                if let Some((p, m)) = s.collided.take() {
                    s.by_pkid.insert(p, m);
                }
            } else if let Some(m) = s.awaiting_pkid.pop_front() {
                s.by_pkid.insert(pkid, m);
            }
        }
        Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
            if let Some(m) = s.awaiting_pkid.pop_front() {
                s.collided = Some((pkid, m));
            }
        }
        Event::Incoming(Incoming::PubAck(ack)) => {
            if let Some(m) = s.by_pkid.remove(&ack.pkid) {
                s.done(&m);
            }
            drop(s);
            shared.wake.notify_one();
            shared.drained.notify_all();
        }
        Event::Outgoing(Outgoing::Disconnect) => {
            return true;
        }
        _ => {}
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> MqttSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_follow_the_device_id() {
        let c = MqttConfig::from_section(&MqttSection::default(), Some("mqtt://h"), 7).unwrap();
        assert_eq!(
            (c.client_id.as_str(), c.topic_prefix.as_str(), c.qos),
            ("lookout-7", "lookout/7", 1)
        );
        assert!(c.persistent_session && c.tls.is_none() && c.credentials.is_none());
        assert!(matches!(
            MqttConfig::from_section(&MqttSection::default(), None, 7),
            Err(MqttError::NoUrl)
        ));
    }

    #[test]
    fn topics_are_per_kind_and_class_tables_per_chunk() {
        let c = MqttConfig::new("mqtt://h:1", 3).unwrap();
        let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
        let tables = super::super::class_table_bodies("m", &names);
        assert_eq!(c.topic(&tables[1]), "lookout/3/classes/16");
        assert_eq!(
            c.topic(&super::super::detections_body(1, 1, &[])),
            "lookout/3/detections"
        );
        assert_eq!(c.topic(&c.link_status(true).body), "lookout/3/status");
    }

    #[test]
    fn passwords_come_from_env_or_file_and_never_print() {
        std::env::set_var("LOOKOUT_TEST_MQTT_PW", "hunter2");
        let c = MqttConfig::from_section(
            &section("username = \"robot\"\npassword_env = \"LOOKOUT_TEST_MQTT_PW\""),
            Some("mqtt://h"),
            0,
        )
        .unwrap();
        let creds = c.credentials.clone().unwrap();
        assert_eq!(creds.password, Some(Secret("hunter2".into())));
        assert!(!format!("{c:?}").contains("hunter2"));

        let err = MqttConfig::from_section(
            &section("username = \"robot\"\npassword_env = \"LOOKOUT_TEST_MQTT_UNSET\""),
            Some("mqtt://h"),
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("LOOKOUT_TEST_MQTT_UNSET"), "{err}");
        let err = MqttConfig::from_section(
            &section("username = \"r\"\npassword_file = \"/nonexistent/pw\""),
            Some("mqtt://h"),
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/pw"), "{err}");
    }

    #[test]
    fn unreadable_tls_files_are_named() {
        let c = MqttConfig::from_section(
            &section("ca_file = \"/nonexistent/ca.pem\""),
            Some("mqtts://h"),
            0,
        )
        .unwrap();
        let err = MqttPublisher::start(c).err().unwrap().to_string();
        assert!(
            err.contains("/nonexistent/ca.pem") && err.contains("mqtt.ca_file"),
            "{err}"
        );
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_them() {
        let mut s = State::default();
        for i in 0..5u8 {
            s.push("t".into(), vec![i], false, true, 3);
        }
        s.refresh_counts();
        let p = s.stats.publisher;
        assert_eq!((p.published, p.dropped, p.queued), (5, 2, 3));
        assert_eq!(s.queue.front().map(|m| m.payload[0]), Some(2));
    }

    #[test]
    fn messages_lost_by_the_client_go_back_to_the_head_in_order() {
        let mut s = State::default();
        for i in 0..6u8 {
            s.push("t".into(), vec![i], false, true, 10);
        }
        let mut take = || s.queue.pop_front().unwrap();
        let (m0, m1, m2, m3) = (take(), take(), take(), take());
        s.by_pkid.insert(9, m1);
        s.by_pkid.insert(2, m0);
        s.collided = Some((4, m2));
        s.awaiting_pkid.push_back(m3);
        s.requeue_in_flight();
        let order: Vec<u8> = s.queue.iter().map(|m| m.payload[0]).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(s.outstanding(), 0);
    }
}
