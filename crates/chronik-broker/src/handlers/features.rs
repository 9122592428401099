//! UpdateFeatures: moves the cluster's `chronik.version` up, the one
//! feature Chronik has (ApiVersions reports it). Kafka's `kafka-features.sh
//! upgrade --feature chronik.version=N` sends it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};

use super::str_bytes;
use crate::Broker;
use crate::cluster::upgrade::set_version;
use crate::security::session::Session;
use chronik_state::acl::Operation;
use chronik_state::metadata::MetadataError;
use chronik_state::version::FEATURE;

pub async fn update(
    broker: &Broker,
    session: &Session,
    request: UpdateFeaturesRequest,
    version: i16,
) -> UpdateFeaturesResponse {
    if !broker.allows_cluster(session, Operation::Alter) {
        return UpdateFeaturesResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("not authorized to ALTER the cluster")));
    }
    let mut results = Vec::new();
    for (i, update) in request.feature_updates.iter().enumerate() {
        let name = update.feature.as_str();
        let result = if request.feature_updates[..i].iter().any(|u| u.feature == update.feature) {
            Err(MetadataError::new(
                ResponseError::InvalidRequest,
                format!("feature {name} is named twice"),
            ))
        } else if name != FEATURE {
            Err(MetadataError::new(
                ResponseError::InvalidUpdateVersion,
                format!("unknown feature {name}; the one feature is {FEATURE}"),
            ))
        } else {
            set_version(broker, update.max_version_level, request.validate_only).await
        };
        results.push((name.to_string(), result));
    }
    let first_error = results.iter().find_map(|(_, r)| r.as_ref().err());
    let response = UpdateFeaturesResponse::default();
    // Version 2 answers with one error for the request, earlier versions
    // with one per feature.
    let response = match first_error {
        Some(e) if version >= 2 => response
            .with_error_code(e.error.code())
            .with_error_message(Some(str_bytes(&e.message))),
        _ => response,
    };
    response.with_results(
        results
            .into_iter()
            .map(|(name, result)| {
                let (code, message) = match result {
                    Ok(()) => (0, None),
                    Err(e) => (e.error.code(), Some(str_bytes(&e.message))),
                };
                UpdatableFeatureResult::default()
                    .with_feature(str_bytes(&name))
                    .with_error_code(code)
                    .with_error_message(message)
            })
            .collect(),
    )
}
