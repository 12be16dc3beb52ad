//! What every clone of the provider (and the layer) shares: the queue's sending side and the
//! text limits.

use crate::privacy::Privacy;
use crate::queue::Queue;
use crate::record::Record;
use crate::sanitize::TextLimits;

/// The state behind a provider or layer handle.
#[derive(Debug)]
pub(crate) struct Handle {
    pub queue: Queue,
    pub limits: TextLimits,
    pub privacy: Privacy,
}

impl Handle {
    /// Applies the privacy settings and queues the record: the one way rows leave the
    /// application's threads.
    pub fn push(&self, mut record: Record) {
        if self.privacy.is_active() {
            // The hook must see the finished row, on this thread, before it is queued.
            record = self.queue.shared.finish(record);
            self.privacy.apply(&mut record, &self.limits);
        }
        self.queue.push(record);
    }
}
