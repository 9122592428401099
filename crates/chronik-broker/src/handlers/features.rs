//! UpdateFeatures: moves the cluster's `chronik.version` up, the one
//! feature Chronik has (ApiVersions reports it). Kafka's `kafka-features.sh
//! upgrade --feature chronik.version=N` sends it. As in Kafka, a request is
//! applied whole or not at all, and answers REQUEST_TIMED_OUT once its
//! `timeout_ms` has passed.

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::update_features_request::FeatureUpdateKey;
use kafka_protocol::messages::update_features_response::UpdatableFeatureResult;
use kafka_protocol::messages::{UpdateFeaturesRequest, UpdateFeaturesResponse};

use super::str_bytes;
use crate::Broker;
use crate::cluster::upgrade::set_version;
use crate::security::session::Session;
use chronik_state::acl::Operation;
use chronik_state::metadata::MetadataError;
use chronik_state::version::FEATURE;

/// Kafka's upgrade types (v1 on): upgrade, safe and unsafe downgrade.
const UPGRADE: i8 = 1;
const UNSAFE_DOWNGRADE: i8 = 3;

/// When the request gives up; `None` (a `timeout_ms` of 0 or less) leaves
/// only the broker's own bounds on asking the members and on the write.
fn deadline(timeout_ms: i32) -> Option<tokio::time::Instant> {
    let timeout_ms = u64::try_from(timeout_ms).ok().filter(|ms| *ms > 0)?;
    Some(tokio::time::Instant::now() + Duration::from_millis(timeout_ms))
}

fn timed_out(timeout_ms: i32) -> MetadataError {
    MetadataError::new(
        ResponseError::RequestTimedOut,
        format!(
            "not finished within timeout_ms ({timeout_ms} ms); a raise already proposed may still take \
             effect, which ApiVersions then reports"
        ),
    )
}

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
    let updates = &request.feature_updates;
    let mut results: Vec<Result<(), MetadataError>> = updates
        .iter()
        .enumerate()
        .map(|(i, update)| check(update, &updates[..i], version))
        .collect();
    // Every member must read the level before anything is applied; only
    // `chronik.version` passes `check`, and only once.
    let all_valid = results.iter().all(Result::is_ok);
    let deadline = deadline(request.timeout_ms);
    for (update, result) in updates.iter().zip(results.iter_mut()) {
        if result.is_ok() {
            let validate_only = request.validate_only || !all_valid;
            let set = set_version(broker, update.max_version_level, validate_only);
            *result = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, set)
                    .await
                    .unwrap_or_else(|_| Err(timed_out(request.timeout_ms))),
                None => set.await,
            };
            if result.is_ok() && !all_valid {
                *result = Err(MetadataError::new(
                    ResponseError::FeatureUpdateFailed,
                    "not applied: another update of the request was refused",
                ));
            }
        }
    }
    let first_error = results.iter().find_map(|r| r.as_ref().err());
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
        updates
            .iter()
            .zip(results)
            .map(|(update, result)| {
                let (code, message) = match result {
                    Ok(()) => (0, None),
                    Err(e) => (e.error.code(), Some(str_bytes(&e.message))),
                };
                UpdatableFeatureResult::default()
                    .with_feature(update.feature.clone())
                    .with_error_code(code)
                    .with_error_message(message)
            })
            .collect(),
    )
}

/// What a request may ask of one feature, before the cluster is asked.
fn check(update: &FeatureUpdateKey, earlier: &[FeatureUpdateKey], version: i16) -> Result<(), MetadataError> {
    let name = update.feature.as_str();
    if earlier.iter().any(|u| u.feature == update.feature) {
        return Err(MetadataError::new(
            ResponseError::InvalidRequest,
            format!("feature {name} is named twice"),
        ));
    }
    if name != FEATURE {
        return Err(MetadataError::new(
            ResponseError::InvalidUpdateVersion,
            format!("unknown feature {name}; the one feature is {FEATURE}"),
        ));
    }
    let downgrade = if version == 0 {
        update.allow_downgrade
    } else if (UPGRADE..=UNSAFE_DOWNGRADE).contains(&update.upgrade_type) {
        update.upgrade_type != UPGRADE
    } else {
        return Err(MetadataError::new(
            ResponseError::InvalidRequest,
            format!("unknown upgrade type {}", update.upgrade_type),
        ));
    };
    if downgrade {
        return Err(MetadataError::new(
            ResponseError::InvalidUpdateVersion,
            format!("{FEATURE} cannot go down: entries of its current level may be in the logs"),
        ));
    }
    Ok(())
}
