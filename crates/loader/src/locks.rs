//! One lock per order within the process, so two messages of the same `stockout_id` handled at
//! the same time by one loader take turns instead of both creating a bill.
//!
//! Only keys being handled hold an entry: an entry lives as long as someone holds or waits for
//! its lock, and dead entries are swept whenever the map has grown, so the map stays about as
//! large as the loader's in-flight bound. Across processes the ledger's compare-and-set and the
//! look-up by number do this job; that is [`crate::load`]'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Entries kept before dead ones are swept.
const SWEEP_AT: usize = 64;

/// Locks by key.
#[derive(Debug, Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<String, Weak<AsyncMutex<()>>>>,
}

/// Holds a key's lock until dropped.
#[derive(Debug)]
pub struct KeyGuard {
    _guard: OwnedMutexGuard<()>,
}

impl KeyedLocks {
    /// Waits until no one else holds `key`'s lock, and takes it.
    pub async fn lock(&self, key: &str) -> KeyGuard {
        let lock = self.entry(key);
        KeyGuard {
            _guard: lock.lock_owned().await,
        }
    }

    /// How many keys have an entry, for tests.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no key has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry(&self, key: &str) -> Arc<AsyncMutex<()>> {
        let mut locks = self.map();
        if let Some(lock) = locks.get(key).and_then(Weak::upgrade) {
            return lock;
        }
        if locks.len() >= SWEEP_AT {
            locks.retain(|_, lock| lock.strong_count() > 0);
        }
        let lock = Arc::new(AsyncMutex::new(()));
        locks.insert(key.to_owned(), Arc::downgrade(&lock));
        lock
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<AsyncMutex<()>>>> {
        // The map holds only weak pointers; a panic cannot leave it inconsistent.
        self.locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn the_same_key_waits_and_another_key_does_not() {
        let locks = Arc::new(KeyedLocks::default());
        let acquired = Arc::new(AtomicBool::new(false));
        let first = locks.lock("17").await;

        let waiting = tokio::spawn({
            let (locks, acquired) = (Arc::clone(&locks), Arc::clone(&acquired));
            async move {
                let _second = locks.lock("17").await;
                acquired.store(true, Ordering::SeqCst);
            }
        });
        let other = tokio::time::timeout(Duration::from_secs(5), locks.lock("18")).await;
        assert!(other.is_ok(), "an unrelated key had to wait");
        // On the test's single thread, yielding lets the waiter run as far as it can.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(
            !acquired.load(Ordering::SeqCst),
            "the same key did not wait"
        );

        drop(first);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiter gets the lock once it is released")
            .expect("waiter task");
        assert!(acquired.load(Ordering::SeqCst));
    }

    #[tokio::test]
    async fn released_keys_are_swept_and_the_map_stays_small() {
        let locks = KeyedLocks::default();
        for key in 0..1000 {
            let _guard = locks.lock(&key.to_string()).await;
        }
        assert!(locks.len() <= SWEEP_AT + 1, "{} entries kept", locks.len());
    }
}
