//! Point Cloud Data (PCD) files as PCL writes them: ASCII and binary data (compressed binary is
//! refused with a message saying how to convert). Fields `x y z` are required; `intensity` and
//! `ring` are used when present; other fields are skipped. Every size and count is checked
//! against the file's length, so a corrupt header gives an error, not a panic or a huge
//! allocation.

use crate::{Point, PointCloud, SourceError};
use std::path::Path;

#[derive(Debug, Clone)]
struct Field {
    name: String,
    size: usize,
    kind: u8,
    count: usize,
}

fn format_error(path: &Path, reason: impl Into<String>) -> SourceError {
    SourceError::Format {
        path: path.to_path_buf(),
        expected: "PCD",
        reason: reason.into(),
    }
}

/// Reads a whole PCD file into one cloud.
pub fn read_pcd(path: &Path) -> Result<PointCloud, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| SourceError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pcd(&bytes).map_err(|reason| format_error(path, reason))
}

/// Parses PCD bytes; the error is a reason for a user.
pub fn parse_pcd(bytes: &[u8]) -> Result<PointCloud, String> {
    let mut fields: Vec<Field> = Vec::new();
    let mut sizes: Vec<usize> = Vec::new();
    let mut kinds: Vec<u8> = Vec::new();
    let mut counts: Vec<usize> = Vec::new();
    let mut points_declared: Option<usize> = None;
    let mut at = 0usize;
    let data_kind;
    loop {
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|e| at + e)
            .ok_or("the header has no DATA line")?;
        let line = std::str::from_utf8(&bytes[at..end])
            .map_err(|_| "the header is not text")?
            .trim();
        at = end + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default().to_ascii_uppercase();
        let values: Vec<&str> = words.collect();
        let numbers = |what: &str| -> Result<Vec<usize>, String> {
            values
                .iter()
                .map(|v| {
                    v.parse::<usize>()
                        .map_err(|_| format!("{what} value '{v}' is not a number"))
                })
                .collect()
        };
        match key.as_str() {
            "FIELDS" => {
                fields = values
                    .iter()
                    .map(|n| Field {
                        name: n.to_string(),
                        size: 4,
                        kind: b'F',
                        count: 1,
                    })
                    .collect()
            }
            "SIZE" => sizes = numbers("SIZE")?,
            "TYPE" => {
                kinds = values
                    .iter()
                    .map(|v| v.as_bytes().first().copied().unwrap_or(b'?'))
                    .collect()
            }
            "COUNT" => counts = numbers("COUNT")?,
            "POINTS" => points_declared = numbers("POINTS")?.first().copied(),
            "DATA" => {
                data_kind = values
                    .first()
                    .map(|v| v.to_ascii_lowercase())
                    .unwrap_or_default();
                break;
            }
            _ => {}
        }
    }
    if fields.is_empty() {
        return Err("the header has no FIELDS line".into());
    }
    for (i, f) in fields.iter_mut().enumerate() {
        f.size = *sizes.get(i).unwrap_or(&4);
        f.kind = *kinds.get(i).unwrap_or(&b'F');
        f.count = *counts.get(i).unwrap_or(&1);
        if !matches!(
            (f.kind, f.size),
            (b'F', 4 | 8) | (b'I' | b'U', 1 | 2 | 4 | 8)
        ) {
            return Err(format!(
                "field {} has unsupported TYPE {} SIZE {}",
                f.name, f.kind as char, f.size
            ));
        }
    }
    let column = |name: &str| fields.iter().position(|f| f.name == name);
    let (Some(ix), Some(iy), Some(iz)) = (column("x"), column("y"), column("z")) else {
        return Err("FIELDS must include x, y and z".into());
    };
    let intensity = column("intensity");
    let ring = column("ring");
    let declared = points_declared.ok_or("the header has no POINTS line")?;
    let values_per_point: usize = fields.iter().map(|f| f.count).sum();
    let mut values = vec![0f64; values_per_point];
    let mut starts = Vec::with_capacity(fields.len());
    let mut s = 0;
    for f in &fields {
        starts.push(s);
        s += f.count;
    }
    let to_point = |v: &[f64]| Point {
        position_m: [
            v[starts[ix]] as f32,
            v[starts[iy]] as f32,
            v[starts[iz]] as f32,
        ],
        intensity: intensity.map_or(0, |i| v[starts[i]].clamp(0.0, 255.0) as u8),
        ring: ring.map_or(0, |i| v[starts[i]].clamp(0.0, 65535.0) as u16),
        return_index: 0,
        time_offset_us: 0,
    };
    let mut points = Vec::new();
    let body = &bytes[at..];
    match data_kind.as_str() {
        "ascii" => {
            let text = std::str::from_utf8(body).map_err(|_| "ASCII data is not text")?;
            for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                let mut count = 0;
                for (slot, word) in values.iter_mut().zip(line.split_whitespace()) {
                    *slot = word.parse::<f64>().map_err(|_| format!("data line {}: '{word}' is not a number", n + 1))?;
                    count += 1;
                }
                if count != values_per_point {
                    return Err(format!("data line {} has {count} values, the header declares {values_per_point}", n + 1));
                }
                let p = to_point(&values);
                if p.position_m.iter().all(|c| c.is_finite()) {
                    points.push(p);
                }
            }
        }
        "binary" => {
            let stride: usize = fields.iter().map(|f| f.size * f.count).sum();
            let needed = declared.checked_mul(stride).ok_or("POINTS is absurdly large")?;
            if body.len() < needed {
                return Err(format!(
                    "binary data has {} bytes but POINTS {declared} × {stride} bytes needs {needed}: the file is truncated",
                    body.len()
                ));
            }
            points.reserve(declared);
            for record in body[..needed].chunks_exact(stride) {
                let mut offset = 0;
                let mut slot = 0;
                for f in &fields {
                    for _ in 0..f.count {
                        let b = &record[offset..offset + f.size];
                        values[slot] = decode_value(f.kind, b);
                        offset += f.size;
                        slot += 1;
                    }
                }
                let p = to_point(&values);
                if p.position_m.iter().all(|c| c.is_finite()) {
                    points.push(p);
                }
            }
        }
        "binary_compressed" => {
            return Err("binary_compressed data is not supported; convert with `pcl_convert_pcd_ascii_binary in.pcd out.pcd 1`".into())
        }
        other => return Err(format!("unknown DATA kind '{other}' (expected ascii or binary)")),
    }
    Ok(PointCloud {
        timestamp_us: 0,
        points,
        rings: 0,
        complete: true,
    })
}

/// Little-endian value of a PCD field.
fn decode_value(kind: u8, b: &[u8]) -> f64 {
    let mut raw = [0u8; 8];
    raw[..b.len()].copy_from_slice(b);
    match (kind, b.len()) {
        (b'F', 4) => f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64,
        (b'F', _) => f64::from_le_bytes(raw),
        (b'U', _) => u64::from_le_bytes(raw) as f64,
        (_, n) => {
            // Sign-extend a two's-complement integer of n bytes.
            let shift = 64 - 8 * n as u32;
            ((u64::from_le_bytes(raw) << shift) as i64 >> shift) as f64
        }
    }
}

/// Writes a cloud as a binary PCD with fields x y z intensity ring (for tools and tests).
pub fn write_pcd_binary(cloud: &PointCloud) -> Vec<u8> {
    let mut out = format!(
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z intensity ring\nSIZE 4 4 4 1 2\nTYPE F F F U U\nCOUNT 1 1 1 1 1\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n",
        n = cloud.points.len()
    )
    .into_bytes();
    for p in &cloud.points {
        for c in p.position_m {
            out.extend_from_slice(&c.to_le_bytes());
        }
        out.push(p.intensity);
        out.extend_from_slice(&p.ring.to_le_bytes());
    }
    out
}
