//! The log of one Kafka partition, stored like Kafka stores it.
//!
//! A [`PartitionLog`] owns a directory of segments. Each segment is a
//! `.log` file of Kafka v2 record batches, named by its base offset, with a
//! sparse offset index (`.index`) and time index (`.timeindex`) beside it.
//! The log assigns offsets to appended batches, serves reads of whole
//! batches (records are never decoded, and reads can be handed out as file
//! ranges for `sendfile`), finds batches by timestamp, applies time and size
//! retention, compacts keyed logs (`compaction`), moves the
//! log start offset for DeleteRecords,
//! cuts its tail back to a given offset, and on open recovers from a
//! crash by cutting the active segment at the first torn or corrupt batch.
//!
//! It is synchronous and single-writer: appends need `&mut self`, reads only
//! `&self` (positioned reads), so callers can share it behind a `RwLock`.
//! Replication, high watermarks and producer state live in other crates.

pub mod batch;
mod checkpoint;
pub mod compaction;
pub mod compression;
mod config;
pub mod control;
mod error;
mod index;
pub mod log;
pub mod records;
mod recovery;
mod scan;
mod segment;
mod stored;
pub mod testing;

pub use batch::{
    BATCH_HEADER_LEN, BatchError, BatchHeader, LOG_APPEND_TIME_FLAG, check_appendable, extend_crc_over_checked,
    frame_batches, parse_header, rebuild_batch, set_base_offset, set_partition_leader_epoch, split_batches,
    validate_batch,
};
pub use config::LogConfig;
pub use error::LogError;
pub use log::{AppendInfo, PartitionLog};
pub use stored::{FileRange, StoredBatches};
