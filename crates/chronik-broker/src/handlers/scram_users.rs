//! DescribeUserScramCredentials and AlterUserScramCredentials: SASL users,
//! kept salted and hashed in the replicated metadata. Changing them takes
//! ALTER on the cluster, listing them DESCRIBE.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::Broker;
use crate::security::scram;
use crate::security::session::Session;
use chronik_state::acl::Operation;
use chronik_state::metadata::MetadataCommand;
use chronik_state::users::{self, CredentialChange, MAX_ITERATIONS, MIN_ITERATIONS, ScramCredential, ScramMechanism};

type Refusal = (ResponseError, String);

pub fn describe(
    broker: &Broker,
    session: &Session,
    request: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    if !broker.allows_cluster(session, Operation::Describe) {
        // The error goes with each user asked about. librdkafka (2.16) frees a
        // response-level error twice when users were named, so only a request
        // for every user gets it at the response level.
        let (error, message) = (
            ResponseError::ClusterAuthorizationFailed.code(),
            Some(str_bytes("not authorized to DESCRIBE the cluster")),
        );
        let results = request
            .users
            .unwrap_or_default()
            .into_iter()
            .map(|u| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(u.name)
                    .with_error_code(error)
                    .with_error_message(message.clone())
            })
            .collect();
        // Asked about everyone, the error can only be the response's own.
        let response = DescribeUserScramCredentialsResponse::default().with_results(results);
        return if response.results.is_empty() {
            response.with_error_code(error).with_error_message(message)
        } else {
            response
        };
    }
    let metadata = broker.state.metadata();
    let described = |user: &str, mechanisms: &BTreeMap<ScramMechanism, ScramCredential>| {
        DescribeUserScramCredentialsResult::default()
            .with_user(str_bytes(user))
            .with_credential_infos(
                mechanisms
                    .iter()
                    .map(|(m, c)| {
                        CredentialInfo::default()
                            .with_mechanism(m.code())
                            .with_iterations(c.iterations)
                    })
                    .collect(),
            )
    };
    let results = match request.users.filter(|u| !u.is_empty()) {
        None => metadata.users.iter().map(|(user, m)| described(user, m)).collect(),
        Some(names) => {
            let mut seen = BTreeMap::new();
            for name in &names {
                *seen.entry(name.name.as_str()).or_insert(0) += 1;
            }
            names
                .iter()
                .map(|name| {
                    let user = name.name.as_str();
                    let error = |e: ResponseError, m: &str| {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(name.name.clone())
                            .with_error_code(e.code())
                            .with_error_message(Some(str_bytes(m)))
                    };
                    if seen[user] > 1 {
                        return error(ResponseError::DuplicateResource, "the user is named more than once");
                    }
                    match metadata.users.mechanisms_of(user) {
                        Some(mechanisms) => described(user, mechanisms),
                        None => error(
                            ResponseError::ResourceNotFound,
                            "Attempt to describe a user credential that does not exist",
                        ),
                    }
                })
                .collect()
        }
    };
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub async fn alter(
    broker: &Broker,
    session: &Session,
    request: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Results are per user, in the order users first appear.
    let mut users: Vec<String> = Vec::new();
    let mut outcomes: BTreeMap<String, Result<Vec<CredentialChange>, Refusal>> = BTreeMap::new();
    let mut touched: BTreeMap<(String, ScramMechanism), usize> = BTreeMap::new();
    let allowed = broker.allows_cluster(session, Operation::Alter);
    let deletions = request
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism, None));
    let upsertions = request
        .upsertions
        .iter()
        .map(|u| (u.name.to_string(), u.mechanism, Some(u)));
    for (user, code, upsertion) in deletions.chain(upsertions) {
        if !outcomes.contains_key(&user) {
            users.push(user.clone());
            outcomes.insert(user.clone(), Ok(Vec::new()));
        }
        let change = if !allowed {
            Err((
                ResponseError::ClusterAuthorizationFailed,
                "not authorized to ALTER the cluster".to_string(),
            ))
        } else {
            change(broker, &user, code, upsertion)
        };
        if let Ok(c) = &change {
            let mechanism = match c {
                CredentialChange::Upsert { mechanism, .. } | CredentialChange::Delete { mechanism, .. } => *mechanism,
            };
            *touched.entry((user.clone(), mechanism)).or_default() += 1;
        }
        let entry = outcomes.get_mut(&user).expect("inserted above");
        match (entry.as_mut(), change) {
            (Ok(changes), Ok(change)) => changes.push(change),
            (Ok(_), Err(refusal)) => *entry = Err(refusal),
            (Err(_), _) => {}
        }
    }
    for ((user, mechanism), count) in touched {
        if count > 1 {
            outcomes.insert(
                user,
                Err((
                    ResponseError::DuplicateResource,
                    format!("{} is changed more than once for the user", mechanism.name()),
                )),
            );
        }
    }
    let changes: Vec<CredentialChange> = outcomes
        .values()
        .filter_map(|o| o.as_ref().ok())
        .flatten()
        .cloned()
        .collect();
    let written = if changes.is_empty() {
        Ok(())
    } else {
        broker.propose_metadata(MetadataCommand::AlterUsers { changes }).await
    };
    let results = users
        .into_iter()
        .map(|user| {
            let result = AlterUserScramCredentialsResult::default().with_user(StrBytes::from_string(user.clone()));
            let refusal = match (&outcomes[&user], &written) {
                (Err((error, message)), _) => Some((*error, message.clone())),
                (Ok(_), Err(e)) => Some((e.error, e.message.clone())),
                (Ok(_), Ok(())) => None,
            };
            match refusal {
                None => result,
                Some((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

fn change(
    broker: &Broker,
    user: &str,
    code: i8,
    upsertion: Option<&kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion>,
) -> Result<CredentialChange, Refusal> {
    let unacceptable = |m: String| (ResponseError::UnacceptableCredential, m);
    users::check_user_name(user).map_err(unacceptable)?;
    let mechanism = ScramMechanism::from_code(code).ok_or_else(|| {
        (
            ResponseError::UnsupportedSaslMechanism,
            format!("SCRAM mechanism {code} is unknown: use 1 (SCRAM-SHA-256) or 2 (SCRAM-SHA-512)"),
        )
    })?;
    let Some(upsertion) = upsertion else {
        if broker.state.metadata().users.credential(user, mechanism).is_none() {
            return Err((
                ResponseError::ResourceNotFound,
                "Attempt to delete a user credential that does not exist".into(),
            ));
        }
        return Ok(CredentialChange::Delete {
            user: user.to_string(),
            mechanism,
        });
    };
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&upsertion.iterations) {
        return Err(unacceptable(format!(
            "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}, got {}",
            upsertion.iterations
        )));
    }
    if upsertion.salt.is_empty() || upsertion.salted_password.is_empty() {
        return Err(unacceptable(
            "the salt and the salted password must not be empty".into(),
        ));
    }
    Ok(CredentialChange::Upsert {
        user: user.to_string(),
        mechanism,
        credential: scram::credential_from_salted(
            mechanism,
            &upsertion.salted_password,
            upsertion.salt.to_vec(),
            upsertion.iterations,
        ),
    })
}
