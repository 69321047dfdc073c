//! The board config's `[mqtt]` section and the broker address, beside the sink that uses them
//! (the config module re-exports them for the loader). Values are checked here once, for
//! `lookout check` and `lookout run` alike; secrets never appear in the section (they come
//! from a file or the environment) nor in any message (URLs are redacted).

use serde::Deserialize;
use std::path::PathBuf;

/// How messages are encoded on MQTT.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The wire crate's postcard bytes (`lookout_wire::encode_message`): compact, typed, for
    /// microcontrollers and bandwidth-starved links.
    Postcard,
    /// One JSON document per message (docs/schema/lookout.schema.json): what dashboards,
    /// Node-RED and scripts read without a decoder. The default.
    #[default]
    Json,
}

impl std::str::FromStr for PayloadFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<PayloadFormat, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(PayloadFormat::Json),
            "postcard" => Ok(PayloadFormat::Postcard),
            other => Err(format!(
                "'{other}' is not a payload format: use json or postcard"
            )),
        }
    }
}

/// MQTT publishing. Secrets are never written here: they come from a file or an environment
/// variable. Relative paths are relative to the config file.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    /// Broker: `mqtt://host[:port]` (default port 1883) or `mqtts://host[:port]` (TLS, 8883).
    pub url: Option<String>,
    /// Default `lookout-<device_id>-<machine>` (the first 8 characters of /etc/machine-id, or
    /// the host name), so two boards on defaults do not take each other's session. A
    /// persistent session is keyed by it: keep it stable.
    pub client_id: Option<String>,
    /// Default `lookout/<device_id>`; messages go to `<prefix>/<kind>`.
    pub topic_prefix: Option<String>,
    /// 0 (at most once) or 1 (at least once, the default).
    pub qos: Option<u8>,
    pub keep_alive_s: Option<u16>,
    /// Messages held while the broker is unreachable; the oldest are dropped beyond it.
    pub queue_size: Option<usize>,
    pub payload: Option<PayloadFormat>,
    /// Keep the broker session across disconnects (MQTT clean-session off). Default true.
    pub persistent_session: Option<bool>,
    pub username: Option<String>,
    /// File whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// PEM CA certificate(s) to verify the broker with; implies TLS.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that require client authentication.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Longest wait between reconnection attempts (back-off doubles up to it), seconds.
    pub reconnect_max_s: Option<f64>,
    /// Publish Home Assistant MQTT discovery for the classes below. Default false.
    pub home_assistant: Option<bool>,
    /// Home Assistant's discovery prefix. Default `homeassistant`.
    pub home_assistant_prefix: Option<String>,
    /// Classes that get a "detected" binary sensor and a count sensor. Default: the detector's
    /// `classes`, else `["person"]`.
    pub home_assistant_classes: Option<Vec<String>>,
}

/// A parsed broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    pub fn parse(url: &str) -> Result<BrokerUrl, String> {
        let usage = "expected mqtt://host[:port] or mqtts://host[:port] (TLS)";
        let shown = redact_url(url);
        let url = shown.as_str();
        let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("mqtts://") {
            (true, r)
        } else {
            return Err(format!("'{url}': {usage}"));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        // [v6::addr]:port, host:port or host
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| format!("'{url}': {usage}"))?;
            (h, p.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.contains('@') {
            return Err(format!("'{url}': credentials in the broker URL are not accepted (they would show in process lists and logs); set mqtt.username with mqtt.password_file or mqtt.password_env"));
        }
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("'{url}': no valid host; {usage}"));
        }
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("'{url}': port '{p}' is not 1-65535"))?,
        };
        Ok(BrokerUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

/// Why an MQTT client id cannot be used, if it cannot: brokers key persistent sessions by it,
/// and the MQTT client panics on an empty one with a persistent session.
pub fn client_id_problem(id: &str) -> Option<String> {
    if id.trim().is_empty() {
        return Some("is empty; give a stable id unique to this board (e.g. \"lookout-garage\"), or leave it out for the default".into());
    }
    if id.len() > 256 || id.chars().any(char::is_control) {
        return Some("must be at most 256 printable characters".into());
    }
    None
}

/// Why `prefix` cannot start MQTT topic names, if it cannot: `#` and `+` are subscription
/// wildcards, which a broker refuses in a published topic (the publisher would retry forever).
pub fn topic_prefix_problem(prefix: &str) -> Option<String> {
    if prefix.trim_matches('/').is_empty() {
        return Some("is empty; give e.g. \"lookout/garage\"".into());
    }
    if prefix.contains(['#', '+']) {
        return Some(format!(
            "'{prefix}' contains the wildcard '#' or '+', which MQTT forbids in published topics; use e.g. \"lookout/garage\""
        ));
    }
    if prefix.contains('\0') || prefix.len() > 1024 {
        return Some("must be at most 1024 characters without NUL".into());
    }
    None
}

/// `url` with any user name and password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    match scheme {
        Some(s) => format!("{s}://{authority}{path}"),
        None => format!("{authority}{path}"),
    }
}
