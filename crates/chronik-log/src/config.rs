//! How a partition log rolls its segments, indexes them and retains them.

const DEFAULT_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would grow past this.
    /// Values above `u32::MAX` are treated as `u32::MAX` (index positions
    /// are u32). A batch larger than this still gets a segment of its own.
    pub segment_bytes: u64,
    /// At most this many bytes of batches between offset index entries.
    pub index_interval_bytes: u64,
    /// Delete closed segments whose newest timestamp is older than this.
    /// `None` (or a negative value, as Kafka's -1) keeps data forever.
    pub retention_ms: Option<i64>,
    /// Delete oldest closed segments while the log stays at least this big.
    pub retention_bytes: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            retention_ms: Some(DEFAULT_RETENTION_MS),
            retention_bytes: None,
        }
    }
}
