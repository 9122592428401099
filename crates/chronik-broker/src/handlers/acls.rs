//! CreateAcls, DescribeAcls and DeleteAcls: the cluster's ACLs, kept in the
//! replicated metadata. Changing them takes ALTER on the cluster, reading
//! them DESCRIBE.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest,
    DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::Broker;
use crate::security::session::Session;
use chronik_state::acl::{AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType};
use chronik_state::metadata::{MetadataCommand, MetadataError};

/// The filter code that matches anything.
const ANY: i8 = 1;

fn binding(creation: &AclCreation) -> Result<AclBinding, String> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(creation.resource_type)
            .ok_or_else(|| format!("resource type {} is not one ACLs name", creation.resource_type))?,
        resource_name: creation.resource_name.to_string(),
        pattern: PatternType::from_code(creation.resource_pattern_type).ok_or_else(|| {
            format!(
                "pattern type {} is not LITERAL or PREFIXED",
                creation.resource_pattern_type
            )
        })?,
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation: Operation::from_code(creation.operation)
            .ok_or_else(|| format!("operation {} is not one ACLs name", creation.operation))?,
        permission: Permission::from_code(creation.permission_type)
            .ok_or_else(|| format!("permission {} is not ALLOW or DENY", creation.permission_type))?,
    };
    binding.validate()?;
    Ok(binding)
}

/// Builds a filter from a request's codes; ANY (1) matches everything.
fn filter(
    resource_type: i8,
    name: Option<&StrBytes>,
    pattern: i8,
    principal: Option<&StrBytes>,
    host: Option<&StrBytes>,
    operation: i8,
    permission: i8,
) -> Result<AclFilter, String> {
    let any_or = |code: i8, what: &str, parse: &dyn Fn(i8) -> bool| {
        if code == ANY || parse(code) {
            Ok(())
        } else {
            Err(format!("{what} {code} is not valid in a filter"))
        }
    };
    any_or(resource_type, "resource type", &|c| {
        ResourceType::from_code(c).is_some()
    })?;
    any_or(operation, "operation", &|c| Operation::from_code(c).is_some())?;
    any_or(permission, "permission", &|c| Permission::from_code(c).is_some())?;
    Ok(AclFilter {
        resource_type: ResourceType::from_code(resource_type),
        resource_name: name.map(|n| n.to_string()),
        pattern: PatternFilter::from_code(pattern).ok_or_else(|| format!("pattern type {pattern} is not valid"))?,
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: Operation::from_code(operation),
        permission: Permission::from_code(permission),
    })
}

/// Why one creation or filter was refused.
type Refusal = (ResponseError, String);

fn may_alter(broker: &Broker, session: &Session) -> Result<(), Refusal> {
    if broker.allows_cluster(session, Operation::Alter) {
        Ok(())
    } else {
        Err((
            ResponseError::ClusterAuthorizationFailed,
            "not authorized to ALTER the cluster".into(),
        ))
    }
}

fn invalid(message: String) -> Refusal {
    (ResponseError::InvalidRequest, message)
}

pub async fn create(broker: &Broker, session: &Session, request: CreateAclsRequest) -> CreateAclsResponse {
    let allowed = may_alter(broker, session);
    let parsed: Vec<Result<AclBinding, Refusal>> = request
        .creations
        .iter()
        .map(|c| allowed.clone().and_then(|()| binding(c).map_err(invalid)))
        .collect();
    let valid: Vec<AclBinding> = parsed.iter().filter_map(|b| b.as_ref().ok().cloned()).collect();
    let outcome = if valid.is_empty() {
        Ok(())
    } else {
        broker
            .propose_metadata(MetadataCommand::CreateAcls { bindings: valid })
            .await
    };
    let results = parsed
        .into_iter()
        .map(|parsed| {
            let refusal = match (parsed, &outcome) {
                (Err(refusal), _) => refusal,
                (Ok(_), Err(e)) => (e.error, e.message.clone()),
                (Ok(_), Ok(())) => return AclCreationResult::default(),
            };
            AclCreationResult::default()
                .with_error_code(refusal.0.code())
                .with_error_message(Some(StrBytes::from_string(refusal.1)))
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn describe(broker: &Broker, session: &Session, request: DescribeAclsRequest) -> DescribeAclsResponse {
    let refusal = |error: ResponseError, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if !broker.allows_cluster(session, Operation::Describe) {
        return refusal(
            ResponseError::ClusterAuthorizationFailed,
            "not authorized to DESCRIBE the cluster".into(),
        );
    }
    let filter = match filter(
        request.resource_type_filter,
        request.resource_name_filter.as_ref(),
        request.pattern_type_filter,
        request.principal_filter.as_ref(),
        request.host_filter.as_ref(),
        request.operation,
        request.permission_type,
    ) {
        Ok(filter) => filter,
        Err(message) => return refusal(ResponseError::InvalidRequest, message),
    };
    let metadata = broker.state.metadata();
    let mut resources: BTreeMap<(ResourceType, &str, PatternType), Vec<AclDescription>> = BTreeMap::new();
    for b in metadata.acls.matching(&filter) {
        resources
            .entry((b.resource_type, b.resource_name.as_str(), b.pattern))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(str_bytes(&b.principal))
                    .with_host(str_bytes(&b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type.code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub async fn delete(broker: &Broker, session: &Session, request: DeleteAclsRequest) -> DeleteAclsResponse {
    let allowed = may_alter(broker, session);
    let matched: Vec<Result<Vec<AclBinding>, Refusal>> = {
        let metadata = broker.state.metadata();
        request
            .filters
            .iter()
            .map(|f| {
                allowed.clone()?;
                let filter = filter(
                    f.resource_type_filter,
                    f.resource_name_filter.as_ref(),
                    f.pattern_type_filter,
                    f.principal_filter.as_ref(),
                    f.host_filter.as_ref(),
                    f.operation,
                    f.permission_type,
                )
                .map_err(invalid)?;
                Ok(metadata.acls.matching(&filter).cloned().collect())
            })
            .collect()
    };
    let mut doomed: Vec<AclBinding> = matched.iter().flatten().flatten().cloned().collect();
    doomed.sort();
    doomed.dedup();
    let outcome = if doomed.is_empty() {
        Ok(())
    } else {
        broker
            .propose_metadata(MetadataCommand::DeleteAcls { bindings: doomed })
            .await
    }
    .map_err(|MetadataError { error, message }| (error, message));
    let results = matched
        .into_iter()
        .map(|matched| match (matched, outcome.clone()) {
            (Err((error, message)), _) | (Ok(_), Err((error, message))) => DeleteAclsFilterResult::default()
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message))),
            (Ok(bindings), Ok(())) => DeleteAclsFilterResult::default().with_matching_acls(
                bindings
                    .iter()
                    .map(|b| {
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(b.resource_type.code())
                            .with_resource_name(str_bytes(&b.resource_name))
                            .with_pattern_type(b.pattern.code())
                            .with_principal(str_bytes(&b.principal))
                            .with_host(str_bytes(&b.host))
                            .with_operation(b.operation.code())
                            .with_permission_type(b.permission.code())
                    })
                    .collect(),
            ),
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
