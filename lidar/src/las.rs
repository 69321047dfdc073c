//! LAS files (the ASPRS exchange format of survey and aerial LiDAR), uncompressed, through the
//! `las` crate. LAS coordinates are georeferenced (hundreds of kilometres from the origin),
//! which f32 cannot hold to the centimetre, so the cloud is moved to a local frame: x and y
//! relative to the centre of the file's bounds, z relative to their bottom. The offset is
//! returned so positions can be mapped back.

use crate::{Point, PointCloud, SourceError};
use std::path::Path;

/// A LAS file's points in a local frame, and where that frame's origin is in the file's.
#[derive(Debug, Clone, PartialEq)]
pub struct LasCloud {
    pub cloud: PointCloud,
    /// Add to a local position to get the file's coordinates.
    pub origin: [f64; 3],
    /// Points the header declares (compare with `cloud.points.len()`).
    pub declared_points: u64,
}

pub fn read_las(path: &Path) -> Result<LasCloud, SourceError> {
    let format = |e: las::Error| SourceError::Format {
        path: path.to_path_buf(),
        expected: "LAS",
        reason: e.to_string(),
    };
    if !path.exists() {
        return Err(SourceError::Open {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    let mut reader = las::Reader::from_path(path).map_err(format)?;
    let header = reader.header();
    let bounds = header.bounds();
    let declared_points = header.number_of_points();
    // The header's point count is believed only as far as the file can hold it: a forged count
    // would otherwise size the allocation (50 M points from a 5 KB file).
    let record_len = u64::from(header.point_format().len());
    let file_len = std::fs::metadata(path)
        .map_err(|source| SourceError::Open {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    if declared_points
        .checked_mul(record_len)
        .is_none_or(|bytes| bytes > file_len)
    {
        return Err(SourceError::Format {
            path: path.to_path_buf(),
            expected: "LAS",
            reason: format!(
                "the header declares {declared_points} points of {record_len} bytes, more than the file's {file_len} bytes: the file is truncated or its header is corrupt"
            ),
        });
    }
    let origin = [
        (bounds.min.x + bounds.max.x) / 2.0,
        (bounds.min.y + bounds.max.y) / 2.0,
        bounds.min.z,
    ];
    let data = reader.read_all().map_err(format)?;
    let points = data
        .points()
        .map(|p| p.map_err(format))
        .map(|p| {
            p.map(|p| Point {
                position_m: [
                    (p.x - origin[0]) as f32,
                    (p.y - origin[1]) as f32,
                    (p.z - origin[2]) as f32,
                ],
                // LAS intensities are 16-bit; most writers scale the sensor's 8 bits up.
                intensity: if p.intensity > 255 {
                    (p.intensity >> 8) as u8
                } else {
                    p.intensity as u8
                },
                ring: 0,
                return_index: p.return_number.saturating_sub(1),
                time_offset_us: 0,
            })
        })
        .collect::<Result<Vec<Point>, SourceError>>()?;
    Ok(LasCloud {
        cloud: PointCloud {
            timestamp_us: 0,
            points,
            rings: 0,
            complete: true,
        },
        origin,
        declared_points,
    })
}
