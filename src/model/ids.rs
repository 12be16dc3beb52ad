//! The ids of traces and spans ([`TraceId`], [`SpanId`]): time-ordered UUIDv7s (RFC 9562) made
//! from a clock reading the caller already has.
//!
//! `Uuid::now_v7` reads the clock itself and takes a process-wide mutex for its counter; uuid's
//! thread-local `ContextV7` avoids the mutex but still costs several times more per id
//! (128-bit timestamp arithmetic and a `ChaCha` draw per id; `BENCHMARKS.md`). A span's id is made on the application's
//! thread, so the layout is filled here with RFC 9562's "fixed-length dedicated counter" method
//! (section 6.2, method 1), and uuid's `Builder` sets the version and variant:
//!
//! - 48 bits: Unix milliseconds of the reading;
//! - 12 bits (`rand_a`): a counter per thread and millisecond, starting at a random point in its
//!   lower half, so ids made on one thread are strictly increasing;
//! - 62 bits (`rand_b`): random, so ids made at once on different threads or processes stay
//!   unique.
//!
//! The random bits come from a small generator per thread (`rand`'s `SmallRng`), seeded from
//! the operating system. It lives in a const thread-local with no destructor, so a span that
//! closes while its thread's other thread-locals are being destroyed still gets an id instead
//! of a panic (`rand::random` goes through a thread-local that panics then). A forked child
//! inherits the forking thread's generator: the generator notes its process id and seeds
//! afresh at the first new millisecond in another process, so parent and child share at most
//! the ids of the millisecond of the fork (a child needs a layer built after the fork anyway:
//! the writer's thread does not survive `fork`).
//!
//! A millisecond holding more ids than the counter's room (at least 2,049) borrows the next
//! millisecond; a clock that steps back keeps the thread at its last millisecond until the
//! clock catches up. An id's time can then be ahead of its clock reading by the step, plus a
//! millisecond per 2,049 ids made meanwhile; it is never behind the thread's previous id.

use std::cell::Cell;
use std::fmt;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::{SmallRng, SysRng};
use rand::{Rng, SeedableRng};
use uuid::{Builder, Uuid};

/// The counter's largest value (12 bits).
const COUNTER_MAX: u16 = 0x0FFF;
/// A new millisecond's counter starts at most at this, leaving at least half its room.
const COUNTER_START_MASK: u16 = 0x07FF;

/// This thread's id state.
struct Generator {
    /// The millisecond of the thread's last id.
    last_ms: u64,
    /// The counter within `last_ms`.
    counter: u16,
    /// The source of the random bits.
    rng: SmallRng,
    /// The process that seeded `rng` (a forked child must not repeat its parent's draws).
    pid: u32,
}

impl Generator {
    /// A generator seeded from the operating system; where that fails, from a per-thread
    /// hash key and the clock (unique enough for ids, never a panic).
    fn seeded() -> Self {
        let rng = SmallRng::try_from_rng(&mut SysRng).unwrap_or_else(|_| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            SmallRng::seed_from_u64(std::hash::RandomState::new().hash_one(nanos))
        });
        Self {
            last_ms: 0,
            counter: 0,
            rng,
            pid: std::process::id(),
        }
    }

    /// The millisecond and counter of the next id for a clock reading of `now_ms`.
    fn next(&mut self, now_ms: u64) -> (u64, u16) {
        if now_ms > self.last_ms {
            // Once per millisecond, so the system call costs nothing noticeable.
            if std::process::id() != self.pid {
                *self = Self {
                    last_ms: self.last_ms,
                    ..Self::seeded()
                };
            }
            self.last_ms = now_ms;
            self.counter = self.fresh_counter();
        } else if self.counter < COUNTER_MAX {
            self.counter += 1;
        } else {
            self.last_ms = self.last_ms.saturating_add(1);
            self.counter = self.fresh_counter();
        }
        (self.last_ms, self.counter)
    }

    /// A new millisecond's counter: random, in the lower half of its room.
    fn fresh_counter(&mut self) -> u16 {
        (self.rng.next_u32() as u16) & COUNTER_START_MASK
    }
}

thread_local! {
    /// `None` until the thread's first id. Const-initialised and without a destructor: see the
    /// module's documentation.
    static GENERATOR: Cell<Option<Generator>> = const { Cell::new(None) };
}

/// A UUIDv7 for the time `at` (a clock reading before 1970 counts as 1970).
pub(crate) fn v7_at(at: SystemTime) -> Uuid {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_ms = since
        .as_secs()
        .saturating_mul(1_000)
        .saturating_add(u64::from(since.subsec_millis()));
    let mut generator = GENERATOR.take().unwrap_or_else(Generator::seeded);
    let (ms, counter) = generator.next(now_ms);
    let random = generator.rng.next_u64();
    GENERATOR.set(Some(generator));
    let mut bytes = [0u8; 10];
    // The version takes the top four bits of the first byte, left clear by a 12-bit counter.
    bytes[..2].copy_from_slice(&counter.to_be_bytes());
    // The variant takes the top two bits of the tail.
    bytes[2..].copy_from_slice(&random.to_be_bytes());
    Builder::from_unix_timestamp_millis(ms, &bytes).into_uuid()
}

/// The id of a span inside trace `trace`, made at `at`: the trace id's first 8 bytes, then 8
/// random bytes (never all zero). A W3C span id is those last 8 bytes, so a process that
/// receives `(trace id, span id)` in a `traceparent` rebuilds the span's stored id exactly; a
/// trace's root is the trace id itself, which follows the same rule.
///
/// Not time-ordered: nothing orders spans by id (their key leads with the trace id).
pub(crate) fn span_in(trace: Uuid, at: SystemTime) -> Uuid {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let now_ms = since
        .as_secs()
        .saturating_mul(1_000)
        .saturating_add(u64::from(since.subsec_millis()));
    let mut generator = GENERATOR.take().unwrap_or_else(Generator::seeded);
    // Advanced as for an id, for its once-a-millisecond check for a fork.
    let _ = generator.next(now_ms);
    let random = generator.rng.next_u64();
    GENERATOR.set(Some(generator));
    let (high, _) = trace.as_u64_pair();
    Uuid::from_u64_pair(high, random.max(1))
}

/// A UUIDv7 for now.
pub(crate) fn v7_now() -> Uuid {
    v7_at(SystemTime::now())
}

/// A trace's id: a UUIDv7 made on the client (time-ordered, no round trip).
///
/// It is `traces.id` and the `trace_id` of every other row. `Display` prints it as a W3C trace
/// id (32 lowercase hex digits); `Debug` prints the UUID form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub Uuid);

/// A span's id: a UUIDv7 made on the client. `Display` prints it as a W3C span id (the last 16
/// hex digits, the random part), matching the `spans.span_id` column.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub Uuid);

impl TraceId {
    /// A new time-ordered trace id.
    pub fn new() -> Self {
        Self(v7_now())
    }
    /// The id as a UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl SpanId {
    /// A new time-ordered span id, not tied to a trace. Spans the provider starts take
    /// [`SpanId::in_trace`] instead, so their W3C span id identifies them in their trace.
    pub fn new() -> Self {
        Self(v7_now())
    }
    /// A new id for a span of `trace`: the trace id's first 8 bytes, then 8 random ones (the
    /// W3C span id, printed by `Display`).
    pub fn in_trace(trace: TraceId) -> Self {
        Self(span_in(trace.0, SystemTime::now()))
    }
    /// The id as a UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for SpanId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.simple())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        f.write_str(&self.0.simple().encode_lower(&mut buf)[16..])
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", self.0)
    }
}

impl From<Uuid> for TraceId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

impl From<Uuid> for SpanId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_span_id_starts_with_its_trace_id_and_its_w3c_half_is_random() {
        let trace = v7_now();
        let at = SystemTime::now();
        let ids: HashSet<Uuid> = (0..10_000).map(|_| span_in(trace, at)).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert_eq!(id.as_u64_pair().0, trace.as_u64_pair().0);
            assert_ne!(id.as_u64_pair().1, 0);
            assert_ne!(*id, trace);
        }
        let span = SpanId::in_trace(TraceId(trace));
        assert_eq!(span.0.as_bytes()[..8], trace.as_bytes()[..8]);
    }

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

    #[test]
    fn ids_are_made_while_the_threads_locals_are_being_destroyed() {
        use std::sync::atomic::{AtomicBool, Ordering};
        static MADE: AtomicBool = AtomicBool::new(false);
        // Like a span guard kept in a thread-local: it closes during the thread's teardown.
        struct MakesAnIdOnDrop;
        impl Drop for MakesAnIdOnDrop {
            fn drop(&mut self) {
                let id = v7_at(SystemTime::now());
                MADE.store(id.get_version_num() == 7, Ordering::SeqCst);
            }
        }
        thread_local! {
            static GUARD: MakesAnIdOnDrop = const { MakesAnIdOnDrop };
        }
        std::thread::spawn(|| {
            GUARD.with(|_| {});
            let _ = v7_at(SystemTime::now());
        })
        .join()
        .unwrap();
        assert!(
            MADE.load(Ordering::SeqCst),
            "an id was made in the destructor"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_forked_child_does_not_repeat_its_parents_ids() {
        let at = SystemTime::now();
        // Seeds this thread's generator, which the child inherits.
        let _ = v7_at(at);
        let later = at + Duration::from_millis(5);
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `pipe` writes two descriptors into the array it is given.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes an id (no allocation, no lock), writes it and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let id = v7_at(later);
            // SAFETY: writes the id's 16 bytes to the pipe, then ends the child at once.
            unsafe {
                libc::write(fds[1], id.as_bytes().as_ptr().cast(), 16);
                libc::_exit(0);
            }
        }
        let parent = v7_at(later);
        let mut child = [0u8; 16];
        // SAFETY: reads at most 16 bytes into a 16-byte buffer; waits for the child it forked.
        let read = unsafe {
            let n = libc::read(fds[0], child.as_mut_ptr().cast(), 16);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
            n
        };
        assert_eq!(read, 16);
        let child = Uuid::from_bytes(child);
        assert_eq!(child.get_version_num(), 7);
        // Without the reseed both draw from the same state: the same id, to the bit.
        assert_ne!(parent, child);
        assert_ne!(parent.as_u64_pair().1, child.as_u64_pair().1);
    }
}
