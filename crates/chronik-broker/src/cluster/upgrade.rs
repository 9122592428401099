//! Moving the cluster to a higher `chronik.version`: only once every member
//! answers that its build reads the level, so that no replica meets an entry
//! it cannot apply. Kafka's UpdateFeatures and `chronik-server cluster
//! version --set` both come here.

use chronik_raft::NodeId;
use chronik_state::metadata::{MetadataCommand, MetadataError};
use chronik_state::version::{self, FEATURE};
use kafka_protocol::ResponseError;
use tonic::Code;

use super::admin_client;
use super::proto::SupportedVersionsRequest;
use crate::Broker;
use chronik_raft::grpc::REQUEST_TIMEOUT;

/// Sets the cluster's level to `level` (or only checks that it could be).
/// Setting the level it already runs at changes nothing.
pub async fn set_version(broker: &Broker, level: i16, validate_only: bool) -> Result<(), MetadataError> {
    let refuse = |m: String| MetadataError::new(ResponseError::InvalidUpdateVersion, m);
    version::check_level(level).map_err(refuse)?;
    let (current, members) = {
        let metadata = broker.state.metadata();
        // Pending members too: one added but not started yet will apply
        // entries written at the new level once it starts.
        (metadata.version_level(), metadata.all_nodes())
    };
    if level < current {
        return Err(refuse(format!(
            "{FEATURE} cannot go down from {current} to {level}: entries of level {current} may be in the logs"
        )));
    }
    for &node in &members {
        let newest = readable_by(broker, node).await.map_err(refuse)?;
        if newest < level {
            return Err(refuse(format!(
                "node {node} reads {FEATURE} up to {newest}, not {level}: upgrade its build first"
            )));
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
async fn readable_by(broker: &Broker, node: NodeId) -> Result<i16, String> {
    if node == broker.config.node_id {
        return Ok(version::NEWEST);
    }
    let silent =
        |why: String| format!("node {node} does not answer ({why}): every member must be running to change {FEATURE}");
    let addr = broker
        .peers
        .get(node)
        .ok_or_else(|| silent("no address known".into()))?;
    let mut client = admin_client(&addr, REQUEST_TIMEOUT, &broker.peer_security)
        .await
        .map_err(silent)?;
    let request = SupportedVersionsRequest {
        cluster_id: broker.cluster_id.get(),
    };
    match client.supported_versions(request).await {
        Ok(answer) => Ok(i16::try_from(answer.into_inner().max_level).unwrap_or(i16::MAX)),
        Err(status) if status.code() == Code::Unimplemented => Err(format!(
            "node {node} runs a build from before {FEATURE}, which reads only level {}: upgrade it first",
            version::FIRST
        )),
        Err(status) => Err(silent(status.message().to_string())),
    }
}
