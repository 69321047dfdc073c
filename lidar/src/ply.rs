//! PLY point files: ASCII and binary (either byte order). The `vertex` element's `x y z` are
//! required, `intensity` (or `scalar_intensity`) and `ring` used when present. Elements after
//! the vertices (faces of a mesh) are ignored; the vertex element must come first, as every
//! point-cloud writer puts it.

use crate::{Point, PointCloud, SourceError};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Ascii,
    LittleEndian,
    BigEndian,
}

#[derive(Debug, Clone)]
struct Property {
    name: String,
    size: usize,
    kind: u8,
}

/// Reads a whole PLY file into one cloud.
pub fn read_ply(path: &Path) -> Result<PointCloud, SourceError> {
    let bytes = std::fs::read(path).map_err(|source| SourceError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    parse_ply(&bytes).map_err(|reason| SourceError::Format {
        path: path.to_path_buf(),
        expected: "PLY",
        reason,
    })
}

fn scalar(type_name: &str) -> Option<(usize, u8)> {
    Some(match type_name {
        "char" | "int8" => (1, b'i'),
        "uchar" | "uint8" => (1, b'u'),
        "short" | "int16" => (2, b'i'),
        "ushort" | "uint16" => (2, b'u'),
        "int" | "int32" => (4, b'i'),
        "uint" | "uint32" => (4, b'u'),
        "float" | "float32" => (4, b'f'),
        "double" | "float64" => (8, b'f'),
        _ => return None,
    })
}

/// Parses PLY bytes; the error is a reason for a user.
pub fn parse_ply(bytes: &[u8]) -> Result<PointCloud, String> {
    if !bytes.starts_with(b"ply") {
        return Err("it does not start with 'ply'".into());
    }
    let mut at = 0;
    let mut encoding = None;
    let mut vertices: Option<usize> = None;
    let mut properties: Vec<Property> = Vec::new();
    let mut in_vertex = false;
    loop {
        let end = bytes[at..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|e| at + e)
            .ok_or("the header has no end_header line")?;
        let line = std::str::from_utf8(&bytes[at..end])
            .map_err(|_| "the header is not text")?
            .trim();
        at = end + 1;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["format", kind, ..] => {
                encoding = Some(match *kind {
                    "ascii" => Encoding::Ascii,
                    "binary_little_endian" => Encoding::LittleEndian,
                    "binary_big_endian" => Encoding::BigEndian,
                    other => return Err(format!("unknown format '{other}'")),
                })
            }
            ["element", name, count] => {
                if *name == "vertex" {
                    if vertices.is_some() {
                        return Err("two vertex elements".into());
                    }
                    vertices = Some(
                        count
                            .parse()
                            .map_err(|_| format!("vertex count '{count}' is not a number"))?,
                    );
                    in_vertex = true;
                } else {
                    if vertices.is_none() {
                        return Err(format!("element '{name}' comes before the vertices; only files with the vertex element first are supported"));
                    }
                    in_vertex = false;
                }
            }
            ["property", "list", ..] if in_vertex => {
                return Err("list properties on vertices are not supported".into())
            }
            ["property", type_name, name] if in_vertex => {
                let (size, kind) = scalar(type_name)
                    .ok_or_else(|| format!("unknown property type '{type_name}'"))?;
                properties.push(Property {
                    name: name.to_string(),
                    size,
                    kind,
                });
            }
            ["end_header"] => break,
            _ => {}
        }
    }
    let encoding = encoding.ok_or("the header has no format line")?;
    let count = vertices.ok_or("the header has no vertex element")?;
    let column = |names: &[&str]| {
        properties
            .iter()
            .position(|p| names.contains(&p.name.as_str()))
    };
    let (Some(ix), Some(iy), Some(iz)) = (column(&["x"]), column(&["y"]), column(&["z"])) else {
        return Err("the vertex element must have x, y and z".into());
    };
    let intensity = column(&["intensity", "scalar_intensity", "reflectance"]);
    let ring = column(&["ring", "scalar_ring"]);
    let mut values = vec![0f64; properties.len()];
    let to_point = |v: &[f64]| Point {
        position_m: [v[ix] as f32, v[iy] as f32, v[iz] as f32],
        intensity: intensity.map_or(0, |i| v[i].clamp(0.0, 255.0) as u8),
        ring: ring.map_or(0, |i| v[i].clamp(0.0, 65535.0) as u16),
        return_index: 0,
        time_offset_us: 0,
    };
    let body = &bytes[at..];
    let mut points = Vec::new();
    match encoding {
        Encoding::Ascii => {
            let text = std::str::from_utf8(body).map_err(|_| "ASCII data is not text")?;
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            for n in 0..count {
                let line = lines
                    .next()
                    .ok_or_else(|| format!("the file ends after {n} of {count} vertices"))?;
                let mut read = 0;
                for (slot, word) in values.iter_mut().zip(line.split_whitespace()) {
                    *slot = word
                        .parse()
                        .map_err(|_| format!("vertex {}: '{word}' is not a number", n + 1))?;
                    read += 1;
                }
                if read < values.len() {
                    return Err(format!(
                        "vertex {} has {read} values, expected {}",
                        n + 1,
                        values.len()
                    ));
                }
                points.push(to_point(&values));
            }
        }
        Encoding::LittleEndian | Encoding::BigEndian => {
            let stride: usize = properties.iter().map(|p| p.size).sum();
            let needed = count
                .checked_mul(stride)
                .ok_or("vertex count is absurdly large")?;
            if body.len() < needed {
                return Err(format!("binary data has {} bytes, {count} vertices need {needed}: the file is truncated", body.len()));
            }
            points.reserve(count);
            for record in body[..needed].chunks_exact(stride) {
                let mut offset = 0;
                for (slot, p) in values.iter_mut().zip(&properties) {
                    let mut raw = [0u8; 8];
                    raw[..p.size].copy_from_slice(&record[offset..offset + p.size]);
                    if encoding == Encoding::BigEndian {
                        raw[..p.size].reverse();
                    }
                    *slot = match (p.kind, p.size) {
                        (b'f', 4) => f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as f64,
                        (b'f', _) => f64::from_le_bytes(raw),
                        (b'u', _) => u64::from_le_bytes(raw) as f64,
                        (_, n) => {
                            let shift = 64 - 8 * n as u32;
                            ((u64::from_le_bytes(raw) << shift) as i64 >> shift) as f64
                        }
                    };
                    offset += p.size;
                }
                points.push(to_point(&values));
            }
        }
    }
    points.retain(|p| p.position_m.iter().all(|c| c.is_finite()));
    Ok(PointCloud {
        timestamp_us: 0,
        points,
        rings: 0,
        complete: true,
    })
}
