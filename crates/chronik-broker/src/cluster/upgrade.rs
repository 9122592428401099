//! Moving the cluster to a higher `chronik.version`: only once every member
//! answers that its build reads the level, so that no replica meets an entry
//! it cannot apply. Kafka's UpdateFeatures and `chronik-server cluster
//! version --set` both come here.

use chronik_raft::NodeId;
use chronik_raft::grpc::REQUEST_TIMEOUT;
use chronik_state::metadata::{MetadataCommand, MetadataError};
use chronik_state::version::{self, FEATURE};
use kafka_protocol::ResponseError;

use super::supported_versions;
use crate::Broker;

/// Sets the cluster's level to `level` (or only checks that it could be).
/// Setting the level it already runs at changes nothing.
pub async fn set_version(broker: &Broker, level: i16, validate_only: bool) -> Result<(), MetadataError> {
    let (current, members) = {
        let metadata = broker.state.metadata();
        metadata.check_version_change(level)?;
        // Pending members too: one added but not started yet will apply
        // entries written at the new level once it starts.
        (metadata.version_level(), metadata.all_nodes())
    };
    for &node in &members {
        let newest = readable_by(broker, node).await?;
        if newest < level {
            return Err(MetadataError::new(
                ResponseError::InvalidUpdateVersion,
                format!("node {node} reads {FEATURE} up to {newest}, not {level}: upgrade its build first"),
            ));
        }
    }
    if validate_only || level == current {
        return Ok(());
    }
    // Apply refuses it if a member joined since the list was read here.
    broker
        .propose_metadata(MetadataCommand::SetVersion { level, members })
        .await
}

/// The newest level `node`'s build reads, asked over its admin service.
async fn readable_by(broker: &Broker, node: NodeId) -> Result<i16, MetadataError> {
    if node == broker.config.node_id {
        return Ok(version::NEWEST);
    }
    let silent = |why: String| {
        MetadataError::new(
            ResponseError::InvalidUpdateVersion,
            format!("node {node} does not answer ({why}): every member must be running to change {FEATURE}"),
        )
    };
    let addr = broker
        .peers
        .get(node)
        .ok_or_else(|| silent("no address known".into()))?;
    let reads = supported_versions(&addr, REQUEST_TIMEOUT, &broker.peer_security, &broker.cluster_id.get())
        .await
        .map_err(silent)?;
    Ok(*reads.end())
}
