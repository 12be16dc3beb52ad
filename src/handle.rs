//! What every clone of the provider (and the layer) shares: the queue's sending side and the
//! text limits.

use crate::queue::Queue;
use crate::sanitize::TextLimits;

/// The state behind a provider or layer handle.
#[derive(Debug)]
pub(crate) struct Handle {
    pub queue: Queue,
    pub limits: TextLimits,
}
