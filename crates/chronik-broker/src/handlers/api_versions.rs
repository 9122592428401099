//! ApiVersions: exactly the APIs and versions `dispatch` implements, and
//! the `chronik.version` feature (KIP-584): the levels this build reads and
//! the level the cluster runs at.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::{ApiVersion, FinalizedFeatureKey, SupportedFeatureKey};

use super::str_bytes;
use crate::Broker;
use crate::apis::SUPPORTED_APIS;
use chronik_state::version::{self, FEATURE};

pub fn handle(broker: &Broker) -> ApiVersionsResponse {
    let (level, epoch) = {
        let metadata = broker.state.metadata();
        // A cluster formed before the version has run at its level since
        // its start: epoch 0 (-1 would mean no finalized features at all).
        let epoch = metadata
            .version
            .map_or(0, |v| i64::try_from(v.epoch).unwrap_or(i64::MAX));
        (metadata.version_level(), epoch)
    };
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_supported_features(vec![
            SupportedFeatureKey::default()
                .with_name(str_bytes(FEATURE))
                .with_min_version(version::FIRST)
                .with_max_version(version::NEWEST),
        ])
        .with_finalized_features_epoch(epoch)
        .with_finalized_features(vec![
            FinalizedFeatureKey::default()
                .with_name(str_bytes(FEATURE))
                .with_min_version_level(level)
                .with_max_version_level(level),
        ])
}

/// The v0-shaped answer to an ApiVersions version newer than Chronik speaks.
pub fn unsupported() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys())
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(key, min, max)| {
            ApiVersion::default()
                .with_api_key(*key as i16)
                .with_min_version(*min)
                .with_max_version(*max)
        })
        .collect()
}
