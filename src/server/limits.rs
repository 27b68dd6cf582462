//! The `[server]` limits of a running tollgate, which a reload (SIGHUP) may change.
//!
//! [`SharedLimits`] holds the current ones: connections read them when a deadline is set
//! (one `ArcSwap` load, no lock), so a new `request_head_timeout` or `keepalive_timeout`
//! applies from the next request on every connection, and accept loops are told of a
//! change so [`Slots`] can resize `max_connections` without closing anything.

use crate::config::Limits;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// The current limits, shared by every listener and connection.
#[derive(Debug)]
pub struct SharedLimits {
    current: ArcSwap<Limits>,
    /// Accept loops wait on this to resize their slots.
    changed: watch::Sender<()>,
}

impl SharedLimits {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(limits),
            changed: watch::Sender::new(()),
        })
    }

    /// The limits as last set.
    pub fn get(&self) -> Limits {
        **self.current.load()
    }

    /// From now on: the next deadline on every connection, and each listener's slots.
    pub fn set(&self, limits: Limits) {
        self.current.store(Arc::new(limits));
        self.changed.send_replace(());
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// The `max_connections` permits of one listener; only its accept loop resizes them.
pub(super) struct Slots {
    pub(super) semaphore: Arc<Semaphore>,
    /// The current `max_connections`.
    pub(super) total: u32,
    /// Permits still held by connections beyond a lowered limit: each is retired (not
    /// handed to a new connection) when it comes back.
    pub(super) owed: u32,
}

impl Slots {
    pub(super) fn new(total: u32) -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(total as usize)),
            total,
            owed: 0,
        }
    }

    /// A larger limit frees permits at once; a smaller one retires free permits now and
    /// the rest as connections give them back. No open connection is closed for it.
    pub(super) fn resize(&mut self, to: u32) {
        if to > self.total {
            let grow = to - self.total;
            let forgiven = grow.min(self.owed);
            self.owed -= forgiven;
            self.semaphore.add_permits((grow - forgiven) as usize);
        } else {
            self.owed += self.total - to;
            while self.owed > 0 {
                match self.semaphore.try_acquire() {
                    Ok(free) => {
                        free.forget();
                        self.owed -= 1;
                    }
                    Err(_) => break,
                }
            }
        }
        self.total = to;
    }

    /// The slot for a new connection, or `None` when it is retired instead.
    pub(super) fn keep(&mut self, slot: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        if self.owed == 0 {
            return Some(slot);
        }
        slot.forget();
        self.owed -= 1;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[tokio::test]
    async fn a_lower_limit_retires_free_permits_at_once_and_held_ones_when_they_return() {
        let mut slots = Slots::new(3);
        let held = slots
            .semaphore
            .clone()
            .try_acquire_many_owned(2)
            .expect("free");
        slots.resize(1);
        // One was free: retired now. Of the two held, one is owed.
        assert_eq!((slots.semaphore.available_permits(), slots.owed), (0, 1));
        drop(held);
        let first = slots
            .semaphore
            .clone()
            .try_acquire_owned()
            .expect("returned");
        assert!(slots.keep(first).is_none(), "the owed permit is retired");
        let second = slots
            .semaphore
            .clone()
            .try_acquire_owned()
            .expect("returned");
        let serving = slots.keep(second).expect("the one permit left is served");
        assert_eq!(slots.semaphore.available_permits(), 0);
        drop(serving);
        assert_eq!(slots.semaphore.available_permits(), 1, "the new limit");
    }

    #[tokio::test]
    async fn a_higher_limit_first_forgives_what_is_owed() {
        let mut slots = Slots::new(2);
        let held = slots
            .semaphore
            .clone()
            .try_acquire_many_owned(2)
            .expect("free");
        slots.resize(1);
        assert_eq!(slots.owed, 1);
        slots.resize(4);
        assert_eq!((slots.owed, slots.semaphore.available_permits()), (0, 2));
        drop(held);
        assert_eq!(slots.semaphore.available_permits(), 4);
        assert_eq!(slots.total + slots.owed, 4, "the drain waits for all four");
    }
}
