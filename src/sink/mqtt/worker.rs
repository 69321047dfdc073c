//! The worker thread: one rumqttc client on a single-threaded tokio runtime. [`feed`] hands
//! the client at most `inflight` messages from the outbox while connected; [`drive`] polls
//! the event loop, books every acknowledgement in the outbox and reconnects with a bounded
//! back-off, describing each failure in terms of what the user should check.

use super::config::MqttConfig;
use super::conventions::{discovery, ONLINE};
use super::outbox::Shared;
use crate::sink::json::ClassNames;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, Incoming, MqttOptions,
    Outgoing, QoS,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Explains a connection failure in terms of what the user should check.
fn describe(error: &ConnectionError, config: &MqttConfig) -> String {
    let at = format!("{}:{}", config.broker.host, config.broker.port);
    match error {
        ConnectionError::ConnectionRefused(code) => match code {
            // mosquitto answers a wrong password with "not authorised".
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => format!(
                "broker {at} refused client {} ({code:?}): check mqtt.username, the password \
                 (mqtt.password_file / mqtt.password_env) and the broker's ACL",
                config.client_id
            ),
            ConnectReturnCode::BadClientId => {
                format!("broker {at} refused client id {}", config.client_id)
            }
            other => format!("broker {at} refused the connection ({other:?})"),
        },
        ConnectionError::Tls(e) => format!(
            "TLS with {at} failed: {e} (check mqtt.ca_file and that the certificate names {})",
            config.broker.host
        ),
        ConnectionError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("nothing accepts connections at {at}: is the broker running?")
        }
        ConnectionError::NetworkTimeout => format!("connecting to {at} timed out"),
        ConnectionError::MqttState(e) => format!("connection to {at} lost ({e})"),
        other => format!("connection to {at}: {other}"),
    }
}

/// The worker thread's body: the client and its event loop until the publisher closes.
pub(super) fn run_worker(options: MqttOptions, config: MqttConfig, shared: Arc<Shared>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            log::error!("mqtt: cannot start the network runtime: {e}");
            shared.lock().stats.last_error = Some(e.to_string());
            return;
        }
    };
    // The request channel never holds more than the in-flight window: lookout's own queue
    // is where messages wait.
    let (client, eventloop) = AsyncClient::new(options, usize::from(config.inflight) + 2);
    runtime.block_on(async {
        tokio::join!(
            feed(&client, &config, &shared),
            drive(eventloop, &config, &shared)
        );
    });
}

/// Moves messages from lookout's queue to the client while connected and the window allows.
async fn feed(client: &AsyncClient, config: &MqttConfig, shared: &Shared) {
    let window = usize::from(config.inflight.max(1));
    loop {
        let next = {
            let mut s = shared.lock();
            if s.closing {
                break;
            }
            s.next_to_send(window)
        };
        match next {
            Some(m) => {
                let qos = if m.counted {
                    config.qos()
                } else {
                    QoS::AtLeastOnce
                };
                if client
                    .publish(m.topic, qos, m.retain, m.payload)
                    .await
                    .is_err()
                {
                    break; // the event loop is gone
                }
            }
            None => shared.wake.notified().await,
        }
    }
    let _ = client.disconnect().await;
}

/// Runs the client's event loop: tracks acknowledgements, reconnects with back-off.
async fn drive(mut eventloop: EventLoop, config: &MqttConfig, shared: &Shared) {
    let first_backoff = Duration::from_millis(100);
    let mut backoff = first_backoff;
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                if on_event(event, config, shared) {
                    break;
                }
                backoff = first_backoff;
            }
            Err(e) => {
                let closing = {
                    let mut s = shared.lock();
                    let why = describe(&e, config);
                    if s.connection_lost(&why) {
                        log::warn!("mqtt: {why}; retrying");
                    }
                    s.closing
                };
                shared.drained.notify_all();
                if closing {
                    break;
                }
                // Sleep in slices so that closing does not wait out a long back-off.
                let until = Instant::now() + backoff;
                while Instant::now() < until && !shared.lock().closing {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                backoff = (backoff * 2).min(config.reconnect_max.max(first_backoff));
            }
        }
    }
}

/// Books one client event; returns true when the connection was closed on purpose.
fn on_event(event: Event, config: &MqttConfig, shared: &Shared) -> bool {
    let mut s = shared.lock();
    match event {
        Event::Incoming(Incoming::ConnAck(ack)) => {
            let lost = s.connected(ack.session_present);
            if lost > 0 {
                log::info!(
                    "mqtt: broker has no session for us; re-sending {lost} unacknowledged messages"
                );
            }
            log::info!(
                "mqtt: connected to {}:{} (session {})",
                config.broker.host,
                config.broker.port,
                if ack.session_present {
                    "resumed"
                } else {
                    "new"
                }
            );
            // The broker may have published our last will: say we are back, first (pushed
            // to the front in reverse: availability, then the status, then discovery).
            if let Some(ha) = &config.home_assistant {
                let found = discovery(ha, &config.topic_prefix, &config.client_id, &config.model);
                for d in found.into_iter().rev() {
                    s.push_first(d.topic, d.payload);
                }
            }
            let online = config.link_status(true);
            if let Ok(payload) = config.encode(&online, &ClassNames::new(), None) {
                s.push_first(config.topic(&online.body), payload);
            }
            s.push_first(config.available_topic(), ONLINE.as_bytes().to_vec());
            drop(s);
            shared.wake.notify_one();
            shared.drained.notify_all();
        }
        Event::Outgoing(Outgoing::Publish(pkid)) => {
            s.written(pkid);
            if pkid == 0 {
                // QoS 0 is done once written: a slot of the window is free.
                drop(s);
                shared.wake.notify_one();
                shared.drained.notify_all();
            }
        }
        Event::Outgoing(Outgoing::AwaitAck(pkid)) => s.pkid_in_use(pkid),
        Event::Incoming(Incoming::PubAck(ack)) => {
            s.acked(ack.pkid);
            drop(s);
            shared.wake.notify_one();
            shared.drained.notify_all();
        }
        Event::Outgoing(Outgoing::Disconnect) => {
            return true;
        }
        _ => {}
    }
    false
}
