//! What the MQTT link needs before it connects: the broker, the client id and topics, QoS and
//! session, credentials (a [`Secret`] that never prints), and the rustls client setup for
//! `mqtts://`. Resolved once from the board config's `[mqtt]` section, so a missing password
//! or certificate fails at start-up with the key to fix, not at the first connect.

use super::conventions::{HomeAssistant, OFFLINE};
use crate::sink::broker::{BrokerUrl, MqttSection, PayloadFormat};
use crate::sink::json::{document, ClassNames, LIDAR_MODEL_PREFIX};
use crate::sink::PublishError;
use lookout_wire::{Body, Header, Message, Status, MAX_FRAME_LEN, PROTOCOL_VERSION};
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    /// Home Assistant discovery, when `[mqtt] home_assistant = true`.
    pub home_assistant: Option<HomeAssistant>,
    /// The detector's model, for the device Home Assistant shows.
    pub model: String,
}

/// What tells this machine apart from others on a broker: the first 8 characters of
/// /etc/machine-id (stable across reboots, unique per install), else the host name.
fn machine_tag() -> Option<String> {
    let from_file = |path: &str| {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let tag = from_file("/etc/machine-id")
        .map(|id| id.chars().take(8).collect::<String>())
        .or_else(|| from_file("/proc/sys/kernel/hostname"))?;
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!tag.is_empty()).then_some(tag)
}

/// The default client id: `lookout-<device_id>-<machine>`.
pub fn default_client_id(device_id: u16) -> String {
    match machine_tag() {
        Some(tag) => format!("lookout-{device_id}-{tag}"),
        None => format!("lookout-{device_id}"),
    }
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
            client_id: default_client_id(device_id),
            topic_prefix: format!("lookout/{device_id}"),
            qos: 1,
            keep_alive: Duration::from_secs(30),
            queue_size: 10_000,
            payload: PayloadFormat::default(),
            persistent_session: true,
            credentials: None,
            tls,
            reconnect_max: Duration::from_secs(30),
            inflight: 100,
            home_assistant: None,
            model: String::new(),
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
        if section.home_assistant == Some(true) {
            c.home_assistant = Some(HomeAssistant {
                discovery_prefix: section
                    .home_assistant_prefix
                    .clone()
                    .unwrap_or_else(|| "homeassistant".into())
                    .trim_end_matches('/')
                    .to_string(),
                classes: section
                    .home_assistant_classes
                    .clone()
                    .unwrap_or_else(|| vec!["person".into()]),
            });
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
            Body::ClassTable(t) if t.model.starts_with(LIDAR_MODEL_PREFIX) => {
                format!("{}/lidar/classes/{}", self.topic_prefix, t.first_class_id)
            }
            Body::ClassTable(t) => {
                format!("{}/classes/{}", self.topic_prefix, t.first_class_id)
            }
            other => format!("{}/{}", self.topic_prefix, other.kind()),
        }
    }

    pub(super) fn qos(&self) -> QoS {
        if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        }
    }

    /// The availability topic (`online`/`offline`, retained, the last will).
    pub fn available_topic(&self) -> String {
        format!("{}/available", self.topic_prefix)
    }

    /// Encodes `message` in the configured format; JSON documents name classes from `names`
    /// and carry the frame's age when known.
    pub(super) fn encode(
        &self,
        message: &Message,
        names: &ClassNames,
        age_us: Option<u64>,
    ) -> Result<Vec<u8>, PublishError> {
        match self.payload {
            PayloadFormat::Postcard => {
                let mut buf = vec![0u8; MAX_FRAME_LEN];
                let n = lookout_wire::encode_message(message, &mut buf)
                    .map_err(PublishError::Encode)?
                    .len();
                buf.truncate(n);
                Ok(buf)
            }
            PayloadFormat::Json => Ok(document(message, names, age_us).to_string().into_bytes()),
        }
    }

    /// The status the link publishes itself: `online` on connect, `offline` as last will and
    /// on a clean close. Outside the device's numbered stream, so its sequence is 0.
    pub(super) fn link_status(&self, online: bool) -> Message {
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

    pub(super) fn options(&self) -> Result<MqttOptions, MqttError> {
        let mut o = MqttOptions::new(&self.client_id, &self.broker.host, self.broker.port);
        o.set_keep_alive(self.keep_alive);
        o.set_clean_session(!self.persistent_session);
        o.set_inflight(self.inflight.max(1));
        o.set_pending_throttle(Duration::ZERO);
        o.set_max_packet_size(MAX_FRAME_LEN * 4, MAX_FRAME_LEN * 4);
        // The plain availability topic is the will: what Home Assistant, Frigate users and
        // any `mosquitto_sub` read to know the device died.
        o.set_last_will(LastWill::new(
            self.available_topic(),
            OFFLINE.as_bytes().to_vec(),
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
            (default_client_id(7).as_str(), "lookout/7", 1)
        );
        // Unique per machine: the device id and this machine's tag.
        assert!(c.client_id.starts_with("lookout-7-"), "{}", c.client_id);
        assert_eq!(c.payload, PayloadFormat::Json);
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
        let tables = crate::sink::class_table_bodies("m", &names);
        assert_eq!(c.topic(&tables[1]), "lookout/3/classes/16");
        assert_eq!(
            c.topic(&crate::sink::detections_body(1, 1, &[])),
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
}
