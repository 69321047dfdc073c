//! Velodyne data packets (VLP-16, Puck Hi-Res, VLP-32C, HDL-32E) into points, and packets into
//! full rotations. Layout from Velodyne's manuals: a 1206-byte UDP payload holds 12 blocks of
//! 100 bytes (flag `FF EE`, azimuth in 0.01° little-endian, 32 × (distance u16 LE, reflectivity
//! u8)), then a 4-byte timestamp (µs past the hour), the return-mode byte (0x37 strongest,
//! 0x38 last, 0x39 dual) and the product byte (0x21 HDL-32E, 0x22 VLP-16, 0x24 Puck Hi-Res,
//! 0x28 VLP-32C).
//!
//! Each firing's azimuth is interpolated between its block's azimuth and the next block's of
//! the same return, from the firing time within the block; the per-laser vertical angles (and
//! the VLP-32C's per-laser azimuth offsets) are the manuals' nominal values. Coordinates follow
//! ROS REP-103 (x forward, y left, z up); Velodyne's azimuth turns clockwise seen from above.

use crate::{Point, PointCloud};

/// Size of a data packet's UDP payload.
pub const DATA_PACKET_BYTES: usize = 1206;
/// UDP port Velodyne sensors send data packets to by default (position packets use 8308).
pub const DATA_PORT: u16 = 2368;
const BLOCKS: usize = 12;
const BLOCK_BYTES: usize = 100;
const CHANNELS: usize = 32;
const FULL_TURN_CENTIDEG: i32 = 36_000;

/// Sensor models this decoder knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VelodyneModel {
    Vlp16,
    PuckHiRes,
    Vlp32c,
    Hdl32e,
}

/// Vertical angle of each laser id, degrees (manuals' nominal calibration).
const VLP16_VERTICAL_DEG: [f32; 16] = [
    -15.0, 1.0, -13.0, 3.0, -11.0, 5.0, -9.0, 7.0, -7.0, 9.0, -5.0, 11.0, -3.0, 13.0, -1.0, 15.0,
];
const PUCK_HIRES_VERTICAL_DEG: [f32; 16] = [
    -10.0, 0.667, -8.667, 2.0, -7.333, 3.333, -6.0, 4.667, -4.667, 6.0, -3.333, 7.333, -2.0, 8.667,
    -0.667, 10.0,
];
const HDL32E_VERTICAL_DEG: [f32; 32] = [
    -30.67, -9.33, -29.33, -8.0, -28.0, -6.67, -26.67, -5.33, -25.33, -4.0, -24.0, -2.67, -22.67,
    -1.33, -21.33, 0.0, -20.0, 1.33, -18.67, 2.67, -17.33, 4.0, -16.0, 5.33, -14.67, 6.67, -13.33,
    8.0, -12.0, 9.33, -10.67, 10.67,
];
const VLP32C_VERTICAL_DEG: [f32; 32] = [
    -25.0, -1.0, -1.667, -15.639, -11.31, 0.0, -0.667, -8.843, -7.254, 0.333, -0.333, -6.148,
    -5.333, 1.333, 0.667, -4.0, -4.667, 1.667, 1.0, -3.667, -3.333, 3.333, 2.333, -2.667, -3.0,
    7.0, 4.667, -2.333, -2.0, 15.0, 10.333, -1.333,
];
/// VLP-32C lasers sit at four azimuth offsets; the measured azimuth is corrected by
/// subtracting this (the sign convention of the ROS calibration files).
const VLP32C_ROT_CORRECTION_DEG: [f32; 32] = [
    -1.4, 4.2, -1.4, 1.4, -1.4, 1.4, -4.2, 1.4, -1.4, 4.2, -1.4, 1.4, -4.2, 1.4, -4.2, 1.4, -1.4,
    4.2, -1.4, 4.2, -4.2, 1.4, -1.4, 1.4, -1.4, 1.4, -1.4, 4.2, -4.2, 1.4, -1.4, 1.4,
];
const NO_ROT_CORRECTION: [f32; 32] = [0.0; 32];

impl VelodyneModel {
    /// The model named by a packet's product byte.
    pub fn from_product_byte(byte: u8) -> Option<VelodyneModel> {
        match byte {
            0x21 => Some(VelodyneModel::Hdl32e),
            0x22 => Some(VelodyneModel::Vlp16),
            0x24 => Some(VelodyneModel::PuckHiRes),
            0x28 => Some(VelodyneModel::Vlp32c),
            _ => None,
        }
    }

    /// Parses a user's model name (`vlp16`, `puck-hires`, `vlp32c`, `hdl32e`).
    pub fn from_name(name: &str) -> Option<VelodyneModel> {
        match name.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "vlp16" | "puck" => Some(VelodyneModel::Vlp16),
            "puckhires" | "vlp16hires" => Some(VelodyneModel::PuckHiRes),
            "vlp32c" | "vlp32" => Some(VelodyneModel::Vlp32c),
            "hdl32e" | "hdl32" => Some(VelodyneModel::Hdl32e),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            VelodyneModel::Vlp16 => "vlp16",
            VelodyneModel::PuckHiRes => "puck-hires",
            VelodyneModel::Vlp32c => "vlp32c",
            VelodyneModel::Hdl32e => "hdl32e",
        }
    }

    pub fn lasers(self) -> usize {
        self.vertical_deg().len()
    }

    pub fn vertical_deg(self) -> &'static [f32] {
        match self {
            VelodyneModel::Vlp16 => &VLP16_VERTICAL_DEG,
            VelodyneModel::PuckHiRes => &PUCK_HIRES_VERTICAL_DEG,
            VelodyneModel::Vlp32c => &VLP32C_VERTICAL_DEG,
            VelodyneModel::Hdl32e => &HDL32E_VERTICAL_DEG,
        }
    }

    fn rot_correction_deg(self) -> &'static [f32] {
        match self {
            VelodyneModel::Vlp32c => &VLP32C_ROT_CORRECTION_DEG,
            _ => &NO_ROT_CORRECTION,
        }
    }

    /// Metres per distance count: 2 mm, except the VLP-32C's 4 mm.
    pub fn distance_unit_m(self) -> f32 {
        match self {
            VelodyneModel::Vlp32c => 0.004,
            _ => 0.002,
        }
    }

    /// Duration of one block's firing (for 16-laser models, one block holds two sequences).
    fn block_duration_us(self) -> f32 {
        match self {
            VelodyneModel::Vlp16 | VelodyneModel::PuckHiRes => 2.0 * 55.296,
            VelodyneModel::Vlp32c => 55.296,
            VelodyneModel::Hdl32e => 46.08,
        }
    }

    /// Firing time of `channel` (0..32) after its block's start, µs.
    fn channel_offset_us(self, channel: usize) -> f32 {
        match self {
            // Two firing sequences of 16 lasers, 2.304 µs apart, 55.296 µs per sequence.
            VelodyneModel::Vlp16 | VelodyneModel::PuckHiRes => {
                (channel / 16) as f32 * 55.296 + (channel % 16) as f32 * 2.304
            }
            // Lasers fire in pairs.
            VelodyneModel::Vlp32c => (channel / 2) as f32 * 2.304,
            VelodyneModel::Hdl32e => (channel / 2) as f32 * 1.152,
        }
    }
}

/// What the sensor reports per firing, from the return-mode byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnMode {
    Strongest,
    Last,
    /// Blocks come in pairs with the same azimuth: the last return, then the strongest (or the
    /// second strongest when the last is also the strongest).
    Dual,
}

impl ReturnMode {
    pub fn from_byte(byte: u8) -> Option<ReturnMode> {
        match byte {
            0x37 => Some(ReturnMode::Strongest),
            0x38 => Some(ReturnMode::Last),
            0x39 => Some(ReturnMode::Dual),
            _ => None,
        }
    }
}

/// Why a packet was refused. Refused packets are counted and skipped by the sources.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("data packet has {len} bytes, expected {DATA_PACKET_BYTES}")]
    WrongSize { len: usize },
    #[error("block {block} does not start with the FF EE flag")]
    BadBlockFlag { block: usize },
    #[error("block {block} has azimuth {azimuth} (must be below 36000)")]
    BadAzimuth { block: usize, azimuth: u16 },
    #[error("unknown return-mode byte 0x{0:02x}")]
    UnknownReturnMode(u8),
    #[error("unknown product byte 0x{0:02x}: name the model explicitly (vlp16, puck-hires, vlp32c, hdl32e)")]
    UnknownProduct(u8),
}

/// The fixed fields of a data packet, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// µs past the top of the hour, of the first firing of the first block.
    pub timestamp_us: u32,
    pub return_mode: ReturnMode,
    pub product_byte: u8,
    /// Azimuth of each block, 0.01°.
    pub block_azimuth_centideg: [u16; BLOCKS],
}

/// Checks a data packet's size, block flags and azimuths and reads its header fields.
pub fn parse_header(payload: &[u8]) -> Result<PacketHeader, PacketError> {
    if payload.len() != DATA_PACKET_BYTES {
        return Err(PacketError::WrongSize { len: payload.len() });
    }
    let mut block_azimuth_centideg = [0u16; BLOCKS];
    for (block, azimuth) in block_azimuth_centideg.iter_mut().enumerate() {
        let b = &payload[block * BLOCK_BYTES..];
        if b[0] != 0xFF || b[1] != 0xEE {
            return Err(PacketError::BadBlockFlag { block });
        }
        *azimuth = u16::from_le_bytes([b[2], b[3]]);
        if *azimuth >= 36_000 {
            return Err(PacketError::BadAzimuth {
                block,
                azimuth: *azimuth,
            });
        }
    }
    let tail = &payload[BLOCKS * BLOCK_BYTES..];
    let return_mode =
        ReturnMode::from_byte(tail[4]).ok_or(PacketError::UnknownReturnMode(tail[4]))?;
    Ok(PacketHeader {
        timestamp_us: u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]),
        return_mode,
        product_byte: tail[5],
        block_azimuth_centideg,
    })
}

/// Precomputed trigonometry for one model.
#[derive(Debug, Clone)]
struct LaserTable {
    model: VelodyneModel,
    cos_vertical: Vec<f32>,
    sin_vertical: Vec<f32>,
    rot_correction_centideg: Vec<f32>,
    ring: Vec<u16>,
}

impl LaserTable {
    fn new(model: VelodyneModel) -> LaserTable {
        let vertical = model.vertical_deg();
        let mut order: Vec<usize> = (0..vertical.len()).collect();
        order.sort_by(|&a, &b| vertical[a].total_cmp(&vertical[b]));
        let mut ring = vec![0u16; vertical.len()];
        for (rank, &laser) in order.iter().enumerate() {
            ring[laser] = rank as u16;
        }
        LaserTable {
            model,
            cos_vertical: vertical.iter().map(|d| d.to_radians().cos()).collect(),
            sin_vertical: vertical.iter().map(|d| d.to_radians().sin()).collect(),
            rot_correction_centideg: model
                .rot_correction_deg()
                .iter()
                .map(|d| d * 100.0)
                .collect(),
            ring,
        }
    }
}

/// Which model's geometry to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSelection {
    /// Trust each packet's product byte.
    FromPacket,
    /// Use this model whatever the product byte says (some captures carry a wrong one).
    Fixed(VelodyneModel),
}

/// One decoded return with the block azimuth it belongs to (rotations are cut at blocks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Firing {
    pub point: Point,
    pub block: usize,
    /// Time of the firing, µs past the hour (fractional µs dropped).
    pub time_us: u32,
}

/// Turns data packets into points.
#[derive(Debug, Clone)]
pub struct VelodyneDecoder {
    selection: ModelSelection,
    table: Option<LaserTable>,
}

impl VelodyneDecoder {
    pub fn new(selection: ModelSelection) -> VelodyneDecoder {
        let table = match selection {
            ModelSelection::Fixed(model) => Some(LaserTable::new(model)),
            ModelSelection::FromPacket => None,
        };
        VelodyneDecoder { selection, table }
    }

    /// The model used for the last packet (or the fixed one).
    pub fn model(&self) -> Option<VelodyneModel> {
        self.table.as_ref().map(|t| t.model)
    }

    /// Decodes one data packet, calling `emit` for every return with a measured distance, block
    /// by block in order. Zero distances (no return) are skipped; in dual-return mode the second
    /// return is skipped when it repeats the first.
    pub fn decode(
        &mut self,
        payload: &[u8],
        mut emit: impl FnMut(Firing),
    ) -> Result<PacketHeader, PacketError> {
        let header = parse_header(payload)?;
        let model = match self.selection {
            ModelSelection::Fixed(model) => model,
            ModelSelection::FromPacket => VelodyneModel::from_product_byte(header.product_byte)
                .ok_or(PacketError::UnknownProduct(header.product_byte))?,
        };
        if self.table.as_ref().map(|t| t.model) != Some(model) {
            self.table = Some(LaserTable::new(model));
        }
        let Some(table) = self.table.as_ref() else {
            return Ok(header);
        };
        let lasers = model.lasers();
        let dual = header.return_mode == ReturnMode::Dual;
        // In dual mode the next block of the same return is two blocks on.
        let stride = if dual { 2 } else { 1 };
        let azimuths = &header.block_azimuth_centideg;
        let unit_m = model.distance_unit_m();
        let block_us = model.block_duration_us();
        for block in 0..BLOCKS {
            let azimuth = azimuths[block] as i32;
            let gap = if block + stride < BLOCKS {
                (azimuths[block + stride] as i32 - azimuth).rem_euclid(FULL_TURN_CENTIDEG)
            } else {
                (azimuth - azimuths[block - stride] as i32).rem_euclid(FULL_TURN_CENTIDEG)
            };
            let data = &payload[block * BLOCK_BYTES + 4..(block + 1) * BLOCK_BYTES];
            let second_of_pair = dual && block % 2 == 1;
            let firing_index = if dual { block / 2 } else { block };
            let block_start_us = firing_index as f32 * block_us;
            for channel in 0..CHANNELS {
                let at = channel * 3;
                let distance = u16::from_le_bytes([data[at], data[at + 1]]);
                if distance == 0 {
                    continue;
                }
                let intensity = data[at + 2];
                if second_of_pair {
                    let first = &payload[(block - 1) * BLOCK_BYTES + 4 + at..][..3];
                    if first == &data[at..at + 3] {
                        continue;
                    }
                }
                let laser = channel % lasers;
                let offset_us = model.channel_offset_us(channel);
                let azimuth_centideg = azimuth as f32 + gap as f32 * offset_us / block_us
                    - table.rot_correction_centideg[laser];
                let alpha = (azimuth_centideg * 0.01).to_radians();
                let range_m = distance as f32 * unit_m;
                let horizontal_m = range_m * table.cos_vertical[laser];
                emit(Firing {
                    point: Point {
                        position_m: [
                            horizontal_m * alpha.cos(),
                            -horizontal_m * alpha.sin(),
                            range_m * table.sin_vertical[laser],
                        ],
                        intensity,
                        ring: table.ring[laser],
                        return_index: u8::from(second_of_pair),
                        time_offset_us: 0,
                    },
                    block,
                    time_us: header
                        .timestamp_us
                        .wrapping_add((block_start_us + offset_us) as u32),
                });
            }
        }
        Ok(header)
    }
}

/// Where one rotation ends and the next begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutAzimuth {
    /// At the azimuth of the first packet seen: every cloud is a full turn from the start.
    FirstPacket,
    /// At a fixed azimuth, 0.01° (0 = straight ahead).
    Centideg(u16),
}

/// Collects decoded packets into full rotations.
#[derive(Debug)]
pub struct RotationAssembler {
    decoder: VelodyneDecoder,
    cut: CutAzimuth,
    cut_centideg: Option<i32>,
    previous_azimuth: Option<i32>,
    current: PointCloud,
    /// Whether the cloud being built started at the cut (not mid-turn at start-up).
    current_complete: bool,
    hour_base_us: u64,
    last_timestamp_us: Option<u32>,
    /// With the model taken from the packets, the first packet waits for the second so the
    /// product byte can be checked against the packets' timing.
    held: Option<Vec<u8>>,
    timing_checked: bool,
    /// The usual azimuth step between blocks, centidegrees (smoothed); a step far beyond it
    /// means packets were lost (a flooded socket drops them), and the rotation is incomplete.
    typical_step: Option<f32>,
    /// Rotations finished with missing packets.
    gapped_rotations: u64,
    /// Whether the rotation being built lost packets.
    current_gapped: bool,
}

/// A block-to-block azimuth step above this many times the usual one is a gap of lost packets.
const GAP_FACTOR: f32 = 4.0;
/// Steps above this (5°) are never learned as usual.
const MAX_USUAL_STEP_CENTIDEG: i32 = 500;

impl RotationAssembler {
    pub fn new(selection: ModelSelection, cut: CutAzimuth) -> RotationAssembler {
        RotationAssembler {
            decoder: VelodyneDecoder::new(selection),
            cut,
            cut_centideg: match cut {
                CutAzimuth::Centideg(c) => Some(c as i32 % FULL_TURN_CENTIDEG),
                CutAzimuth::FirstPacket => None,
            },
            previous_azimuth: None,
            current: PointCloud::default(),
            current_complete: matches!(cut, CutAzimuth::FirstPacket),
            hour_base_us: 0,
            last_timestamp_us: None,
            held: None,
            timing_checked: !matches!(selection, ModelSelection::FromPacket),
            typical_step: None,
            gapped_rotations: 0,
            current_gapped: false,
        }
    }

    /// Rotations that were finished with packets missing (marked incomplete).
    pub fn gapped_rotations(&self) -> u64 {
        self.gapped_rotations
    }

    pub fn model(&self) -> Option<VelodyneModel> {
        self.decoder.model()
    }

    /// Decodes one data packet; returns the rotations it finished (usually none or one). A
    /// rotation is `complete` when it ran from cut to cut; the turn already under way at
    /// start-up is not.
    pub fn push(&mut self, payload: &[u8]) -> Result<Vec<PointCloud>, PacketError> {
        if self.timing_checked {
            return self.push_decoded(payload);
        }
        let header = parse_header(payload)?;
        let Some(first) = self.held.take() else {
            self.held = Some(payload.to_vec());
            return Ok(Vec::new());
        };
        self.timing_checked = true;
        if let Ok(first_header) = parse_header(&first) {
            self.check_timing(&first_header, &header);
        }
        let mut finished = match self.push_decoded(&first) {
            Ok(clouds) => clouds,
            Err(e) => {
                log::warn!("skipping the first data packet: {e}");
                Vec::new()
            }
        };
        finished.extend(self.push_decoded(payload)?);
        Ok(finished)
    }

    /// Some VLP-16s (and captures of them) carry the HDL-32E's product byte 0x21. The packet
    /// rate tells them apart: an HDL-32E block is one 46.08 µs firing, a VLP-16 block two
    /// 55.296 µs sequences (110.6 µs). When the timing is a VLP-16's, decode as one.
    fn check_timing(&mut self, first: &PacketHeader, second: &PacketHeader) {
        if VelodyneModel::from_product_byte(first.product_byte) != Some(VelodyneModel::Hdl32e)
            || first.product_byte != second.product_byte
        {
            return;
        }
        let firing_blocks = if first.return_mode == ReturnMode::Dual {
            6
        } else {
            12
        };
        let block_us = second.timestamp_us.wrapping_sub(first.timestamp_us) / firing_blocks;
        if (100..=122).contains(&block_us) {
            log::warn!(
                "packets say HDL-32E (product byte 0x21) but arrive {block_us} µs per block like a \
                 VLP-16's: decoding as VLP-16 (name the model to silence this)"
            );
            self.decoder = VelodyneDecoder::new(ModelSelection::Fixed(VelodyneModel::Vlp16));
        }
    }

    fn push_decoded(&mut self, payload: &[u8]) -> Result<Vec<PointCloud>, PacketError> {
        let header = parse_header(payload)?;
        // Timestamps count µs past the hour: carry a running hour so clouds stay ordered.
        if let Some(last) = self.last_timestamp_us {
            if header.timestamp_us < last && last - header.timestamp_us > 1_800_000_000 {
                self.hour_base_us += 3_600_000_000;
            }
        }
        self.last_timestamp_us = Some(header.timestamp_us);
        let cut = *self
            .cut_centideg
            .get_or_insert(header.block_azimuth_centideg[0] as i32);
        // Blocks where a new rotation begins, and blocks after a gap of lost packets.
        let mut starts = [false; BLOCKS];
        let mut gaps = [false; BLOCKS];
        for (block, &azimuth) in header.block_azimuth_centideg.iter().enumerate() {
            let azimuth = azimuth as i32;
            if let Some(previous) = self.previous_azimuth {
                let step = (azimuth - previous).rem_euclid(FULL_TURN_CENTIDEG);
                let to_cut = (cut - previous).rem_euclid(FULL_TURN_CENTIDEG);
                starts[block] = step != 0 && to_cut != 0 && to_cut <= step;
                if step > 0 {
                    match self.typical_step {
                        Some(usual) if step as f32 > GAP_FACTOR * usual.max(1.0) => {
                            gaps[block] = true;
                        }
                        Some(usual) if step <= MAX_USUAL_STEP_CENTIDEG => {
                            self.typical_step = Some(0.9 * usual + 0.1 * step as f32);
                        }
                        None if step <= MAX_USUAL_STEP_CENTIDEG => {
                            self.typical_step = Some(step as f32);
                        }
                        _ => {}
                    }
                }
            }
            self.previous_azimuth = Some(azimuth);
        }
        let mut firings: Vec<Firing> = Vec::with_capacity(BLOCKS * CHANNELS);
        self.decoder.decode(payload, |f| firings.push(f))?;
        let lasers = self.decoder.model().map_or(0, |m| m.lasers() as u16);
        let mut finished = Vec::new();
        let mut firings = firings.into_iter().peekable();
        for (block, &start) in starts.iter().enumerate() {
            if start {
                let mut done = std::mem::take(&mut self.current);
                // A gap across the cut took the end of this rotation and the start of the next.
                let gapped = self.current_gapped || gaps[block];
                if !done.points.is_empty() {
                    done.complete = self.current_complete && !gapped;
                    if self.current_complete && gapped {
                        self.gapped_rotations += 1;
                    }
                    finished.push(done);
                }
                self.current_complete = true;
                self.current_gapped = gaps[block];
            } else if gaps[block] {
                self.current_gapped = true;
            }
            while let Some(f) = firings.next_if(|f| f.block == block) {
                let time_us = self.hour_base_us + f.time_us as u64;
                if self.current.points.is_empty() {
                    self.current.timestamp_us = time_us;
                    self.current.rings = lasers;
                }
                let mut point = f.point;
                point.time_offset_us = time_us.saturating_sub(self.current.timestamp_us) as u32;
                self.current.points.push(point);
            }
        }
        Ok(finished)
    }

    /// The rotation in progress (at the end of a capture), marked incomplete.
    pub fn finish(&mut self) -> Option<PointCloud> {
        if let Some(first) = self.held.take() {
            // A stream of a single packet: nothing to check its timing against.
            if let Err(e) = self.push_decoded(&first) {
                log::warn!("skipping the only data packet: {e}");
            }
        }
        let cloud = std::mem::take(&mut self.current);
        self.current_complete = true;
        self.current_gapped = false;
        (!cloud.points.is_empty()).then_some(cloud)
    }

    /// How rotations are cut.
    pub fn cut(&self) -> CutAzimuth {
        self.cut
    }
}
