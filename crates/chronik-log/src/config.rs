//! How a partition log rolls its segments, indexes them, retains them and
//! compacts them.

const DEFAULT_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 4096;
const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, PartialEq)]
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
    /// `cleanup.policy` includes `compact`: the cleaner keeps the latest
    /// record of each key.
    pub compact: bool,
    /// Clean once this share of the cleanable bytes was written since the
    /// last pass.
    pub min_cleanable_dirty_ratio: f64,
    /// Records stay uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// A dirty segment older than this is compacted whatever the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// Tombstones stay at least this long after their segment was written.
    pub delete_retention_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            retention_ms: Some(DEFAULT_RETENTION_MS),
            retention_bytes: None,
            compact: false,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            delete_retention_ms: 24 * 60 * 60 * 1000,
        }
    }
}
