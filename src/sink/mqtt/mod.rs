//! MQTT publishing that loses nothing silently. `publish` only appends to a bounded queue
//! (oldest dropped and counted when full), so inference never waits on the network. One
//! worker thread runs the MQTT client (rumqttc) and hands it at most `inflight` messages at a
//! time; a message leaves lookout's books only when the broker acknowledged it (QoS 1) or it
//! was written to the socket (QoS 0). Because lookout keeps every unacknowledged message
//! until its PUBACK, a broker that restarts without the session (rumqttc then discards what it
//! had in flight) costs nothing: lookout queues those messages again. With a persistent
//! session the broker also keeps what it acknowledged for offline subscribers.
//!
//! Topics are `<prefix>/<kind>` (`detections`, `tracks`, `masks`, `lidar`, `status`),
//! `<prefix>/classes/<first_class_id>` and `<prefix>/lidar/classes/<first_class_id>`; status
//! and class tables are retained. Payloads are JSON documents (docs/schema) unless
//! `payload = "postcard"`. The link itself publishes a retained `online` on
//! `<prefix>/available` on every connection and leaves `offline` there as its last will, so
//! subscribers see a device die; the events, counts and Home Assistant discovery topics are
//! derived in `conventions.rs`.
//!
//! TLS is rustls with the `ring` provider: pure Rust plus a little C/assembly built by `cc`,
//! so it cross-compiles with the plain gcc toolchains (rumqttc's default, aws-lc, needs cmake
//! and clang and minutes more build).
//!
//! The parts: [`MqttConfig`] and TLS (`config.rs`), the outbox of what is owed the broker
//! (`outbox.rs`), the [`MqttPublisher`] the pipeline holds (`publisher.rs`) and the worker
//! thread that runs the client (`worker.rs`).

mod config;
pub mod conventions;
mod outbox;
mod publisher;
mod worker;

pub use config::{default_client_id, Credentials, MqttConfig, MqttError, Secret, TlsFiles};
pub use outbox::MqttStats;
pub use publisher::MqttPublisher;
