//! The wall clock of a Portico DNS node: the one place it is read. Commands carry this time
//! (the proposing node's clock); `apply` never reads it.

use topology::Timestamp;

/// Milliseconds since the Unix epoch, now.
pub fn now() -> Timestamp {
    Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    )
}
