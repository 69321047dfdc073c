//! A one-slot mailbox between two threads where the latest item wins: the producer never
//! waits, and an item the consumer has not taken yet is replaced (and counted) by a newer one.
//! This is how a slow stage stays on the newest data instead of a queue of stale data: the
//! capture thread hands frames to inference through one ([`crate::source::latest`]), and the
//! detector hands frames to the segmenter through another ([`crate::branch::segment`]).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What [`Mailbox::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    Item(T),
    /// Closed, and nothing left in the slot.
    Closed,
    /// Nothing arrived within the timeout.
    TimedOut,
}

struct Slot<T> {
    item: Option<T>,
    closed: bool,
    /// Items replaced before the consumer took them, or cleared at closing.
    replaced: u64,
}

pub struct Mailbox<T> {
    slot: Mutex<Slot<T>>,
    filled: Condvar,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Mailbox {
            slot: Mutex::new(Slot {
                item: None,
                closed: false,
                replaced: 0,
            }),
            filled: Condvar::new(),
        }
    }
}

impl<T> Mailbox<T> {
    /// The slot, even if a thread panicked while holding it: one item and two counters have
    /// no invariant a panic could break.
    fn lock(&self) -> MutexGuard<'_, Slot<T>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves `item` for the consumer without waiting. Returns the item it replaced, one the
    /// consumer never took.
    pub fn put(&self, item: T) -> Option<T> {
        let mut slot = self.lock();
        let replaced = slot.item.replace(item);
        if replaced.is_some() {
            slot.replaced += 1;
        }
        drop(slot);
        self.filled.notify_one();
        replaced
    }

    /// The item in the slot, waiting for one at most `timeout` (`None`: for as long as it
    /// takes). An item put before closing is still handed out after it.
    pub fn take(&self, timeout: Option<Duration>) -> Taken<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut slot = self.lock();
        loop {
            if let Some(item) = slot.item.take() {
                return Taken::Item(item);
            }
            if slot.closed {
                return Taken::Closed;
            }
            slot = match deadline {
                None => self.filled.wait(slot).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Taken::TimedOut;
                    }
                    self.filled
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// No more items will come: the consumer takes what is in the slot, then finds it closed.
    pub fn close(&self) {
        self.lock().closed = true;
        self.filled.notify_all();
    }

    /// Closes and throws away an item still waiting (counted as replaced): the consumer
    /// finishes only what it holds already.
    pub fn close_and_clear(&self) {
        let mut slot = self.lock();
        slot.closed = true;
        if slot.item.take().is_some() {
            slot.replaced += 1;
        }
        drop(slot);
        self.filled.notify_all();
    }

    /// Items replaced before the consumer took them (and one cleared at closing).
    pub fn replaced(&self) -> u64 {
        self.lock().replaced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_item_replaces_one_not_yet_taken_and_is_counted() {
        let mailbox = Mailbox::default();
        assert_eq!(mailbox.put(1), None);
        assert_eq!(mailbox.put(2), Some(1));
        assert_eq!(mailbox.take(None), Taken::Item(2));
        assert_eq!(mailbox.put(3), None);
        assert_eq!(mailbox.replaced(), 1);
    }

    #[test]
    fn an_item_put_before_closing_is_still_taken_then_closed() {
        let mailbox = Mailbox::default();
        mailbox.put(7);
        mailbox.close();
        assert_eq!(mailbox.take(None), Taken::Item(7));
        assert_eq!(mailbox.take(None), Taken::Closed);
    }

    #[test]
    fn closing_and_clearing_drops_the_waiting_item() {
        let mailbox = Mailbox::default();
        mailbox.put(7);
        mailbox.close_and_clear();
        assert_eq!(mailbox.take(None), Taken::Closed);
        assert_eq!(mailbox.replaced(), 1);
    }

    #[test]
    fn an_empty_mailbox_times_out_and_wakes_for_an_item_from_another_thread() {
        let mailbox = std::sync::Arc::new(Mailbox::default());
        assert_eq!(
            mailbox.take(Some(Duration::from_millis(5))),
            Taken::TimedOut
        );
        let producer = {
            let mailbox = std::sync::Arc::clone(&mailbox);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                mailbox.put("frame");
            })
        };
        assert_eq!(mailbox.take(None), Taken::Item("frame"));
        producer.join().unwrap();
    }
}
