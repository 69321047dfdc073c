//! Ouster lidar packet layouts. The legacy profile (firmware 1.x, and 2.x by default) packs 16
//! columns of [timestamp u64, measurement id u16, frame id u16, encoder u32, then per beam 12
//! bytes (range u32 of which 20 bits are mm, reflectivity u16, signal u16, near-IR u16, unused),
//! status u32 = 0xFFFFFFFF when valid] with no packet header. The newer profiles (firmware 2.2+)
//! put a 32-byte header (packet type, frame id, ...) before the columns and a 32-byte footer
//! after them; each column is [timestamp u64, measurement id u16, status u16 (bit 0 = valid)]
//! then its pixels, whose layout the profile names. All fields are little-endian.

/// The lidar packet profile (`udp_profile_lidar` in the metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Legacy,
    /// Single return: range 19 bits (mm), reflectivity u8 at 4, signal, near-IR; 12 bytes.
    Rng19Rfl8Sig16Nir16,
    /// Low data rate: range 15 bits in units of 8 mm, reflectivity u8 at 2; 4 bytes.
    Rng15Rfl8Nir8,
    /// Dual return: range 19 bits + reflectivity u8 at 3, second range at 4 + reflectivity at 7;
    /// 16 bytes.
    Rng19Rfl8Sig16Nir16Dual,
}

const LEGACY_COLUMN_HEADER: usize = 16;
const LEGACY_COLUMN_FOOTER: usize = 4;
const PACKET_HEADER: usize = 32;
const PACKET_FOOTER: usize = 32;
const COLUMN_HEADER: usize = 12;

impl Profile {
    pub fn from_name(name: &str) -> Option<Profile> {
        Some(match name {
            "LEGACY" => Profile::Legacy,
            "RNG19_RFL8_SIG16_NIR16" => Profile::Rng19Rfl8Sig16Nir16,
            "RNG15_RFL8_NIR8" => Profile::Rng15Rfl8Nir8,
            "RNG19_RFL8_SIG16_NIR16_DUAL" => Profile::Rng19Rfl8Sig16Nir16Dual,
            _ => return None,
        })
    }

    fn pixel_bytes(self) -> usize {
        match self {
            Profile::Legacy | Profile::Rng19Rfl8Sig16Nir16 => 12,
            Profile::Rng15Rfl8Nir8 => 4,
            Profile::Rng19Rfl8Sig16Nir16Dual => 16,
        }
    }

    fn column_bytes(self, rows: usize) -> usize {
        match self {
            Profile::Legacy => LEGACY_COLUMN_HEADER + rows * 12 + LEGACY_COLUMN_FOOTER,
            _ => COLUMN_HEADER + rows * self.pixel_bytes(),
        }
    }

    fn first_column_at(self) -> usize {
        match self {
            Profile::Legacy => 0,
            _ => PACKET_HEADER,
        }
    }

    /// UDP payload size of a lidar packet of `rows` beams and `columns` columns.
    pub fn packet_bytes(self, rows: usize, columns: usize) -> usize {
        let framing = match self {
            Profile::Legacy => 0,
            _ => PACKET_HEADER + PACKET_FOOTER,
        };
        framing + columns * self.column_bytes(rows)
    }

    /// Returns of each pixel (2 for the dual profile).
    pub fn returns(self) -> usize {
        match self {
            Profile::Rng19Rfl8Sig16Nir16Dual => 2,
            _ => 1,
        }
    }

    /// Range (mm) and reflectivity of return `which` of a pixel's bytes; range 0 = no return.
    fn pixel(self, p: &[u8], which: usize) -> (u32, u16) {
        let u32_at = |at: usize| u32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
        match (self, which) {
            (Profile::Legacy, _) => (u32_at(0) & 0x000f_ffff, u16::from_le_bytes([p[4], p[5]])),
            (Profile::Rng19Rfl8Sig16Nir16, _) => (u32_at(0) & 0x0007_ffff, p[4].into()),
            (Profile::Rng15Rfl8Nir8, _) => (
                u32::from(u16::from_le_bytes([p[0], p[1]]) & 0x7fff) << 3,
                p[2].into(),
            ),
            (Profile::Rng19Rfl8Sig16Nir16Dual, 0) => (u32_at(0) & 0x0007_ffff, p[3].into()),
            (Profile::Rng19Rfl8Sig16Nir16Dual, _) => (u32_at(4) & 0x0007_ffff, p[7].into()),
        }
    }
}

/// Why an Ouster packet was refused (counted and skipped by the sources).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OusterPacketError {
    #[error("Ouster lidar packet has {len} bytes, the metadata's profile expects {expected}: is the metadata file this sensor's?")]
    WrongSize { len: usize, expected: usize },
    #[error("column {index} has measurement id {id}, beyond the {columns} columns of a frame: is the metadata's lidar_mode this sensor's?")]
    BadMeasurementId {
        index: usize,
        id: u16,
        columns: usize,
    },
    #[error("packet type {0} is not a lidar packet (1)")]
    NotLidar(u16),
}

/// One column of a packet, fields checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column<'a> {
    /// Sensor time of the column, ns.
    pub timestamp_ns: u64,
    /// Column index within the frame (0 .. columns per frame).
    pub measurement_id: u16,
    pub frame_id: u16,
    /// False when the sensor flagged the column as not measured (outside the azimuth window,
    /// or a dropped column): its pixels are zeros.
    pub valid: bool,
    pixels: &'a [u8],
    profile: Profile,
}

impl Column<'_> {
    /// Range (mm, 0 = no return) and reflectivity of `row`'s return `which` (16 bits in the
    /// legacy profile, 8 in the others).
    pub fn pixel(&self, row: usize, which: usize) -> (u32, u16) {
        let size = self.profile.pixel_bytes();
        self.profile
            .pixel(&self.pixels[row * size..(row + 1) * size], which)
    }
}

/// Splits a lidar packet into columns, checking its size and each column's measurement id.
pub fn columns(
    payload: &[u8],
    profile: Profile,
    rows: usize,
    columns_per_packet: usize,
    columns_per_frame: usize,
) -> Result<Vec<Column<'_>>, OusterPacketError> {
    let expected = profile.packet_bytes(rows, columns_per_packet);
    if payload.len() != expected {
        return Err(OusterPacketError::WrongSize {
            len: payload.len(),
            expected,
        });
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let packet_frame_id = match profile {
        Profile::Legacy => None,
        _ => {
            let kind = u16_at(payload, 0);
            if kind != 1 {
                return Err(OusterPacketError::NotLidar(kind));
            }
            Some(u16_at(payload, 2))
        }
    };
    let size = profile.column_bytes(rows);
    let start = profile.first_column_at();
    let mut out = Vec::with_capacity(columns_per_packet);
    for index in 0..columns_per_packet {
        let c = &payload[start + index * size..start + (index + 1) * size];
        let timestamp_ns = u64::from_le_bytes(c[0..8].try_into().unwrap_or_default());
        let measurement_id = u16_at(c, 8);
        let (frame_id, valid, pixels) = match packet_frame_id {
            None => {
                let status = u32::from_le_bytes(c[size - 4..].try_into().unwrap_or_default());
                (
                    u16_at(c, 10),
                    status == 0xFFFF_FFFF,
                    &c[LEGACY_COLUMN_HEADER..size - LEGACY_COLUMN_FOOTER],
                )
            }
            Some(frame_id) => (frame_id, u16_at(c, 10) & 1 == 1, &c[COLUMN_HEADER..]),
        };
        if valid && usize::from(measurement_id) >= columns_per_frame {
            return Err(OusterPacketError::BadMeasurementId {
                index,
                id: measurement_id,
                columns: columns_per_frame,
            });
        }
        out.push(Column {
            timestamp_ns,
            measurement_id,
            frame_id,
            valid,
            pixels,
            profile,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One column of one beam under `profile`, with `pixel` as its bytes.
    fn one_pixel_packet(profile: Profile, pixel: &[u8]) -> Vec<u8> {
        let mut packet = vec![0u8; PACKET_HEADER];
        packet[0] = 1;
        packet.extend(7u64.to_le_bytes());
        packet.extend(3u16.to_le_bytes());
        packet.extend(1u16.to_le_bytes());
        packet.extend(pixel);
        packet.extend([0u8; PACKET_FOOTER]);
        assert_eq!(packet.len(), profile.packet_bytes(1, 1));
        packet
    }

    #[test]
    fn low_data_and_dual_return_pixels_read_their_fields() {
        // RNG15_RFL8_NIR8: range 0x8123 & 0x7fff = 0x0123 units of 8 mm; reflectivity at 2.
        let packet = one_pixel_packet(Profile::Rng15Rfl8Nir8, &[0x23, 0x81, 42, 5]);
        let column = columns(&packet, Profile::Rng15Rfl8Nir8, 1, 1, 1024).expect("decodes")[0];
        assert_eq!((column.measurement_id, column.valid), (3, true));
        assert_eq!(column.pixel(0, 0), (0x0123 * 8, 42));
        // RNG19_RFL8_SIG16_NIR16_DUAL: first return 19 bits at 0 + reflectivity at 3, second
        // 19 bits at 4 + reflectivity at 7; flag bits above the ranges are masked off.
        let mut pixel = Vec::new();
        pixel.extend((0x00F8_0000u32 | 1_500).to_le_bytes());
        pixel[3] = 11;
        pixel.extend(4_000u32.to_le_bytes());
        pixel[7] = 22;
        pixel.extend([0u8; 8]);
        let profile = Profile::Rng19Rfl8Sig16Nir16Dual;
        let packet = one_pixel_packet(profile, &pixel);
        let column = columns(&packet, profile, 1, 1, 1024).expect("decodes")[0];
        assert_eq!(column.pixel(0, 0), (1_500, 11));
        assert_eq!(column.pixel(0, 1), (4_000, 22));
    }
}
