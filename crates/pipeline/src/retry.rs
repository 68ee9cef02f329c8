//! The backoff the crate's own retry loops use: connecting, pulling after a stream error,
//! re-binding a consumer.
//!
//! Delays double from a floor to a ceiling and return to the floor after a success, so a loop
//! that keeps failing waits longer and longer instead of spinning, and one that recovers is
//! quick again. The nak delays of failed messages follow [`crate::PullConfig::backoff`] instead.

use std::time::Duration;

/// A doubling delay between a floor and a ceiling.
#[derive(Clone, Debug)]
pub struct Backoff {
    floor: Duration,
    ceiling: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `floor` and never exceeds `ceiling`.
    pub fn new(floor: Duration, ceiling: Duration) -> Backoff {
        Backoff {
            floor,
            ceiling: ceiling.max(floor),
            next: floor,
        }
    }

    /// The delay to wait now; the one after it is twice as long, up to the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.ceiling);
        delay
    }

    /// Starts again from the floor, after a success.
    pub fn reset(&mut self) {
        self.next = self.floor;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_and_reset_to_the_floor() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<_> = (0..4).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }
}
