//! What every clone of the provider (and the layer) shares: the queue's sending side, the
//! mapping configuration and the privacy settings.

use std::sync::Arc;

use crate::map::privacy::Privacy;
use crate::map::{self, MapConfig};
use crate::model::record::Record;
use crate::model::sanitize::TextLimits;
use crate::queue::Queue;

/// The state behind a provider or layer handle.
#[derive(Debug)]
pub(crate) struct Handle {
    pub queue: Queue,
    pub map: Arc<MapConfig>,
    pub privacy: Privacy,
}

impl Handle {
    /// The text limits every text is cut to.
    pub fn limits(&self) -> &TextLimits {
        &self.map.limits
    }

    /// Applies the privacy settings and queues the record: the one way rows leave the
    /// application's threads.
    pub fn push(&self, mut record: Record) {
        if self.privacy.is_active() {
            // The hook must see the finished row, on this thread, before it is queued.
            record = map::map(&self.map, record).into_record();
            self.privacy.apply(&mut record, self.limits());
        }
        self.queue.push(record);
    }
}
