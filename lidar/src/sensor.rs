//! Which spinning sensor a stream of UDP datagrams comes from, and the one assembler that
//! turns either kind's data packets into rotations. With [`SensorSelection::Auto`] the first
//! datagram that looks like a data packet decides: a 1206-byte payload is a Velodyne's, a
//! payload of the size the Ouster metadata's profile gives is an Ouster's. Sources (pcap, UDP)
//! hold one [`SensorAssembler`] and stay ignorant of packet formats.

use crate::ouster::{OusterAssembler, OusterMetadata, OusterPacketError};
use crate::velodyne::{
    CutAzimuth, ModelSelection, PacketError, RotationAssembler, DATA_PACKET_BYTES, DATA_PORT,
};
use crate::PointCloud;

/// The sensor to decode for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorSelection {
    /// Recognise the sensor from the packets.
    Auto,
    Velodyne(ModelSelection),
    /// An Ouster; its metadata JSON is required.
    Ouster,
}

impl From<ModelSelection> for SensorSelection {
    fn from(selection: ModelSelection) -> SensorSelection {
        SensorSelection::Velodyne(selection)
    }
}

/// A data packet refused by the decoder of its sensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataPacketError {
    #[error(transparent)]
    Velodyne(#[from] PacketError),
    #[error(transparent)]
    Ouster(#[from] OusterPacketError),
}

/// The sensor a datagram was taken to come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorKind {
    Velodyne,
    Ouster,
}

#[derive(Debug)]
enum Active {
    Velodyne(RotationAssembler),
    Ouster(OusterAssembler),
}

/// Decodes the data packets of one sensor into rotations.
#[derive(Debug)]
pub struct SensorAssembler {
    selection: SensorSelection,
    cut: CutAzimuth,
    /// Destination port data packets must have (pcap); `None` takes the sensor's default.
    port: Option<u16>,
    ouster: Option<OusterMetadata>,
    active: Option<Active>,
}

impl SensorAssembler {
    pub fn new(
        selection: SensorSelection,
        cut: CutAzimuth,
        port: Option<u16>,
        ouster: Option<OusterMetadata>,
    ) -> SensorAssembler {
        SensorAssembler {
            selection,
            cut,
            port,
            ouster,
            active: None,
        }
    }

    pub fn selection(&self) -> SensorSelection {
        self.selection
    }

    pub fn cut(&self) -> CutAzimuth {
        self.cut
    }

    /// Gives the Ouster metadata (before the first packet).
    pub fn set_ouster_metadata(&mut self, metadata: OusterMetadata) {
        self.ouster = Some(metadata);
    }

    /// Whether Ouster metadata was given.
    pub fn has_ouster_metadata(&self) -> bool {
        self.ouster.is_some()
    }

    /// The sensor this datagram is a data packet of, if any. `port` is its destination port
    /// (`None` on a socket bound for the sensor, where every datagram was sent to us). Once the
    /// sensor is known (named, or recognised from an earlier packet), every datagram to its
    /// data port is taken as its data, so a packet of the wrong size is counted as malformed
    /// rather than silently skipped; before that, the size decides.
    pub fn recognise(&self, port: Option<u16>, len: usize) -> Option<SensorKind> {
        let ouster_port = self
            .ouster
            .as_ref()
            .and_then(|m| m.udp_port_lidar)
            .unwrap_or(crate::ouster::LIDAR_PORT);
        let to_port = |kind: SensorKind| {
            let default = match kind {
                SensorKind::Velodyne => DATA_PORT,
                SensorKind::Ouster => ouster_port,
            };
            match port {
                Some(p) => p == self.port.unwrap_or(default),
                // Position (GPS) and IMU packets routed to the data socket are not data.
                None => len != 512 && len != 48,
            }
        };
        let known = match (&self.active, self.selection) {
            (Some(Active::Velodyne(_)), _) | (None, SensorSelection::Velodyne(_)) => {
                Some(SensorKind::Velodyne)
            }
            (Some(Active::Ouster(_)), _) | (None, SensorSelection::Ouster) => {
                Some(SensorKind::Ouster)
            }
            (None, SensorSelection::Auto) => None,
        };
        if let Some(kind) = known {
            return to_port(kind).then_some(kind);
        }
        let ouster_size = self.ouster.as_ref().map(OusterMetadata::packet_bytes);
        if len == DATA_PACKET_BYTES && to_port(SensorKind::Velodyne) {
            Some(SensorKind::Velodyne)
        } else if Some(len) == ouster_size && to_port(SensorKind::Ouster) {
            Some(SensorKind::Ouster)
        } else {
            None
        }
    }

    /// The sensor being decoded, once the first data packet chose it.
    pub fn kind(&self) -> Option<SensorKind> {
        match self.active {
            Some(Active::Velodyne(_)) => Some(SensorKind::Velodyne),
            Some(Active::Ouster(_)) => Some(SensorKind::Ouster),
            None => None,
        }
    }

    /// The Velodyne model in use (known after the first data packet).
    pub fn velodyne_model(&self) -> Option<crate::velodyne::VelodyneModel> {
        match &self.active {
            Some(Active::Velodyne(a)) => a.model(),
            _ => None,
        }
    }

    /// Decodes a datagram [`recognise`](Self::recognise) accepted; returns finished rotations.
    pub fn push(
        &mut self,
        kind: SensorKind,
        payload: &[u8],
    ) -> Result<Vec<PointCloud>, DataPacketError> {
        if self.active.is_none() {
            self.active = Some(match (kind, self.ouster.clone()) {
                (SensorKind::Ouster, Some(metadata)) => {
                    log::info!(
                        "decoding Ouster {} lidar packets ({} beams, {} columns per frame, {:?} profile)",
                        metadata.product.as_deref().unwrap_or("sensor"),
                        metadata.rows(),
                        metadata.columns_per_frame,
                        metadata.profile
                    );
                    Active::Ouster(OusterAssembler::new(metadata))
                }
                _ => {
                    let model = match self.selection {
                        SensorSelection::Velodyne(model) => model,
                        _ => ModelSelection::FromPacket,
                    };
                    Active::Velodyne(RotationAssembler::new(model, self.cut))
                }
            });
        }
        match self.active.as_mut() {
            Some(Active::Velodyne(a)) => Ok(a.push(payload)?),
            Some(Active::Ouster(a)) => Ok(a.push(payload)?),
            None => Ok(Vec::new()),
        }
    }

    /// Rotations finished with packets missing.
    pub fn gapped_rotations(&self) -> u64 {
        match &self.active {
            Some(Active::Velodyne(a)) => a.gapped_rotations(),
            Some(Active::Ouster(a)) => a.gapped_rotations(),
            None => 0,
        }
    }

    /// The rotation in progress, at the end of a stream.
    pub fn finish(&mut self) -> Option<PointCloud> {
        match self.active.as_mut()? {
            Active::Velodyne(a) => a.finish(),
            Active::Ouster(a) => a.finish(),
        }
    }
}
