//! Board configuration: one TOML file per board (`board-configs/*.toml`) holding the settings
//! that differ between boards. Boards are data, not Cargo features. Every key is checked:
//! unknown keys and bad values are refused with the file, the key and the fix.

use serde::Deserialize;
use std::path::{Path, PathBuf};

pub use crate::sink::broker::{
    client_id_problem, redact_url, topic_prefix_problem, BrokerUrl, MqttSection, PayloadFormat,
};

#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardConfig {
    #[serde(default)]
    pub board: BoardSection,
    #[serde(default)]
    pub detector: DetectorSection,
    /// Present when this board publishes to an MQTT broker.
    pub mqtt: Option<MqttSection>,
    #[serde(default)]
    pub tracker: crate::track::TrackerConfig,
    /// Absent: lookout drives no pins.
    pub gpio: Option<crate::gpio::GpioConfig>,
    /// A V4L2 camera (`[camera]`).
    pub camera: Option<crate::source::camera::CameraSection>,
    /// Frames from files instead of a camera (`[replay]`).
    pub replay: Option<crate::source::camera::ReplaySection>,
    /// A live LiDAR and its classifier (`lookout lidar --config`).
    pub lidar: Option<crate::source::lidar::LidarSection>,
    /// MobileSAM masks for detections (`lookout detect --segment`).
    #[serde(default)]
    pub segmenter: crate::infer::sam::SegmenterSection,
}

/// What the board is, for logs and reports.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    pub name: Option<String>,
    /// Carried in every message this board publishes; tells boards apart on a shared broker.
    pub device_id: Option<u16>,
}

/// Detector settings; anything unset falls back to the command line or built-in defaults.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectorSection {
    pub model: Option<String>,
    /// `[width, height]`, multiples of 32.
    pub input_size: Option<[u32; 2]>,
    pub threads: Option<usize>,
    pub conf: Option<f32>,
    pub iou: Option<f32>,
    pub max_det: Option<usize>,
    pub classes: Option<Vec<String>>,
    /// A file naming the model's classes, one per line, for a model whose ONNX metadata
    /// does not (Ultralytics exports do). Relative to the config file.
    pub names: Option<PathBuf>,
    pub agnostic: Option<bool>,
    /// `fp32` (default), `f16` or `int8`. At int8 the model's quantized file is loaded: the
    /// manifest's int8 file for a model named there, else `<stem>_int8.onnx` beside `model`
    /// (or give the `_int8.onnx` file itself as `model`).
    pub precision: Option<crate::infer::Precision>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {path}, line {line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("config {path}: `{key}` {problem}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
}

impl BoardConfig {
    pub fn load(path: &Path) -> Result<BoardConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        BoardConfig::parse(path, &text)
    }

    /// Parses and validates `text`, read from `path` (named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<BoardConfig, ConfigError> {
        let config: BoardConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: error_line(text, &e),
            message: e.message().replace('\n', " ").trim().to_string(),
        })?;
        config.validate(path)?;
        Ok(config.resolve_paths(path))
    }

    /// Makes file paths in the config relative to the config's directory, as a user reads them.
    fn resolve_paths(mut self, path: &Path) -> BoardConfig {
        let dir = path.parent().unwrap_or(Path::new(""));
        if let Some(p) = self.detector.names.as_mut().filter(|p| p.is_relative()) {
            *p = dir.join(&*p);
        }
        if let Some(m) = self.mqtt.as_mut() {
            for p in [
                &mut m.password_file,
                &mut m.ca_file,
                &mut m.client_cert_file,
                &mut m.client_key_file,
            ]
            .into_iter()
            .flatten()
            {
                if p.is_relative() {
                    *p = dir.join(&*p);
                }
            }
        }
        self
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
        };
        let d = &self.detector;
        if let Some([w, h]) = d.input_size {
            crate::infer::yolo::check_input_size(w, h, 32)
                .map_err(|p| invalid("detector.input_size", p))?;
        }
        if d.threads == Some(0) {
            return Err(invalid("detector.threads", "must be at least 1".into()));
        }
        for (key, value) in [("detector.conf", d.conf), ("detector.iou", d.iou)] {
            if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
                return Err(invalid(key, format!("is {v}; it must be between 0 and 1")));
            }
        }
        if d.max_det == Some(0) {
            return Err(invalid("detector.max_det", "must be at least 1".into()));
        }
        self.segmenter
            .validate()
            .map_err(|(key, problem)| invalid(key, problem))?;
        if let Some(m) = &self.mqtt {
            if let Some(url) = &m.url {
                BrokerUrl::parse(url).map_err(|p| invalid("mqtt.url", p))?;
            }
            if let Some(q) = m.qos.filter(|q| *q > 1) {
                return Err(invalid(
                    "mqtt.qos",
                    format!("is {q}; lookout publishes at 0 or 1"),
                ));
            }
            if let Some(p) = m.client_id.as_deref().and_then(client_id_problem) {
                return Err(invalid("mqtt.client_id", p));
            }
            if let Some(p) = m.topic_prefix.as_deref().and_then(topic_prefix_problem) {
                return Err(invalid("mqtt.topic_prefix", p));
            }
            if let Some(p) = m
                .home_assistant_prefix
                .as_deref()
                .and_then(topic_prefix_problem)
            {
                return Err(invalid("mqtt.home_assistant_prefix", p));
            }
            if let Some(classes) = &m.home_assistant_classes {
                if classes.is_empty() || classes.iter().any(|c| c.trim().is_empty()) {
                    return Err(invalid(
                        "mqtt.home_assistant_classes",
                        "must list class names, e.g. [\"person\", \"car\"]".into(),
                    ));
                }
            }
            if m.queue_size == Some(0) {
                return Err(invalid("mqtt.queue_size", "must be at least 1".into()));
            }
            if m.password_file.is_some() && m.password_env.is_some() {
                return Err(invalid(
                    "mqtt.password_file",
                    "and mqtt.password_env are both set: keep one".into(),
                ));
            }
            if m.client_cert_file.is_some() != m.client_key_file.is_some() {
                return Err(invalid(
                    "mqtt.client_cert_file",
                    "and mqtt.client_key_file go together: set both or neither".into(),
                ));
            }
            if let Some(s) = m.reconnect_max_s.filter(|s| !(*s >= 0.1 && *s <= 3600.0)) {
                return Err(invalid(
                    "mqtt.reconnect_max_s",
                    format!("is {s}; use 0.1 to 3600 seconds"),
                ));
            }
            if m.keep_alive_s.is_some_and(|k| k > 0 && k < 5) {
                return Err(invalid(
                    "mqtt.keep_alive_s",
                    "must be 0 (off) or at least 5 seconds".into(),
                ));
            }
        }
        self.tracker.validate().map_err(|(k, p)| invalid(k, p))?;
        if let Some(gpio) = &self.gpio {
            gpio.validate().map_err(|(k, p)| invalid(k, p))?;
        }
        if let Some(camera) = &self.camera {
            camera.validate().map_err(|(key, p)| invalid(key, p))?;
        }
        if let Some(replay) = &self.replay {
            replay.validate().map_err(|(key, p)| invalid(key, p))?;
        }
        if let Some(lidar) = &self.lidar {
            lidar
                .validate()
                .map_err(|(key, problem)| invalid(key, problem))?;
        }
        Ok(())
    }
}

/// The defaults every command applies to what a board config leaves unset.
pub mod defaults {
    /// The model used when neither the command line nor a board config names one.
    pub const DEFAULT_MODEL: &str = "yolo11n";
    /// MobileSAM's files unless `--sam-model` or `segmenter.model` say otherwise:
    /// `<prefix>_encoder.onnx` and `<prefix>_decoder.onnx`.
    pub const DEFAULT_SAM_MODEL: &str = "models/mobilesam";
    /// Masks per frame, at most, unless configured.
    pub const DEFAULT_MAX_MASKS: usize = 10;
    /// Largest serial frame for one mask, bytes, unless configured.
    pub const DEFAULT_MASK_FRAME_BYTES: usize = 1024;
    /// Clusters per PointNet batch, unless configured.
    pub const DEFAULT_LIDAR_BATCH: usize = 8;
}

/// A board config with every default the runtime applies filled in and every thread count
/// bounded by the cores present: what `lookout check` prints and what `lookout run` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub config: BoardConfig,
    /// What resolution changed that the user should know (a thread count lowered, ...).
    pub notes: Vec<String>,
}

impl BoardConfig {
    /// Fills in every default and bounds thread counts (see [`Resolved`]). The MQTT section is
    /// resolved by the sink that owns it (`sink::mqtt::MqttConfig::from_section`).
    pub fn resolved(&self) -> Resolved {
        use defaults::*;
        let mut notes = Vec::new();
        let mut bound = |key: &str, threads: &mut Option<usize>, default: usize| {
            let (n, note) = crate::limits::bound_threads(key, threads.unwrap_or(default));
            notes.extend(note);
            *threads = Some(n);
        };
        let mut r = self.clone();
        r.board.device_id.get_or_insert(0);
        let d = &mut r.detector;
        let decode = crate::decode::yolo::DecodeParams::default();
        d.model.get_or_insert_with(|| DEFAULT_MODEL.to_string());
        bound("detector.threads", &mut d.threads, crate::limits::cores());
        d.conf.get_or_insert(decode.conf_threshold);
        d.iou.get_or_insert(decode.iou_threshold);
        d.max_det.get_or_insert(decode.max_det);
        d.agnostic.get_or_insert(false);
        d.precision.get_or_insert_with(Default::default);
        if let Some(camera) = r.camera.as_mut() {
            camera.resolve();
        }
        r.segmenter.enabled.get_or_insert(false);
        if self.segmenter.enabled == Some(true) {
            let s = &mut r.segmenter;
            s.model.get_or_insert_with(|| DEFAULT_SAM_MODEL.to_string());
            s.max_masks.get_or_insert(DEFAULT_MAX_MASKS);
            s.mask_frame_bytes.get_or_insert(DEFAULT_MASK_FRAME_BYTES);
            s.interval_s.get_or_insert(0.0);
            bound("segmenter.threads", &mut s.threads, 1);
            s.precision.get_or_insert_with(Default::default);
        }
        if let Some(l) = r.lidar.as_mut() {
            let params = l.segment_params();
            l.sensor.get_or_insert_with(|| "velodyne".into());
            l.model.get_or_insert_with(|| "auto".into());
            l.classifier
                .get_or_insert_with(|| crate::infer::pointnet::DEFAULT_POINT_MODEL.into());
            l.silence_timeout_ms.get_or_insert(1000);
            if l.replay.is_some() {
                l.port.get_or_insert(2368);
            }
            bound("lidar.threads", &mut l.threads, 1);
            l.batch.get_or_insert(DEFAULT_LIDAR_BATCH);
            l.max_range_m.get_or_insert(params.crop.max_range_m);
            l.voxel_m.get_or_insert(params.voxel_m);
            l.cluster_tolerance_m
                .get_or_insert(params.cluster.tolerance_m);
            l.min_points.get_or_insert(params.cluster.min_points);
        }
        Resolved { config: r, notes }
    }
}

/// The 1-based line an error is about. toml spans an unknown field's whole table, so the
/// offending key itself is looked up to point at the right line.
fn error_line(text: &str, e: &toml::de::Error) -> usize {
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let unknown = e
        .message()
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next());
    if let Some(key) = unknown {
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            let trimmed = line.trim_start();
            if trimmed
                .strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
            {
                return line_of(offset);
            }
            offset += line.len();
        }
    }
    e.span().map_or(0, |s| line_of(s.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BoardConfig, ConfigError> {
        BoardConfig::parse(Path::new("board.toml"), text)
    }

    #[test]
    fn shipped_board_configs_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("board-configs");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                BoardConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 3);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[detector]\nmodel = \"yolo11n\"\ntreads = 4\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("board.toml") && err.contains("line 3") && err.contains("treads"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let err = parse("[detector]\ninput_size = [641, 480]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("detector.input_size") && err.contains("multiples of 32"),
            "{err}"
        );
        let err = parse("[detector]\nconf = 1.5\n").unwrap_err().to_string();
        assert!(
            err.contains("detector.conf") && err.contains("between 0 and 1"),
            "{err}"
        );
        let err = parse("[detector]\nthreads = \"four\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn broker_urls_parse_with_default_ports() {
        let u = BrokerUrl::parse("mqtt://broker.local").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (false, "broker.local", 1883)
        );
        let u = BrokerUrl::parse("mqtts://10.0.0.2:8884/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "10.0.0.2", 8884));
        let u = BrokerUrl::parse("mqtt://[::1]:1999").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1999));
        for bad in [
            "tcp://x:1",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:99999",
            "mqtt://u@h",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mqtt_section_is_checked_key_by_key() {
        let err = parse("[mqtt]\nurl = \"http://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mqtt.url") && err.contains("mqtt://"), "{err}");
        let err = parse("[mqtt]\nqos = 2\n").unwrap_err().to_string();
        assert!(err.contains("mqtt.qos"), "{err}");
        let err = parse("[mqtt]\npassword_file = \"a\"\npassword_env = \"B\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("keep one"), "{err}");
        let err = parse("[mqtt]\npayload = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("postcard"), "{err}");
        let err = parse("[mqtt]\npasword = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("pasword"), "{err}");
    }

    #[test]
    fn mqtt_files_are_relative_to_the_config() {
        let cfg = BoardConfig::parse(
            Path::new("/etc/lookout/board.toml"),
            "[mqtt]\nca_file = \"ca.pem\"\npassword_file = \"/run/secret\"\n",
        )
        .unwrap();
        let m = cfg.mqtt.unwrap();
        assert_eq!(m.ca_file.unwrap(), Path::new("/etc/lookout/ca.pem"));
        assert_eq!(m.password_file.unwrap(), Path::new("/run/secret"));
    }

    #[test]
    fn tracker_and_gpio_errors_name_file_and_key() {
        let err = parse("[tracker]\nmin_hits = 0\n").unwrap_err().to_string();
        assert!(
            err.contains("board.toml") && err.contains("tracker.min_hits"),
            "{err}"
        );
        let err = parse("[tracker]\nmax_misses = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_misses") && err.contains("line 2"),
            "{err}"
        );
        let err = parse("[gpio]\nalert_pin = 99\nalert_classes = [\"person\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("board.toml") && err.contains("gpio.alert_pin") && err.contains("0 to 27"),
            "{err}"
        );
    }

    #[test]
    fn camera_and_replay_values_are_checked_with_file_and_key() {
        let err = parse("[camera]\ndevice = \"/dev/video0\"\nformat = \"H264\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("board.toml") && err.contains("camera.format") && err.contains("YUYV"),
            "{err}"
        );
        let err = parse("[replay]\npath = \"frames\"\nfps = -1.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("replay.fps"), "{err}");
        let err = parse("[camera]\ndevise = \"/dev/video0\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("devise") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn empty_config_is_all_defaults() {
        assert_eq!(parse("").unwrap(), BoardConfig::default());
    }
}
