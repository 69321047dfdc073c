//! The [`MqttPublisher`] the pipeline holds: `publish` encodes a message and appends it to the
//! outbox, never touching the network, so inference never waits on a broker. It starts the
//! worker thread, and waits on the outbox for `flush`, `wait_connected` and `close`.

use super::config::{MqttConfig, MqttError};
use super::conventions::{Conventions, OFFLINE};
use super::outbox::{MqttStats, Outbox, Shared};
use super::worker::run_worker;
use crate::sink::json::ClassNames;
use crate::sink::{PublishError, Publisher, PublisherStats};
use lookout_wire::{Body, Message};
use std::sync::Arc;
use std::time::Duration;

/// Publishes to an MQTT broker; see the module documentation for the guarantees.
pub struct MqttPublisher {
    config: MqttConfig,
    /// Class names from the class tables published so far, for JSON documents.
    names: ClassNames,
    conventions: Conventions,
    shared: Arc<Shared>,
    worker: Option<std::thread::JoinHandle<()>>,
    closed: bool,
}

impl MqttPublisher {
    /// Starts the link. Returns at once: connecting happens in the background, and messages
    /// published before the broker answers wait in the queue.
    pub fn start(config: MqttConfig) -> Result<MqttPublisher, MqttError> {
        let options = config.options()?;
        let shared = Arc::new(Shared::new());
        let worker = {
            let shared = Arc::clone(&shared);
            let config = config.clone();
            std::thread::Builder::new()
                .name("mqtt".into())
                .spawn(move || run_worker(options, config, shared))
                .map_err(MqttError::Thread)?
        };
        log::info!(
            "mqtt: publishing to {}://{}:{} as {} under {}/ (QoS {}, {} session)",
            if config.broker.tls { "mqtts" } else { "mqtt" },
            config.broker.host,
            config.broker.port,
            config.client_id,
            config.topic_prefix,
            config.qos,
            if config.persistent_session {
                "persistent"
            } else {
                "clean"
            }
        );
        let counted = config
            .home_assistant
            .as_ref()
            .map(|ha| ha.classes.clone())
            .unwrap_or_default();
        Ok(MqttPublisher {
            conventions: Conventions::new(&config.topic_prefix, &counted),
            names: ClassNames::new(),
            config,
            shared,
            worker: Some(worker),
            closed: false,
        })
    }

    pub fn config(&self) -> &MqttConfig {
        &self.config
    }

    pub fn mqtt_stats(&self) -> MqttStats {
        self.shared.lock().stats()
    }

    /// Waits until the broker accepted a connection, up to `timeout`.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, |o| o.stats.connected)
    }

    /// Publishes the retained `offline` status, waits up to `timeout` for everything queued
    /// to be acknowledged, disconnects and stops the worker. Returns whether all was delivered.
    pub fn close(&mut self, timeout: Duration) -> bool {
        if self.closed {
            return self.shared.lock().stats.publisher.queued == 0;
        }
        self.closed = true;
        let offline = self.config.link_status(false);
        let cap = self.config.queue_size + 2;
        if let Ok(payload) = self.config.encode(&offline, &self.names, None) {
            let topic = self.config.topic(&offline.body);
            self.shared.lock().push(topic, payload, true, false, cap);
        }
        let available = self.config.available_topic();
        let payload = OFFLINE.as_bytes().to_vec();
        self.shared
            .lock()
            .push(available, payload, true, false, cap);
        self.shared.wake.notify_one();
        let delivered = self.flush(timeout);
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
        delivered
    }
}

impl Publisher for MqttPublisher {
    fn publish(&mut self, message: &Message) -> Result<(), PublishError> {
        self.publish_aged(message, None)
    }

    fn publish_aged(&mut self, message: &Message, age_us: Option<u64>) -> Result<(), PublishError> {
        if self.closed {
            return Err(PublishError::Closed);
        }
        self.names.learn(message);
        let payload = self.config.encode(message, &self.names, age_us)?;
        let topic = self.config.topic(&message.body);
        let retain = matches!(message.body, Body::Status(_) | Body::ClassTable(_));
        let derived = self.conventions.observe(message, age_us);
        let mut outbox = self.shared.lock();
        outbox.push(topic, payload, retain, true, self.config.queue_size);
        for d in derived {
            outbox.push(d.topic, d.payload, d.retain, false, self.config.queue_size);
        }
        drop(outbox);
        self.shared.wake.notify_one();
        Ok(())
    }

    fn stats(&self) -> PublisherStats {
        self.mqtt_stats().publisher
    }

    fn last_error(&self) -> Option<String> {
        self.shared.lock().stats.last_error.clone()
    }

    fn flush(&mut self, timeout: Duration) -> bool {
        self.shared.wait_until(timeout, Outbox::is_settled)
    }
}

impl Drop for MqttPublisher {
    fn drop(&mut self) {
        self.close(Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::broker::MqttSection;

    #[test]
    fn unreadable_tls_files_are_named() {
        let c = MqttConfig::from_section(
            &toml::from_str::<MqttSection>("ca_file = \"/nonexistent/ca.pem\"").unwrap(),
            Some("mqtts://h"),
            0,
        )
        .unwrap();
        let err = MqttPublisher::start(c).err().unwrap().to_string();
        assert!(
            err.contains("/nonexistent/ca.pem") && err.contains("mqtt.ca_file"),
            "{err}"
        );
    }
}
