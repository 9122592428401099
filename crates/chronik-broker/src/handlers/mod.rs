//! One module per Kafka API: each takes a decoded request and builds its
//! response.

pub mod acls;
pub mod api_versions;
pub mod configs;
pub mod consumer_groups;
pub mod delete_records;
pub mod describe_cluster;
pub mod describe_configs;
pub mod features;
pub mod fetch;
pub mod find_coordinator;
pub mod groups;
pub mod init_producer_id;
pub mod leader_epochs;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producers;
pub mod reassignments;
pub mod scram_users;
pub mod topic_partitions;
pub mod topics;
pub mod transactions;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}
