//! Time-ordered ids (UUIDv7) made from a clock reading the caller already has.
//!
//! `Uuid::now_v7` reads the clock itself and takes a process-wide mutex for its counter. On
//! the hot path a span's id and its start time come from one reading instead, and the counter
//! lives in a thread-local context: ids stay unique (a counter reseeded at random every
//! millisecond, plus random bits) and ordered by time to the millisecond, and ids made on one
//! thread stay strictly increasing.

use std::time::{SystemTime, UNIX_EPOCH};

use uuid::timestamp::context::{ContextV7, ThreadLocalContext};
use uuid::{Timestamp, Uuid};

thread_local! {
    static CONTEXT: ContextV7 = const { ContextV7::new() };
}

/// A UUIDv7 for the time `at` (a clock reading before 1970 counts as 1970).
pub(crate) fn v7_at(at: SystemTime) -> Uuid {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Uuid::new_v7(Timestamp::from_unix(
        ThreadLocalContext::new(&CONTEXT),
        since.as_secs(),
        since.subsec_nanos(),
    ))
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
}
