//! Board configuration: one TOML file per board (`board-configs/*.toml`) holding the settings
//! that differ between boards. Boards are data, not Cargo features. Every key is checked:
//! unknown keys and bad values are refused with the file, the key and the fix.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardConfig {
    #[serde(default)]
    pub board: BoardSection,
    #[serde(default)]
    pub detector: DetectorSection,
    /// A live LiDAR and its classifier (`lookout lidar --config`).
    pub lidar: Option<crate::source::lidar::LidarSection>,
}

/// What the board is, for logs and reports.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoardSection {
    pub name: Option<String>,
}

/// Detector settings; anything unset falls back to the command line or built-in defaults.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
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
    pub agnostic: Option<bool>,
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
        Ok(config)
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
        if let Some(lidar) = &self.lidar {
            lidar
                .validate()
                .map_err(|(key, problem)| invalid(key, problem))?;
        }
        Ok(())
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
    fn empty_config_is_all_defaults() {
        assert_eq!(parse("").unwrap(), BoardConfig::default());
    }
}
