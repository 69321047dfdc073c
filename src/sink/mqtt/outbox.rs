//! lookout's own books of what it owes the broker: a bounded queue (oldest dropped and
//! counted when full) and every message handed to the client, by packet id, until the broker
//! acknowledged it. Because a message leaves these books only then, a broker that comes back
//! without our session costs nothing: what the client lost goes back to the head of the
//! queue. Plain data with no network in it, so each event of the link can be replayed in a
//! unit test; [`Shared`] puts it behind the lock that the publisher and the worker share.

use crate::sink::PublisherStats;
use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What the MQTT link has done, beyond the counters every publisher keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MqttStats {
    pub publisher: PublisherStats,
    /// Handed to the client and not yet acknowledged (part of `publisher.queued`).
    pub in_flight: u64,
    pub connected: bool,
    /// Failed connection attempts and lost connections.
    pub connection_failures: u64,
    /// Why the last connection attempt failed or the connection was lost.
    pub last_error: Option<String>,
    /// Unacknowledged messages sent again because the broker came back without our session.
    pub resent: u64,
}

/// One message on its way; `counted` is false for the link's own status messages, which
/// stay out of the application's counters.
#[derive(Debug, Clone)]
pub(super) struct Outbound {
    id: u64,
    pub(super) topic: String,
    pub(super) payload: Vec<u8>,
    pub(super) retain: bool,
    pub(super) counted: bool,
}

#[derive(Debug, Default)]
pub(super) struct Outbox {
    queue: VecDeque<Outbound>,
    /// Handed to the client, packet id not yet known (in order).
    awaiting_pkid: VecDeque<Outbound>,
    /// Sent at QoS 1, waiting for PUBACK.
    by_pkid: HashMap<u16, Outbound>,
    /// The client found this packet id still in use and holds the message until it frees.
    collided: Option<(u16, Outbound)>,
    next_id: u64,
    pub(super) stats: MqttStats,
    /// The connection dropped since the last CONNACK: rumqttc moved what it held into its
    /// retransmission list, which it clears if the broker has no session for us.
    disconnected_since_connack: bool,
    /// The publisher is closing: the worker stops feeding and disconnects.
    pub(super) closing: bool,
    /// Messages in `queue` outside the application's counters (the link's status, the
    /// convention topics): they have a bound of their own and never push a counted message
    /// out, so `queue_size` keeps meaning "messages of lookout's own held".
    uncounted: usize,
}

impl Outbox {
    /// Messages handed to the client and not yet done with.
    pub(super) fn outstanding(&self) -> usize {
        self.awaiting_pkid.len() + self.by_pkid.len() + usize::from(self.collided.is_some())
    }

    /// Nothing queued and nothing in flight: everything published was delivered or dropped.
    pub(super) fn is_settled(&self) -> bool {
        self.queue.is_empty() && self.outstanding() == 0
    }

    /// The counters as of now (`queued` and `in_flight` are derived from the books).
    pub(super) fn stats(&mut self) -> MqttStats {
        self.refresh_counts();
        self.stats.clone()
    }

    fn refresh_counts(&mut self) {
        let counted = |m: &Outbound| u64::from(m.counted);
        let queued: u64 = self.queue.iter().map(counted).sum();
        let in_flight: u64 = self.awaiting_pkid.iter().map(counted).sum::<u64>()
            + self.by_pkid.values().map(counted).sum::<u64>()
            + self.collided.iter().map(|(_, m)| counted(m)).sum::<u64>();
        self.stats.in_flight = in_flight;
        self.stats.publisher.queued = queued + in_flight;
    }

    fn done(&mut self, m: &Outbound) {
        if m.counted {
            self.stats.publisher.sent += 1;
        }
    }

    /// Queues a message behind the others; with `cap` messages queued already, the oldest
    /// go first.
    pub(super) fn push(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        retain: bool,
        counted: bool,
        cap: usize,
    ) {
        if counted {
            while self.queue.len() - self.uncounted >= cap {
                // Latest data is worth more than old data to a robot's consumers.
                match self.queue.pop_front() {
                    Some(old) if old.counted => self.stats.publisher.dropped += 1,
                    Some(_) => self.uncounted -= 1,
                    None => break,
                }
            }
        } else if self.uncounted >= cap {
            // Derived topics are re-sent on the next change; under a long outage the newest
            // of lookout's own messages matter more.
            return;
        } else {
            self.uncounted += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        if counted {
            self.stats.publisher.published += 1;
        }
        self.queue.push_back(Outbound {
            id,
            topic,
            payload,
            retain,
            counted,
        });
    }

    /// Queues the link's own retained status ahead of everything: after a reconnect the
    /// broker may have published our last will, so `online` must go out first.
    pub(super) fn push_first(&mut self, topic: String, payload: Vec<u8>) {
        self.uncounted += 1;
        let id = self.next_id;
        self.next_id += 1;
        self.queue.push_front(Outbound {
            id,
            topic,
            payload,
            retain: true,
            counted: false,
        });
    }

    /// The next message to hand the client, if connected and fewer than `window` are in
    /// flight. It stays on the books, waiting for its packet id.
    pub(super) fn next_to_send(&mut self, window: usize) -> Option<Outbound> {
        if !(self.stats.connected && self.outstanding() < window) {
            return None;
        }
        let m = self.queue.pop_front()?;
        if !m.counted {
            self.uncounted -= 1;
        }
        self.awaiting_pkid.push_back(m.clone());
        Some(m)
    }

    /// The broker accepted a connection. Returns how many messages went back to the queue
    /// because it came back without our session after a drop (rumqttc discarded them).
    pub(super) fn connected(&mut self, session_present: bool) -> usize {
        let mut lost = 0;
        if self.disconnected_since_connack && !session_present {
            lost = self.outstanding();
            self.stats.resent += lost as u64;
            self.requeue_in_flight();
        }
        self.disconnected_since_connack = false;
        self.stats.connected = true;
        lost
    }

    /// A connection attempt failed or the connection dropped, for the reason `why`. Returns
    /// whether the reason differs from the last one (worth a log line; repeats are not).
    pub(super) fn connection_lost(&mut self, why: &str) -> bool {
        if self.stats.connected {
            self.disconnected_since_connack = true;
            self.stats.publisher.reconnects += 1;
        }
        self.stats.connected = false;
        self.stats.connection_failures += 1;
        let new = self.stats.last_error.as_deref() != Some(why);
        self.stats.last_error = Some(why.to_string());
        new
    }

    /// The client wrote a PUBLISH with packet id `pkid` to the socket (0 at QoS 0).
    pub(super) fn written(&mut self, pkid: u16) {
        if pkid == 0 {
            // QoS 0: written to the socket is as far as anyone will ever know.
            if let Some(m) = self.awaiting_pkid.pop_front() {
                self.done(&m);
            }
        } else if self.by_pkid.contains_key(&pkid) {
            // A retransmission after reconnecting.
        } else if self.collided.as_ref().is_some_and(|(p, _)| *p == pkid) {
            if let Some((p, m)) = self.collided.take() {
                self.by_pkid.insert(p, m);
            }
        } else if let Some(m) = self.awaiting_pkid.pop_front() {
            self.by_pkid.insert(pkid, m);
        }
    }

    /// The client found `pkid` still in use: the next message waits for it to free.
    pub(super) fn pkid_in_use(&mut self, pkid: u16) {
        if let Some(m) = self.awaiting_pkid.pop_front() {
            self.collided = Some((pkid, m));
        }
    }

    /// The broker acknowledged `pkid` (PUBACK): that message is delivered.
    pub(super) fn acked(&mut self, pkid: u16) {
        if let Some(m) = self.by_pkid.remove(&pkid) {
            self.done(&m);
        }
    }

    /// Puts messages the client lost back at the head of the queue, oldest first.
    fn requeue_in_flight(&mut self) {
        let mut lost: Vec<Outbound> = self.awaiting_pkid.drain(..).collect();
        lost.extend(self.by_pkid.drain().map(|(_, m)| m));
        lost.extend(self.collided.take().map(|(_, m)| m));
        lost.sort_by_key(|m| m.id);
        for m in lost.into_iter().rev() {
            if !m.counted {
                self.uncounted += 1;
            }
            self.queue.push_front(m);
        }
    }
}

/// The outbox as the publishing thread and the worker share it.
pub(super) struct Shared {
    outbox: Mutex<Outbox>,
    /// Signalled whenever the queue or the in-flight set shrinks and when the connection
    /// comes or goes (for [`Shared::wait_until`]).
    pub(super) drained: Condvar,
    /// Wakes the feeder task: new messages, freed in-flight slots, connection changes.
    pub(super) wake: tokio::sync::Notify,
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            outbox: Mutex::new(Outbox::default()),
            drained: Condvar::new(),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Outbox> {
        // A panic elsewhere cannot leave the counters inconsistent enough to matter here.
        self.outbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `timeout` for `done` to hold, looking again whenever the outbox shrinks or
    /// the connection changes (and every 50 ms). Returns whether it held.
    pub(super) fn wait_until(&self, timeout: Duration, done: impl Fn(&Outbox) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut outbox = self.lock();
        while !done(&outbox) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            outbox = self
                .drained
                .wait_timeout(outbox, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(queue: &VecDeque<Outbound>) -> Vec<u8> {
        queue.iter().map(|m| m.payload[0]).collect()
    }

    /// published = sent + dropped + queued (in flight included): nothing is lost silently.
    fn books_balance(o: &mut Outbox) -> bool {
        let p = o.stats().publisher;
        p.published == p.sent + p.dropped + p.queued
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_them() {
        let mut s = Outbox::default();
        for i in 0..5u8 {
            s.push("t".into(), vec![i], false, true, 3);
        }
        let p = s.stats().publisher;
        assert_eq!((p.published, p.dropped, p.queued), (5, 2, 3));
        assert_eq!(s.queue.front().map(|m| m.payload[0]), Some(2));
    }

    #[test]
    fn derived_messages_never_push_out_counted_ones_and_have_their_own_bound() {
        let mut s = Outbox::default();
        // Counts and events interleaved with lookout's own messages, broker down.
        for i in 0..10u8 {
            s.push("d".into(), vec![i], false, true, 4);
            s.push("count".into(), vec![100 + i], true, false, 4);
        }
        let p = s.stats().publisher;
        assert_eq!((p.published, p.dropped, p.queued), (10, 6, 4));
        let counted: Vec<u8> = s
            .queue
            .iter()
            .filter(|m| m.counted)
            .map(|m| m.payload[0])
            .collect();
        assert_eq!(
            counted,
            [6, 7, 8, 9],
            "exactly the oldest counted ones went"
        );
        assert!(s.queue.iter().filter(|m| !m.counted).count() <= 4);
        assert!(books_balance(&mut s));
        // Sending takes both kinds off the books.
        s.connected(false);
        while s.next_to_send(100).is_some() {}
        assert_eq!((s.queue.len(), s.uncounted), (0, 0));
    }

    #[test]
    fn messages_lost_by_the_client_go_back_to_the_head_in_order() {
        let mut s = Outbox::default();
        for i in 0..6u8 {
            s.push("t".into(), vec![i], false, true, 10);
        }
        let mut take = || s.queue.pop_front().unwrap();
        let (m0, m1, m2, m3) = (take(), take(), take(), take());
        s.by_pkid.insert(9, m1);
        s.by_pkid.insert(2, m0);
        s.collided = Some((4, m2));
        s.awaiting_pkid.push_back(m3);
        s.requeue_in_flight();
        assert_eq!(payloads(&s.queue), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(s.outstanding(), 0);
    }

    #[test]
    fn nothing_is_sent_before_the_broker_accepts_or_beyond_the_window() {
        let mut s = Outbox::default();
        for i in 0..3u8 {
            s.push("t".into(), vec![i], false, true, 10);
        }
        assert!(s.next_to_send(2).is_none());
        s.connected(false);
        assert_eq!(s.next_to_send(2).map(|m| m.payload[0]), Some(0));
        assert_eq!(s.next_to_send(2).map(|m| m.payload[0]), Some(1));
        assert!(s.next_to_send(2).is_none());
        assert_eq!((s.stats().in_flight, s.stats().publisher.queued), (2, 3));
    }

    #[test]
    fn a_broker_back_without_the_session_gets_the_unacknowledged_messages_again() {
        let mut s = Outbox::default();
        for i in 0..4u8 {
            s.push("t".into(), vec![i], false, true, 10);
        }
        s.connected(false);
        for pkid in 1..=3 {
            s.next_to_send(10);
            s.written(pkid);
        }
        s.acked(1);
        assert!(s.connection_lost("connection to h:1 lost"));
        assert!(!s.connection_lost("connection to h:1 lost"));
        assert_eq!(s.connected(false), 2);
        assert_eq!(payloads(&s.queue), vec![1, 2, 3]);
        let stats = s.stats();
        assert_eq!((stats.resent, stats.publisher.sent), (2, 1));
        assert_eq!(
            (stats.publisher.reconnects, stats.connection_failures),
            (1, 2)
        );
        assert!(books_balance(&mut s));
    }

    #[test]
    fn a_broker_that_kept_the_session_gets_nothing_queued_again() {
        let mut s = Outbox::default();
        s.push("t".into(), vec![0], false, true, 10);
        s.connected(true);
        s.next_to_send(10);
        s.written(7);
        s.connection_lost("gone");
        assert_eq!(s.connected(true), 0);
        assert!(s.queue.is_empty() && s.outstanding() == 1);
        s.acked(7);
        assert!(s.is_settled());
        assert_eq!(s.stats().publisher.sent, 1);
    }

    #[test]
    fn a_packet_id_still_in_use_holds_its_message_until_written() {
        let mut s = Outbox::default();
        s.push("t".into(), vec![0], false, true, 10);
        s.connected(false);
        s.next_to_send(10);
        s.pkid_in_use(5);
        assert_eq!(s.outstanding(), 1);
        s.written(5);
        s.acked(5);
        assert!(s.is_settled());
        assert_eq!(s.stats().publisher.sent, 1);
    }

    #[test]
    fn published_is_always_sent_plus_dropped_plus_queued() {
        let mut s = Outbox::default();
        s.connected(false);
        // The link's own status is on no counter.
        s.push_first("status".into(), vec![255]);
        let mut pkid = 0u16;
        for round in 0..40u8 {
            s.push("t".into(), vec![round], false, true, 5);
            if round % 3 == 0 {
                if let Some(m) = s.next_to_send(4) {
                    // Counted messages at QoS 1, the status at QoS 0 as the worker sends them.
                    pkid = if m.counted { pkid % 60 + 1 } else { 0 };
                    s.written(pkid);
                }
            }
            if round % 4 == 0 {
                s.acked(pkid);
            }
            if round % 11 == 0 {
                s.connection_lost("gone");
                s.connected(round % 2 == 0);
            }
            assert!(books_balance(&mut s), "round {round}: {:?}", s.stats());
        }
        let p = s.stats().publisher;
        assert!(p.dropped > 0 && p.sent > 0 && p.queued > 0, "{p:?}");
    }
}
