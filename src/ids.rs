//! Time-ordered ids (UUIDv7, RFC 9562) made from a clock reading the caller already has.
//!
//! `Uuid::now_v7` reads the clock itself and takes a process-wide mutex for its counter; uuid's
//! thread-local `ContextV7` avoids the mutex but still cost about 60 ns an id here (128-bit
//! timestamp arithmetic, and a fresh draw of random bits for the counter every millisecond).
//! A span's id is made on the application's thread, so the layout is filled here with RFC 9562's
//! "fixed-length dedicated counter" method (section 6.2, method 1), and uuid's `Builder` sets the
//! version and variant:
//!
//! - 48 bits: Unix milliseconds of the reading;
//! - 12 bits (`rand_a`): a counter per thread and millisecond, starting at a random point in its
//!   lower half, so ids made on one thread are strictly increasing;
//! - 62 bits (`rand_b`): random, from the thread-local generator uuid itself uses (`rand`'s
//!   `ThreadRng`), so ids made at once on different threads or processes stay unique.
//!
//! More than the counter's room in one millisecond (2,048 ids at least) borrows the next
//! millisecond, as does a clock that steps back: an id may then be ahead of its clock reading by
//! a few milliseconds, never behind the thread's previous id.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

use uuid::{Builder, Uuid};

/// The counter's largest value (12 bits).
const COUNTER_MAX: u16 = 0x0FFF;
/// A new millisecond's counter starts below this, leaving at least half its room.
const COUNTER_START_MASK: u16 = 0x07FF;

thread_local! {
    /// The millisecond of this thread's last id, and the counter within it.
    static LAST: Cell<(u64, u16)> = const { Cell::new((0, 0)) };
}

/// A UUIDv7 for the time `at` (a clock reading before 1970 counts as 1970).
pub(crate) fn v7_at(at: SystemTime) -> Uuid {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_ms = since
        .as_secs()
        .saturating_mul(1_000)
        .saturating_add(u64::from(since.subsec_millis()));
    let random: u64 = rand::random();
    let (ms, counter) = LAST.with(|last| {
        let (last_ms, last_counter) = last.get();
        // The counter's random start comes from bits the random tail does not use (its top
        // two are overwritten by the variant).
        let fresh = (random >> 48) as u16 & COUNTER_START_MASK;
        let next = if now_ms > last_ms {
            (now_ms, fresh)
        } else if last_counter < COUNTER_MAX {
            (last_ms, last_counter + 1)
        } else {
            (last_ms.saturating_add(1), fresh)
        };
        last.set(next);
        next
    });
    let mut bytes = [0u8; 10];
    // The version takes the top four bits of the first byte, left clear by a 12-bit counter.
    bytes[..2].copy_from_slice(&counter.to_be_bytes());
    // The variant takes the top two bits of the tail.
    bytes[2..].copy_from_slice(&random.to_be_bytes());
    Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid()
}

/// A UUIDv7 for now.
pub(crate) fn v7_now() -> Uuid {
    v7_at(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    #[test]
    fn ids_carry_the_given_time_and_increase_on_one_thread() {
        let at = UNIX_EPOCH + Duration::from_millis(1_790_000_000_123);
        let id = v7_at(at);
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_790_000_000, 123));
        let ids: Vec<Uuid> = (0..10_000).map(|_| v7_at(at)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
    }

    #[test]
    fn ids_made_on_several_threads_at_once_are_unique() {
        let at = SystemTime::now();
        let all: Vec<Uuid> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(move || (0..20_000).map(|_| v7_at(at)).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
    }

    #[test]
    fn a_clock_stepping_back_or_a_full_millisecond_keeps_ids_increasing() {
        let ms = |id: &Uuid| {
            let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
            secs * 1_000 + u64::from(nanos / 1_000_000)
        };
        let at = UNIX_EPOCH + Duration::from_millis(1_800_000_000_000);
        let mut ids = vec![v7_at(at)];
        ids.push(v7_at(at - Duration::from_millis(5)));
        // More ids in one millisecond than the counter has room for.
        ids.extend((0..5_000).map(|_| v7_at(at)));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        assert_eq!(
            ms(&ids[1]),
            1_800_000_000_000,
            "a step back keeps the last millisecond"
        );
        let last = ms(ids.last().unwrap());
        assert!(
            (1_800_000_000_001..=1_800_000_000_003).contains(&last),
            "a full millisecond borrows the next: {last}"
        );
        assert!(
            ids.iter()
                .all(|id| id.get_version_num() == 7 && id.get_variant() == uuid::Variant::RFC4122)
        );
        // A later reading starts from its own millisecond again.
        let later = v7_at(at + Duration::from_millis(10));
        assert_eq!(ms(&later), 1_800_000_000_010);
    }
}
