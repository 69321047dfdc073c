//! Ouster OS0/OS1/OS2 lidar packets into points, and packets into full rotations (frames).
//!
//! A packet does not carry the beam geometry: it comes from the sensor's metadata JSON
//! ([`OusterMetadata`]). Each pixel becomes a point the way Ouster's client library computes
//! it: the column's encoder angle θe = 2π(1 − m/W) for measurement id m of W columns, the
//! beam's azimuth offset θa = −azimuth°, its altitude φ, the range r and the beam-origin offset
//! n (`lidar_origin_to_beam_origin_mm`) give, in the lidar frame,
//! `p = (r − n)·[cos(θe+θa)cos φ, sin(θe+θa)cos φ, sin φ] + n·[cos θe, sin θe, 0]`, then
//! `lidar_to_sensor_transform` moves it to the sensor frame (x forward, y left, z up, as
//! REP-103). Rotations are the sensor's frames: a new frame id starts a new cloud.

pub mod metadata;
pub mod packet;

pub use metadata::{MetadataError, OusterMetadata};
pub use packet::{OusterPacketError, Profile};

use crate::{Point, PointCloud};

/// UDP port Ouster sensors send lidar packets to by default (IMU packets use 7503).
pub const LIDAR_PORT: u16 = 7502;

/// Per-pixel unit direction and offset, metres, already in the sensor frame.
#[derive(Debug, Clone)]
struct XyzTable {
    rows: usize,
    /// `[column * rows + row]`: direction per mm of range.
    direction: Vec<[f32; 3]>,
    /// `[column * rows + row]`: offset, metres.
    offset: Vec<[f32; 3]>,
}

impl XyzTable {
    fn new(m: &OusterMetadata) -> XyzTable {
        let (w, h) = (m.columns_per_frame, m.rows());
        let t = &m.lidar_to_sensor_transform;
        let rotate = |v: [f64; 3]| {
            [
                t[0] * v[0] + t[1] * v[1] + t[2] * v[2],
                t[4] * v[0] + t[5] * v[1] + t[6] * v[2],
                t[8] * v[0] + t[9] * v[1] + t[10] * v[2],
            ]
        };
        let n = m.lidar_origin_to_beam_origin_mm;
        let mut direction = Vec::with_capacity(w * h);
        let mut offset = Vec::with_capacity(w * h);
        for column in 0..w {
            let encoder = 2.0 * std::f64::consts::PI * (1.0 - column as f64 / w as f64);
            for row in 0..h {
                let azimuth = -m.beam_azimuth_deg[row].to_radians();
                let altitude = m.beam_altitude_deg[row].to_radians();
                let d = [
                    (encoder + azimuth).cos() * altitude.cos(),
                    (encoder + azimuth).sin() * altitude.cos(),
                    altitude.sin(),
                ];
                let o = [
                    n * (encoder.cos() - d[0]),
                    n * (encoder.sin() - d[1]),
                    -n * d[2],
                ];
                let (d, o) = (rotate(d), rotate(o));
                direction.push(d.map(|v| (v * 1e-3) as f32));
                offset.push([
                    ((o[0] + t[3]) * 1e-3) as f32,
                    ((o[1] + t[7]) * 1e-3) as f32,
                    ((o[2] + t[11]) * 1e-3) as f32,
                ]);
            }
        }
        XyzTable {
            rows: h,
            direction,
            offset,
        }
    }

    /// The point at `range_mm` of pixel (`column`, `row`).
    fn point(&self, column: usize, row: usize, range_mm: u32) -> [f32; 3] {
        let i = column * self.rows + row;
        let (d, o) = (self.direction[i], self.offset[i]);
        let r = range_mm as f32;
        [r * d[0] + o[0], r * d[1] + o[1], r * d[2] + o[2]]
    }
}

/// Collects lidar packets into frames.
#[derive(Debug)]
pub struct OusterAssembler {
    metadata: OusterMetadata,
    table: XyzTable,
    /// Ring of each row: rows ordered by altitude, lowest beam 0.
    ring: Vec<u16>,
    current: PointCloud,
    frame_id: Option<u16>,
    /// Measurement ids seen in the current frame.
    seen: Vec<bool>,
    seen_count: usize,
    first_timestamp_ns: u64,
    /// Whether a frame has been finished before (the first one may have started mid-turn).
    finished_any: bool,
    gapped_rotations: u64,
    invalid_columns: u64,
}

impl OusterAssembler {
    pub fn new(metadata: OusterMetadata) -> OusterAssembler {
        let altitudes = &metadata.beam_altitude_deg;
        let mut order: Vec<usize> = (0..altitudes.len()).collect();
        order.sort_by(|&a, &b| altitudes[a].total_cmp(&altitudes[b]));
        let mut ring = vec![0u16; altitudes.len()];
        for (rank, &row) in order.iter().enumerate() {
            ring[row] = rank as u16;
        }
        OusterAssembler {
            table: XyzTable::new(&metadata),
            ring,
            seen: vec![false; metadata.columns_per_frame],
            metadata,
            current: PointCloud::default(),
            frame_id: None,
            seen_count: 0,
            first_timestamp_ns: 0,
            finished_any: false,
            gapped_rotations: 0,
            invalid_columns: 0,
        }
    }

    pub fn metadata(&self) -> &OusterMetadata {
        &self.metadata
    }

    /// Frames finished with columns missing (lost packets): marked incomplete.
    pub fn gapped_rotations(&self) -> u64 {
        self.gapped_rotations
    }

    /// Columns the sensor flagged as not measured (skipped).
    pub fn invalid_columns(&self) -> u64 {
        self.invalid_columns
    }

    /// Columns a full frame holds: the metadata's column window, which may wrap past 0.
    fn window_columns(&self) -> usize {
        let (first, last) = self.metadata.column_window;
        let w = self.metadata.columns_per_frame;
        (last + w - first) % w + 1
    }

    /// Decodes one lidar packet; returns the frames it finished (usually none or one).
    pub fn push(&mut self, payload: &[u8]) -> Result<Vec<PointCloud>, OusterPacketError> {
        let m = &self.metadata;
        let columns = packet::columns(
            payload,
            m.profile,
            m.rows(),
            m.columns_per_packet,
            m.columns_per_frame,
        )?;
        let returns = m.profile.returns();
        // Firmware 1.x reflectivity spans 16 bits: keep its top byte.
        let reflectivity_shift = if m.firmware_1 { 8 } else { 0 };
        let mut finished = Vec::new();
        for column in columns {
            if !column.valid {
                self.invalid_columns += 1;
                continue;
            }
            if self.frame_id != Some(column.frame_id) {
                finished.extend(self.finish_frame());
                self.frame_id = Some(column.frame_id);
                self.first_timestamp_ns = column.timestamp_ns;
                self.current.timestamp_us = column.timestamp_ns / 1000;
                self.current.rings = self.ring.len() as u16;
            }
            let id = usize::from(column.measurement_id);
            if !std::mem::replace(&mut self.seen[id], true) {
                self.seen_count += 1;
            }
            let time_offset_us =
                (column.timestamp_ns.saturating_sub(self.first_timestamp_ns) / 1000) as u32;
            for row in 0..self.ring.len() {
                for which in 0..returns {
                    let (range_mm, reflectivity) = column.pixel(row, which);
                    if range_mm == 0 {
                        continue;
                    }
                    self.current.points.push(Point {
                        position_m: self.table.point(id, row, range_mm),
                        intensity: (reflectivity >> reflectivity_shift).min(255) as u8,
                        ring: self.ring[row],
                        return_index: which as u8,
                        time_offset_us,
                    });
                }
            }
        }
        Ok(finished)
    }

    /// Ends the frame being built: complete when every column of the window was seen.
    fn finish_frame(&mut self) -> Option<PointCloud> {
        self.frame_id?;
        let mut cloud = std::mem::take(&mut self.current);
        let full = self.seen_count >= self.window_columns();
        // The first frame of a stream usually started mid-turn: short, but not a loss.
        if !full && self.finished_any {
            self.gapped_rotations += 1;
        }
        cloud.complete = full;
        self.finished_any = true;
        self.seen.iter_mut().for_each(|s| *s = false);
        self.seen_count = 0;
        self.frame_id = None;
        (!cloud.points.is_empty()).then_some(cloud)
    }

    /// The frame in progress (at the end of a capture), complete only if it was whole.
    pub fn finish(&mut self) -> Option<PointCloud> {
        let gapped = self.gapped_rotations;
        let cloud = self.finish_frame();
        // A frame cut by the end of the capture is short, not a loss.
        self.gapped_rotations = gapped;
        cloud
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-beam legacy metadata with zero azimuth offsets and no beam offset or transform,
    /// so points can be checked against plain spherical coordinates.
    fn plain_metadata() -> OusterMetadata {
        let altitudes: Vec<String> = (0..16)
            .map(|i| format!("{}", 15.0 - 2.0 * i as f64))
            .collect();
        OusterMetadata::parse(&format!(
            r#"{{"beam_altitude_angles": [{}], "beam_azimuth_angles": [{}],
                "lidar_mode": "512x10", "lidar_origin_to_beam_origin_mm": 0,
                "lidar_to_sensor_transform": [1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1]}}"#,
            altitudes.join(","),
            vec!["0"; 16].join(",")
        ))
        .expect("metadata")
    }

    /// A legacy packet of 16 columns starting at `first_column`, every pixel at `range_mm`.
    fn legacy_packet(frame_id: u16, first_column: u16, range_mm: u32) -> Vec<u8> {
        let mut packet = Vec::new();
        for c in 0..16u16 {
            packet.extend(u64::from(first_column + c).to_le_bytes());
            packet.extend((first_column + c).to_le_bytes());
            packet.extend(frame_id.to_le_bytes());
            packet.extend(0u32.to_le_bytes());
            for _ in 0..16 {
                packet.extend(range_mm.to_le_bytes());
                packet.extend([7, 0, 0, 0, 0, 0, 0, 0]);
            }
            packet.extend(0xFFFF_FFFFu32.to_le_bytes());
        }
        packet
    }

    #[test]
    fn legacy_columns_become_points_at_the_encoder_angle() {
        let mut assembler = OusterAssembler::new(plain_metadata());
        // Column 128 of 512 is a quarter turn: encoder angle 2π·(1 − 1/4), i.e. −90°, so the
        // beams point to −y (right).
        assert!(assembler
            .push(&legacy_packet(3, 128, 10_000))
            .expect("decodes")
            .is_empty());
        let cloud = assembler.finish().expect("a partial frame");
        assert!(!cloud.complete);
        assert_eq!(cloud.points.len(), 16 * 16);
        let p = cloud.points[0];
        let up = 15f32.to_radians();
        assert!((p.position_m[0]).abs() < 1e-3, "{p:?}");
        assert!((p.position_m[1] + 10.0 * up.cos()).abs() < 1e-3, "{p:?}");
        assert!((p.position_m[2] - 10.0 * up.sin()).abs() < 1e-3, "{p:?}");
        assert_eq!((p.ring, p.intensity), (15, 7));
    }

    #[test]
    fn a_frame_is_complete_only_with_every_column_and_a_lost_packet_is_counted() {
        let mut assembler = OusterAssembler::new(plain_metadata());
        let mut clouds = Vec::new();
        for frame in 0..3u16 {
            for packet in 0..32u16 {
                // Frame 1 loses one packet.
                if frame == 1 && packet == 7 {
                    continue;
                }
                clouds.extend(
                    assembler
                        .push(&legacy_packet(frame, packet * 16, 5000))
                        .expect("ok"),
                );
            }
        }
        clouds.extend(assembler.finish());
        let complete: Vec<bool> = clouds.iter().map(|c| c.complete).collect();
        assert_eq!(complete, [true, false, true]);
        assert_eq!(assembler.gapped_rotations(), 1);
        assert_eq!(clouds[0].points.len(), 512 * 16);
    }

    /// An RNG19_RFL8_SIG16_NIR16 packet (firmware 2.2+): 32-byte header (packet type 1,
    /// frame id), 16 columns of [timestamp, measurement id, status] + 16 pixels, 32-byte footer.
    fn single_return_packet(frame_id: u16, first_column: u16, valid: bool) -> Vec<u8> {
        let mut packet = vec![0u8; 32];
        packet[0..2].copy_from_slice(&1u16.to_le_bytes());
        packet[2..4].copy_from_slice(&frame_id.to_le_bytes());
        for c in 0..16u16 {
            packet.extend(1_000u64.to_le_bytes());
            packet.extend((first_column + c).to_le_bytes());
            packet.extend(u16::from(valid).to_le_bytes());
            for row in 0..16u32 {
                // 19-bit range with flag bits above it that must be masked off.
                packet.extend((0xFFF8_0000 | (2_000 + row)).to_le_bytes());
                packet.extend([9, 0, 0, 0, 0, 0, 0, 0]);
            }
        }
        packet.extend([0u8; 32]);
        packet
    }

    #[test]
    fn single_return_profile_packets_decode_with_their_header_and_status() {
        let mut metadata = plain_metadata();
        metadata.profile = Profile::Rng19Rfl8Sig16Nir16;
        assert_eq!(metadata.packet_bytes(), 32 + 16 * (12 + 16 * 12) + 32);
        let mut assembler = OusterAssembler::new(metadata);
        assembler
            .push(&single_return_packet(5, 0, true))
            .expect("decodes");
        assembler
            .push(&single_return_packet(5, 16, false))
            .expect("decodes");
        let cloud = assembler.finish().expect("a frame");
        // Only the valid columns: 16 columns × 16 beams.
        assert_eq!(cloud.points.len(), 256);
        assert_eq!(assembler.invalid_columns(), 16);
        // Column 0 looks straight ahead (encoder angle 2π); row 0 is 15° up at 2.000 m.
        let p = cloud.points[0];
        let up = 15f32.to_radians();
        assert!((p.position_m[0] - 2.0 * up.cos()).abs() < 1e-3, "{p:?}");
        assert!(p.position_m[1].abs() < 1e-3, "{p:?}");
        assert_eq!(p.intensity, 9);
        let mut not_lidar = single_return_packet(5, 0, true);
        not_lidar[0] = 2;
        assert_eq!(
            assembler.push(&not_lidar),
            Err(OusterPacketError::NotLidar(2))
        );
    }

    #[test]
    fn packets_of_the_wrong_size_or_column_are_refused() {
        let mut assembler = OusterAssembler::new(plain_metadata());
        let short = legacy_packet(0, 0, 1000);
        assert!(matches!(
            assembler.push(&short[..short.len() - 1]),
            Err(OusterPacketError::WrongSize { .. })
        ));
        assert!(matches!(
            assembler.push(&legacy_packet(0, 600, 1000)),
            Err(OusterPacketError::BadMeasurementId { id: 600, .. })
        ));
    }
}
