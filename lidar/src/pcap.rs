//! Classic pcap and pcapng captures (Wireshark's default; both byte orders, any timestamp
//! resolution, several interfaces) and the UDP datagrams in them:
//! Ethernet (with VLAN tags), Linux cooked capture v1/v2, raw IPv4 and BSD loopback link types.
//! [`crate::capture::LidarPcapSource`] replays the sensor packets in them as rotations. A
//! capture cut off mid-record ends the stream with the truncation counted, never a panic.

use std::io::Read;

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub timestamp_us: u64,
    /// The bytes captured (may be fewer than the packet had, see `original_len`).
    pub data: Vec<u8>,
    pub original_len: u32,
}

/// Why a capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("not a pcap or pcapng capture (magic {0:02x?})")]
    BadMagic([u8; 4]),
    #[error(
        "pcapng block of {0} bytes is malformed or larger than any packet; the file is corrupt"
    )]
    BadBlock(u32),
    #[error("the capture ends in the middle of a {0}")]
    Truncated(&'static str),
    #[error(
        "record of {0} bytes is larger than the capture's snap length allows; the file is corrupt"
    )]
    OversizedRecord(u32),
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads records from a classic pcap or a pcapng stream.
#[derive(Debug)]
pub struct PcapReader<R: Read> {
    input: R,
    big_endian: bool,
    nanosecond: bool,
    link_type: u32,
    snap_len: u32,
    /// pcapng: the interfaces of the current section, as (link type, timestamp resolution).
    interfaces: Option<Vec<(u32, TickSize)>>,
}

/// pcapng block types this reader acts on; every other block is skipped.
const NG_SECTION_HEADER: u32 = 0x0A0D_0D0A;
const NG_INTERFACE: u32 = 1;
const NG_SIMPLE_PACKET: u32 = 3;
const NG_ENHANCED_PACKET: u32 = 6;
/// Largest pcapng block accepted: a packet of the largest snap length plus headers and options.
const NG_MAX_BLOCK: u32 = 262_144 + 4096;

/// Fills `buf` completely; `Ok(false)` when the stream ended before the first byte.
fn read_exact_or_eof(
    input: &mut impl Read,
    buf: &mut [u8],
    what: &'static str,
) -> Result<bool, PcapError> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(PcapError::Truncated(what)),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PcapError::Io(e)),
        }
    }
    Ok(true)
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the global header.
    pub fn new(mut input: R) -> Result<PcapReader<R>, PcapError> {
        let mut header = [0u8; 24];
        if !read_exact_or_eof(&mut input, &mut header, "file header")? {
            return Err(PcapError::Truncated("file header"));
        }
        let magic = [header[0], header[1], header[2], header[3]];
        if u32::from_le_bytes(magic) == NG_SECTION_HEADER {
            return PcapReader::new_ng(input, &header);
        }
        let (big_endian, nanosecond) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            other => return Err(PcapError::BadMagic(other)),
        };
        let mut reader = PcapReader {
            input,
            big_endian,
            nanosecond,
            link_type: 0,
            snap_len: 0,
            interfaces: None,
        };
        reader.snap_len = reader.u32_at(&header, 16);
        reader.link_type = reader.u32_at(&header, 20) & 0x0fff_ffff;
        Ok(reader)
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> u32 {
        let b = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// The link-layer type (1 = Ethernet, 113 = Linux cooked, ...).
    pub fn link_type(&self) -> u32 {
        self.link_type
    }

    /// A pcapng stream whose first 24 bytes (of its section header block) are `start`.
    fn new_ng(input: R, start: &[u8; 24]) -> Result<PcapReader<R>, PcapError> {
        let mut reader = PcapReader {
            input,
            big_endian: false,
            nanosecond: false,
            link_type: 0,
            snap_len: 0,
            interfaces: Some(Vec::new()),
        };
        reader.section(start)?;
        Ok(reader)
    }

    /// Starts a pcapng section from the first 24 bytes of its header block: byte order, no
    /// interfaces yet; the rest of the block is skipped.
    fn section(&mut self, start: &[u8]) -> Result<(), PcapError> {
        let order = [start[8], start[9], start[10], start[11]];
        self.big_endian = match order {
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            other => return Err(PcapError::BadMagic(other)),
        };
        let length = self.u32_at(start, 4);
        if !(28..=NG_MAX_BLOCK).contains(&length) || length % 4 != 0 {
            return Err(PcapError::BadBlock(length));
        }
        let mut rest = vec![0u8; length as usize - start.len()];
        if !read_exact_or_eof(&mut self.input, &mut rest, "section header")? {
            return Err(PcapError::Truncated("section header"));
        }
        self.interfaces = Some(Vec::new());
        Ok(())
    }

    /// The next packet of a pcapng stream, `Ok(None)` at a clean end of file.
    fn next_ng(&mut self) -> Result<Option<Record>, PcapError> {
        loop {
            let mut head = [0u8; 8];
            if !read_exact_or_eof(&mut self.input, &mut head, "block header")? {
                return Ok(None);
            }
            if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == NG_SECTION_HEADER {
                let mut start = [0u8; 24];
                start[..8].copy_from_slice(&head);
                if !read_exact_or_eof(&mut self.input, &mut start[8..], "section header")? {
                    return Err(PcapError::Truncated("section header"));
                }
                self.section(&start)?;
                continue;
            }
            let kind = self.u32_at(&head, 0);
            let length = self.u32_at(&head, 4);
            if !(12..=NG_MAX_BLOCK).contains(&length) || length % 4 != 0 {
                return Err(PcapError::BadBlock(length));
            }
            // Body and the trailing copy of the length.
            let mut body = vec![0u8; length as usize - 8];
            if !read_exact_or_eof(&mut self.input, &mut body, "block")? {
                return Err(PcapError::Truncated("block"));
            }
            let body = &body[..body.len() - 4];
            let interface_at =
                |i: usize, r: &Self| r.interfaces.as_deref().and_then(|l| l.get(i)).copied();
            match kind {
                NG_INTERFACE if body.len() >= 8 => {
                    let link_type = u32::from(if self.big_endian {
                        u16::from_be_bytes([body[0], body[1]])
                    } else {
                        u16::from_le_bytes([body[0], body[1]])
                    });
                    let tick = ng_timestamp_resolution(&body[8..], self.big_endian);
                    if let Some(list) = self.interfaces.as_mut() {
                        list.push((link_type, tick));
                    }
                }
                NG_ENHANCED_PACKET if body.len() >= 20 => {
                    let interface = self.u32_at(body, 0) as usize;
                    let ticks =
                        (u64::from(self.u32_at(body, 4)) << 32) | u64::from(self.u32_at(body, 8));
                    let captured = self.u32_at(body, 12) as usize;
                    let original_len = self.u32_at(body, 16);
                    let data = body
                        .get(20..20 + captured)
                        .ok_or(PcapError::BadBlock(length))?;
                    let (link_type, tick) =
                        interface_at(interface, self).ok_or(PcapError::BadBlock(length))?;
                    self.link_type = link_type;
                    return Ok(Some(Record {
                        timestamp_us: tick.micros(ticks),
                        data: data.to_vec(),
                        original_len,
                    }));
                }
                NG_SIMPLE_PACKET if body.len() >= 4 => {
                    let (link_type, _) =
                        interface_at(0, self).ok_or(PcapError::BadBlock(length))?;
                    let original_len = self.u32_at(body, 0);
                    let captured = (original_len as usize).min(body.len() - 4);
                    self.link_type = link_type;
                    return Ok(Some(Record {
                        timestamp_us: 0,
                        data: body[4..4 + captured].to_vec(),
                        original_len,
                    }));
                }
                _ => {} // statistics, name resolution, custom blocks...
            }
        }
    }

    /// The next record, `Ok(None)` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record>, PcapError> {
        if self.interfaces.is_some() {
            return self.next_ng();
        }
        let mut header = [0u8; 16];
        if !read_exact_or_eof(&mut self.input, &mut header, "record header")? {
            return Ok(None);
        }
        let seconds = self.u32_at(&header, 0) as u64;
        let fraction = self.u32_at(&header, 4) as u64;
        let captured = self.u32_at(&header, 8);
        let original_len = self.u32_at(&header, 12);
        // A corrupt length must not make us allocate gigabytes.
        let limit = self.snap_len.clamp(65_535, 262_144);
        if captured > limit {
            return Err(PcapError::OversizedRecord(captured));
        }
        let mut data = vec![0u8; captured as usize];
        if !data.is_empty() && !read_exact_or_eof(&mut self.input, &mut data, "record")? {
            return Err(PcapError::Truncated("record"));
        }
        let micros = if self.nanosecond {
            fraction / 1000
        } else {
            fraction
        };
        Ok(Some(Record {
            timestamp_us: seconds * 1_000_000 + micros,
            data,
            original_len,
        }))
    }
}

/// A pcapng interface's timestamp unit: 10^-n or 2^-n seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TickSize {
    Decimal(u8),
    Binary(u8),
}

impl TickSize {
    /// `ticks` in whole microseconds, in integers (a float would be off by one in 2^53).
    fn micros(self, ticks: u64) -> u64 {
        let ticks = u128::from(ticks);
        let us = match self {
            TickSize::Decimal(n) if n <= 6 => ticks * 10u128.pow(u32::from(6 - n)),
            TickSize::Decimal(n) => ticks / 10u128.pow(u32::from(n.min(38) - 6)),
            TickSize::Binary(n) => (ticks * 1_000_000) >> n.min(127),
        };
        us as u64
    }
}

/// The timestamp unit from an interface block's options (`if_tsresol`, code 9: 10^-n, or 2^-n
/// when the high bit is set); microseconds when absent.
fn ng_timestamp_resolution(mut options: &[u8], big_endian: bool) -> TickSize {
    let u16_at = |b: &[u8]| {
        if big_endian {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        }
    };
    while options.len() >= 4 {
        let (code, len) = (u16_at(options), u16_at(&options[2..]) as usize);
        if code == 0 {
            break;
        }
        let value = options.get(4..4 + len).unwrap_or_default();
        if code == 9 && len >= 1 {
            let v = value[0];
            return if v & 0x80 != 0 {
                TickSize::Binary(v & 0x7f)
            } else {
                TickSize::Decimal(v)
            };
        }
        options = options.get(4 + len.div_ceil(4) * 4..).unwrap_or_default();
    }
    TickSize::Decimal(6)
}

/// A UDP datagram found in a captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub source_port: u16,
    pub destination_port: u16,
    pub payload: &'a [u8],
}

/// Finds the UDP datagram in a frame of the given link type; `None` for anything else
/// (other protocols, IPv4 fragments after the first, frames cut short by the snap length).
pub fn udp_datagram(link_type: u32, frame: &[u8]) -> Option<UdpDatagram<'_>> {
    let (ethertype, ip) = match link_type {
        // Ethernet, skipping 802.1Q tags.
        1 => {
            let mut at = 12;
            let mut ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
            while ethertype == 0x8100 || ethertype == 0x88a8 {
                at += 4;
                ethertype = u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
            }
            (ethertype, frame.get(at + 2..)?)
        }
        // Linux cooked capture v1: protocol at 14, payload at 16.
        113 => (
            u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]),
            frame.get(16..)?,
        ),
        // Linux cooked capture v2: protocol at 0, payload at 20.
        276 => (
            u16::from_be_bytes([*frame.first()?, *frame.get(1)?]),
            frame.get(20..)?,
        ),
        // Raw IP.
        12 | 101 => (0x0800, frame),
        // BSD loopback: 4-byte address family (2 = IPv4) in host order.
        0 => {
            let family = u32::from_le_bytes(frame.get(0..4)?.try_into().ok()?);
            let family_be = u32::from_be_bytes(frame.get(0..4)?.try_into().ok()?);
            if family != 2 && family_be != 2 {
                return None;
            }
            (0x0800, frame.get(4..)?)
        }
        _ => return None,
    };
    if ethertype != 0x0800 || ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    let header_len = ((ip[0] & 0x0f) as usize) * 4;
    let fragment_offset = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff;
    if header_len < 20 || fragment_offset != 0 {
        return None;
    }
    let total_len = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    let udp = ip.get(header_len..total_len.max(header_len).min(ip.len()))?;
    if udp.len() < 8 {
        return None;
    }
    let udp_len = u16::from_be_bytes([udp[4], udp[5]]) as usize;
    // A UDP length past the captured bytes means the frame was cut by the snap length.
    let payload = udp.get(8..udp_len.max(8))?;
    Some(UdpDatagram {
        source_port: u16::from_be_bytes([udp[0], udp[1]]),
        destination_port: u16::from_be_bytes([udp[2], udp[3]]),
        payload,
    })
}
