//! Framing: postcard bytes + CRC-32, COBS-encoded, terminated by 0x00. COBS removes every 0x00
//! from the frame body, so a reader that joins mid-stream or loses bytes to line noise
//! resynchronises at the next 0x00; the CRC rejects frames that noise corrupted.

use crate::message::{Message, PROTOCOL_VERSION};

/// CRC-32/ISO-HDLC: the one zlib, Python's `zlib.crc32` and most MCU HALs compute.
pub const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// Largest frame lookout sends, delimiter included. Messages are bounded by their heapless
/// capacities; the largest (a full RLE mask) stays below this.
pub const MAX_FRAME_LEN: usize = 4096;

/// Why a message could not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is too small for this message.
    BufferTooSmall,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str("output buffer too small for this message")
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// Encodes `message` as bare postcard bytes, without CRC or COBS: the payload for transports
/// that frame and check integrity themselves (an MQTT message, a UDP datagram).
pub fn encode_message<'a>(message: &Message, out: &'a mut [u8]) -> Result<&'a [u8], EncodeError> {
    let len = postcard::to_slice(message, out)
        .map_err(|_| EncodeError::BufferTooSmall)?
        .len();
    Ok(&out[..len])
}

/// Decodes bare postcard bytes written by [`encode_message`] (or a frame's payload).
pub fn decode_message(payload: &[u8]) -> Result<Message, FrameError> {
    // The version is the first byte of the header, before any varint.
    match payload.first() {
        None => return Err(FrameError::TooShort),
        Some(&v) if v != PROTOCOL_VERSION => return Err(FrameError::Version(v)),
        Some(_) => {}
    }
    postcard::from_bytes(payload).map_err(|_| FrameError::Unknown)
}

/// Encodes `message` as one frame into `out`; returns the frame (delimiter included).
pub fn encode_frame<'a>(message: &Message, out: &'a mut [u8]) -> Result<&'a [u8], EncodeError> {
    let mut raw = [0u8; MAX_FRAME_LEN];
    let payload_len = encode_message(message, &mut raw[..MAX_FRAME_LEN - 4])?.len();
    let crc = CRC.checksum(&raw[..payload_len]).to_le_bytes();
    raw[payload_len..payload_len + 4].copy_from_slice(&crc);
    let raw_len = payload_len + 4;
    if out.len() < cobs::max_encoding_length(raw_len) + 1 {
        return Err(EncodeError::BufferTooSmall);
    }
    let n = cobs::encode(&raw[..raw_len], out);
    out[n] = 0;
    Ok(&out[..n + 1])
}

/// Why a frame was rejected. The decoder has already resynchronised when it reports one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More bytes than the decoder's buffer before a delimiter: the frame was dropped.
    Overflow,
    /// Not valid COBS (line noise, or a frame joined mid-way).
    Cobs,
    /// Shorter than a CRC.
    TooShort,
    /// CRC mismatch: corrupted in transit.
    Crc,
    /// Intact, but from another protocol version.
    Version(u8),
    /// Intact and of this version, but not a message this reader knows (a newer body kind,
    /// or a sender bug).
    Unknown,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            FrameError::Overflow => f.write_str("frame longer than the receive buffer"),
            FrameError::Cobs => f.write_str("invalid COBS encoding"),
            FrameError::TooShort => f.write_str("frame too short"),
            FrameError::Crc => f.write_str("CRC mismatch"),
            FrameError::Version(v) => write!(
                f,
                "protocol version {v}, this reader speaks {PROTOCOL_VERSION}"
            ),
            FrameError::Unknown => f.write_str("unknown message kind"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// Streaming decoder: feed it bytes as they arrive, in chunks of any size; it yields each
/// complete message or the reason a frame was dropped. Holds one `N`-byte buffer, never
/// allocates, never panics.
pub struct FrameDecoder<const N: usize> {
    buf: [u8; N],
    len: usize,
    overflowed: bool,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        FrameDecoder {
            buf: [0; N],
            len: 0,
            overflowed: false,
        }
    }
}

impl<const N: usize> FrameDecoder<N> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one byte; returns a result when it completed a frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<Message, FrameError>> {
        if byte != 0 {
            if self.len < N {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overflowed = true;
            }
            return None;
        }
        let (len, overflowed) = (self.len, self.overflowed);
        self.len = 0;
        self.overflowed = false;
        if overflowed {
            return Some(Err(FrameError::Overflow));
        }
        if len == 0 {
            // Back-to-back delimiters: senders may emit a leading 0x00 to flush noise.
            return None;
        }
        Some(decode_body(&mut self.buf[..len]))
    }

    /// Feeds a chunk, calling `on_result` for each frame it completed.
    pub fn feed(&mut self, bytes: &[u8], mut on_result: impl FnMut(Result<Message, FrameError>)) {
        for &b in bytes {
            if let Some(r) = self.push(b) {
                on_result(r);
            }
        }
    }
}

/// Decodes one COBS-encoded frame (without its delimiter), in place.
fn decode_body(encoded: &mut [u8]) -> Result<Message, FrameError> {
    let len = cobs::decode_in_place(encoded).map_err(|_| FrameError::Cobs)?;
    if len < 5 {
        return Err(FrameError::TooShort);
    }
    let (payload, crc) = encoded[..len].split_at(len - 4);
    let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if CRC.checksum(payload) != expected {
        return Err(FrameError::Crc);
    }
    decode_message(payload)
}
