//! The sensor's metadata JSON: what an Ouster packet cannot say about itself (beam angles, the
//! beam-origin offset, the lidar-to-sensor transform, columns per frame, the packet profile).
//! Both layouts are read: the flat one of firmware 1.x/2.x (`beam_altitude_angles` at the top,
//! `data_format`) and the nested one of firmware 2.4+ (`beam_intrinsics`, `lidar_data_format`,
//! `lidar_intrinsics`, `config_params`). Missing optional fields get the values Ouster's own
//! client uses for them, so an old OS1 file still yields the same points as Ouster's tools.

use super::packet::Profile;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What was wrong with a metadata file; the message names the file, the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("cannot read Ouster metadata {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not Ouster sensor metadata: {reason} (save it from the sensor with `ouster-cli source SENSOR metadata` or GET /api/v1/sensor/metadata)")]
    Invalid { path: PathBuf, reason: String },
}

/// The parts of the metadata the decoder needs.
#[derive(Debug, Clone, PartialEq)]
pub struct OusterMetadata {
    /// Elevation of each beam, degrees, top beam first (row order of the packets).
    pub beam_altitude_deg: Vec<f64>,
    /// Azimuth offset of each beam from its column's encoder angle, degrees.
    pub beam_azimuth_deg: Vec<f64>,
    /// Columns in a full rotation (512, 1024, 2048 from `lidar_mode`, or `columns_per_frame`).
    pub columns_per_frame: usize,
    pub columns_per_packet: usize,
    /// First and last column the sensor sends (an azimuth window narrows it).
    pub column_window: (usize, usize),
    /// Distance from the lidar origin to the beams' origin on the spinning optics, mm.
    pub lidar_origin_to_beam_origin_mm: f64,
    /// Row-major 4×4 transform from the lidar frame to the sensor frame (translation in mm).
    pub lidar_to_sensor_transform: [f64; 16],
    pub profile: Profile,
    /// `prod_line`, e.g. "OS-1-64", when the file names it.
    pub product: Option<String>,
    /// UDP port the sensor sends lidar packets to, when the file names it.
    pub udp_port_lidar: Option<u16>,
    /// Firmware 1.x metadata (none of the keys firmware 2.0 added): its legacy packets carry
    /// an uncalibrated 16-bit reflectivity instead of the calibrated 0–255 of later firmware.
    pub firmware_1: bool,
}

/// Ouster's design value for the lidar frame in the sensor frame: turned 180° about z (the
/// lidar frame's x points at the connector) and 36.18 mm up.
const DEFAULT_LIDAR_TO_SENSOR: [f64; 16] = [
    -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 36.18, 0.0, 0.0, 0.0, 1.0,
];

/// Ouster's defaults for the beam-origin offset by product line (first generation otherwise).
fn default_beam_origin_mm(product: Option<&str>) -> f64 {
    match product {
        Some(p) if p.starts_with("OS-0-") => 27.67,
        Some(p) if p.starts_with("OS-1-") => 15.806,
        Some(p) if p.starts_with("OS-2-") => 13.762,
        _ => 12.163,
    }
}

impl OusterMetadata {
    /// Reads and checks a metadata file.
    pub fn load(path: &Path) -> Result<OusterMetadata, MetadataError> {
        let text = std::fs::read_to_string(path).map_err(|source| MetadataError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        OusterMetadata::parse(&text).map_err(|reason| MetadataError::Invalid {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses metadata text; `Err` says which key is missing or wrong.
    pub fn parse(text: &str) -> Result<OusterMetadata, String> {
        let root: Value =
            serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
        if !root.is_object() {
            return Err("the top level is not a JSON object".into());
        }
        // A key at the top level (old firmware) or inside one of the newer sections.
        let find = |key: &str, sections: &[&str]| -> Option<&Value> {
            root.get(key).or_else(|| {
                sections
                    .iter()
                    .find_map(|s| root.get(*s).and_then(|v| v.get(key)))
            })
        };
        let numbers = |key: &str, sections: &[&str]| -> Result<Option<Vec<f64>>, String> {
            let Some(value) = find(key, sections) else {
                return Ok(None);
            };
            value
                .as_array()
                .and_then(|a| a.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                .map(Some)
                .ok_or_else(|| format!("`{key}` is not a list of numbers"))
        };
        let beams = &["beam_intrinsics"];
        let beam_altitude_deg =
            numbers("beam_altitude_angles", beams)?.ok_or("`beam_altitude_angles` is missing")?;
        let beam_azimuth_deg =
            numbers("beam_azimuth_angles", beams)?.ok_or("`beam_azimuth_angles` is missing")?;
        let rows = beam_altitude_deg.len();
        if !matches!(rows, 16 | 32 | 64 | 128) || beam_azimuth_deg.len() != rows {
            return Err(format!(
                "`beam_altitude_angles` has {rows} and `beam_azimuth_angles` {} entries; \
                 expected 16, 32, 64 or 128 of each",
                beam_azimuth_deg.len()
            ));
        }
        let format_sections = &["lidar_data_format", "data_format"];
        let mode = find("lidar_mode", &["config_params"]).and_then(Value::as_str);
        let mode_columns = mode.and_then(|m| m.split('x').next()?.parse::<usize>().ok());
        let count = |key: &str| find(key, format_sections).and_then(Value::as_u64);
        let columns_per_frame = count("columns_per_frame")
            .map(|c| c as usize)
            .or(mode_columns)
            .ok_or("neither `columns_per_frame` nor `lidar_mode` (e.g. \"1024x10\") is given")?;
        if !matches!(columns_per_frame, 512 | 1024 | 2048 | 4096) {
            return Err(format!(
                "{columns_per_frame} columns per frame; Ouster modes have 512, 1024, 2048 or 4096"
            ));
        }
        if let Some(pixels) = count("pixels_per_column") {
            if pixels as usize != rows {
                return Err(format!(
                    "`pixels_per_column` is {pixels} but {rows} beam angles are listed"
                ));
            }
        }
        let columns_per_packet = count("columns_per_packet").map_or(16, |c| c as usize);
        if !(1..=64).contains(&columns_per_packet) {
            return Err(format!(
                "`columns_per_packet` is {columns_per_packet}; expected 1 to 64"
            ));
        }
        let column_window = match find("column_window", format_sections) {
            None => (0, columns_per_frame - 1),
            Some(v) => {
                let pair = v
                    .as_array()
                    .filter(|a| a.len() == 2)
                    .and_then(|a| Some((a[0].as_u64()? as usize, a[1].as_u64()? as usize)))
                    .ok_or("`column_window` is not a pair of column numbers")?;
                if pair.0 >= columns_per_frame || pair.1 >= columns_per_frame {
                    return Err(format!(
                        "`column_window` {pair:?} lies outside 0..{columns_per_frame}"
                    ));
                }
                pair
            }
        };
        let product = find("prod_line", &["sensor_info"])
            .and_then(Value::as_str)
            .map(str::to_string);
        let lidar_origin_to_beam_origin_mm = match find("lidar_origin_to_beam_origin_mm", beams) {
            Some(v) => v
                .as_f64()
                .ok_or("`lidar_origin_to_beam_origin_mm` is not a number")?,
            None => default_beam_origin_mm(product.as_deref()),
        };
        let lidar_to_sensor_transform =
            match numbers("lidar_to_sensor_transform", &["lidar_intrinsics"])? {
                None => DEFAULT_LIDAR_TO_SENSOR,
                Some(m) => m.try_into().map_err(|m: Vec<f64>| {
                    format!(
                        "`lidar_to_sensor_transform` has {} numbers; expected 16",
                        m.len()
                    )
                })?,
            };
        let profile = match find("udp_profile_lidar", &["lidar_data_format", "config_params"])
            .and_then(Value::as_str)
        {
            None => Profile::Legacy,
            Some(name) => Profile::from_name(name).ok_or_else(|| {
                format!(
                    "`udp_profile_lidar` is {name}; supported: LEGACY, RNG19_RFL8_SIG16_NIR16, \
                     RNG15_RFL8_NIR8, RNG19_RFL8_SIG16_NIR16_DUAL"
                )
            })?,
        };
        let udp_port_lidar = find("udp_port_lidar", &["config_params"])
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0);
        let firmware_1 = [
            "data_format",
            "lidar_data_format",
            "beam_intrinsics",
            "lidar_origin_to_beam_origin_mm",
        ]
        .iter()
        .all(|k| root.get(*k).is_none());
        Ok(OusterMetadata {
            firmware_1,
            beam_altitude_deg,
            beam_azimuth_deg,
            columns_per_frame,
            columns_per_packet,
            column_window,
            lidar_origin_to_beam_origin_mm,
            lidar_to_sensor_transform,
            profile,
            product,
            udp_port_lidar,
        })
    }

    /// Beams (rows) per column.
    pub fn rows(&self) -> usize {
        self.beam_altitude_deg.len()
    }

    /// Size of one lidar packet's UDP payload under this metadata's profile.
    pub fn packet_bytes(&self) -> usize {
        self.profile
            .packet_bytes(self.rows(), self.columns_per_packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn angles(n: usize) -> String {
        let list: Vec<String> = (0..n).map(|i| format!("{}", i as f64 * 0.5)).collect();
        format!("[{}]", list.join(","))
    }

    #[test]
    fn old_flat_metadata_gets_ousters_defaults_for_what_it_lacks() {
        let text = format!(
            r#"{{"beam_altitude_angles": {a}, "beam_azimuth_angles": {a}, "lidar_mode": "2048x10"}}"#,
            a = angles(64)
        );
        let m = OusterMetadata::parse(&text).expect("parses");
        assert_eq!(m.columns_per_frame, 2048);
        assert_eq!(m.column_window, (0, 2047));
        assert_eq!(m.lidar_origin_to_beam_origin_mm, 12.163);
        assert_eq!(m.lidar_to_sensor_transform, DEFAULT_LIDAR_TO_SENSOR);
        assert_eq!(m.profile, Profile::Legacy);
        assert_eq!(m.packet_bytes(), 12_608);
        assert!(m.firmware_1);
    }

    #[test]
    fn nested_metadata_of_newer_firmware_is_read_from_its_sections() {
        let text = format!(
            r#"{{"beam_intrinsics": {{"beam_altitude_angles": {a}, "beam_azimuth_angles": {a},
                 "lidar_origin_to_beam_origin_mm": 15.806}},
                 "lidar_data_format": {{"columns_per_frame": 1024, "columns_per_packet": 16,
                 "pixels_per_column": 32, "column_window": [10, 500],
                 "udp_profile_lidar": "RNG19_RFL8_SIG16_NIR16"}},
                 "lidar_intrinsics": {{"lidar_to_sensor_transform": [1,0,0,0,0,1,0,0,0,0,1,38.195,0,0,0,1]}},
                 "config_params": {{"lidar_mode": "1024x10", "udp_port_lidar": 7502}},
                 "sensor_info": {{"prod_line": "OS-1-32-U0"}}}}"#,
            a = angles(32)
        );
        let m = OusterMetadata::parse(&text).expect("parses");
        assert_eq!(m.rows(), 32);
        assert_eq!(m.column_window, (10, 500));
        assert_eq!(m.lidar_origin_to_beam_origin_mm, 15.806);
        assert_eq!(m.lidar_to_sensor_transform[11], 38.195);
        assert_eq!(m.profile, Profile::Rng19Rfl8Sig16Nir16);
        assert_eq!(m.product.as_deref(), Some("OS-1-32-U0"));
        assert_eq!(m.udp_port_lidar, Some(7502));
        assert!(!m.firmware_1);
        // 32-byte header, 16 columns of (12-byte header + 32 × 12), 32-byte footer.
        assert_eq!(m.packet_bytes(), 32 + 16 * (12 + 32 * 12) + 32);
    }

    #[test]
    fn broken_metadata_is_refused_naming_the_key() {
        for (text, key) in [
            ("[]", "JSON object"),
            ("{}", "beam_altitude_angles"),
            (
                r#"{"beam_altitude_angles": [1,2], "beam_azimuth_angles": [1,2], "lidar_mode": "1024x10"}"#,
                "expected 16",
            ),
            (
                &format!(
                    r#"{{"beam_altitude_angles": {a}, "beam_azimuth_angles": {a}}}"#,
                    a = angles(16)
                ),
                "lidar_mode",
            ),
            (
                &format!(
                    r#"{{"beam_altitude_angles": {a}, "beam_azimuth_angles": {a}, "lidar_mode": "1024x10", "udp_profile_lidar": "FUSA_RNG15"}}"#,
                    a = angles(16)
                ),
                "udp_profile_lidar",
            ),
        ] {
            let err = OusterMetadata::parse(text).expect_err(text);
            assert!(err.contains(key), "{err}");
        }
    }
}
