//! Access control lists, replicated in the metadata, and the decision Kafka's
//! StandardAuthorizer makes from them: a matching DENY wins, then a matching
//! ALLOW (directly or through an operation that implies the one asked for);
//! a resource with no ACL at all falls to `allow.everyone.if.no.acl.found`.
//! Codes are Kafka's, so requests and responses map one to one.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// The one cluster resource's name, as Kafka spells it.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A literal resource name or principal that matches every name.
pub const WILDCARD: &str = "*";
/// The principal matching every user.
pub const ANY_USER: &str = "User:*";
/// Bindings the cluster keeps at most, so that requests cannot grow the
/// metadata without bound.
pub const MAX_ACLS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

impl ResourceType {
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    pub fn from_code(code: i8) -> Option<ResourceType> {
        Some(match code {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }

    pub fn from_code(code: i8) -> Option<PatternType> {
        match code {
            3 => Some(PatternType::Literal),
            4 => Some(PatternType::Prefixed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

impl Operation {
    pub fn code(self) -> i8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
        }
    }

    pub fn from_code(code: i8) -> Option<Operation> {
        Some(match code {
            2 => Operation::All,
            3 => Operation::Read,
            4 => Operation::Write,
            5 => Operation::Create,
            6 => Operation::Delete,
            7 => Operation::Alter,
            8 => Operation::Describe,
            9 => Operation::ClusterAction,
            10 => Operation::DescribeConfigs,
            11 => Operation::AlterConfigs,
            12 => Operation::IdempotentWrite,
            _ => return None,
        })
    }

    /// Operations an ALLOW of this one also grants (Kafka: reading, writing,
    /// deleting or altering a resource implies describing it; altering its
    /// configs implies describing them).
    pub fn implies(self, asked: Operation) -> bool {
        self == asked
            || self == Operation::All
            || (asked == Operation::Describe
                && matches!(
                    self,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ))
            || (asked == Operation::DescribeConfigs && self == Operation::AlterConfigs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }

    pub fn from_code(code: i8) -> Option<Permission> {
        match code {
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            _ => None,
        }
    }
}

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    /// `Type:name`, e.g. `User:alice`, or `User:*`.
    pub principal: String,
    /// An address, or `*` for any.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// Checks what Kafka checks before it stores a binding; the message says
    /// what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_name.is_empty() {
            return Err("the resource name is empty".into());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Err(format!("the cluster resource is named '{CLUSTER_NAME}'"));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => {
                return Err(format!(
                    "principal '{}' is not TYPE:NAME, e.g. User:alice",
                    self.principal
                ));
            }
        }
        if self.host.is_empty() {
            return Err("the host is empty; use '*' for any host".into());
        }
        Ok(())
    }

    /// Whether this binding applies to the resource `name` of its type.
    fn covers(&self, name: &str) -> bool {
        match self.pattern {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(&self.resource_name),
        }
    }
}

/// How a filter treats resource patterns (DescribeAcls and DeleteAcls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    Any,
    /// Bindings that would apply to the filter's resource name.
    Match,
    Exactly(PatternType),
}

impl PatternFilter {
    pub fn from_code(code: i8) -> Option<PatternFilter> {
        match code {
            1 => Some(PatternFilter::Any),
            2 => Some(PatternFilter::Match),
            code => PatternType::from_code(code).map(PatternFilter::Exactly),
        }
    }
}

/// Selects bindings; `None` in a field matches anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, binding: &AclBinding) -> bool {
        let field = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.resource_type.is_none_or(|t| t == binding.resource_type)
            && field(&self.principal, &binding.principal)
            && field(&self.host, &binding.host)
            && self.operation.is_none_or(|o| o == binding.operation)
            && self.permission.is_none_or(|p| p == binding.permission)
            && match (self.pattern, &self.resource_name) {
                (PatternFilter::Any, name) => field(name, &binding.resource_name),
                (PatternFilter::Exactly(pattern), name) => {
                    pattern == binding.pattern && field(name, &binding.resource_name)
                }
                (PatternFilter::Match, None) => true,
                (PatternFilter::Match, Some(name)) => binding.covers(name),
            }
    }
}

/// The outcome of checking one operation on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
    /// No ACL names the resource at all: the broker's default decides.
    NoAclFound,
}

/// Every ACL of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AclSet(BTreeSet<AclBinding>);

impl AclSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &AclBinding> {
        self.0.iter()
    }

    /// Adds bindings; refused as a whole if the set would outgrow `MAX_ACLS`.
    pub fn insert_all(&mut self, bindings: Vec<AclBinding>) -> Result<(), String> {
        let new = bindings.iter().filter(|b| !self.0.contains(b)).count();
        if self.0.len() + new > MAX_ACLS {
            return Err(format!("the cluster holds at most {MAX_ACLS} ACLs"));
        }
        self.0.extend(bindings);
        Ok(())
    }

    pub fn remove(&mut self, binding: &AclBinding) -> bool {
        self.0.remove(binding)
    }

    pub fn matching<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = &'a AclBinding> {
        self.0.iter().filter(move |b| filter.matches(b))
    }

    /// Kafka's StandardAuthorizer decision for `principal` connecting from
    /// `host` doing `operation` on the resource `name` of type `resource`.
    pub fn decide(
        &self,
        principal: &str,
        host: &str,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> Decision {
        let mut any = false;
        let mut allowed = false;
        for binding in self.0.iter().filter(|b| b.resource_type == resource && b.covers(name)) {
            any = true;
            let applies = (binding.principal == principal || binding.principal == ANY_USER)
                && (binding.host == host || binding.host == WILDCARD);
            if !applies {
                continue;
            }
            match binding.permission {
                Permission::Deny if binding.operation == operation || binding.operation == Operation::All => {
                    return Decision::Denied;
                }
                Permission::Allow if binding.operation.implies(operation) => allowed = true,
                _ => {}
            }
        }
        match (allowed, any) {
            (true, _) => Decision::Allowed,
            (false, true) => Decision::Denied,
            (false, false) => Decision::NoAclFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(name: &str, pattern: PatternType, principal: &str, op: Operation, permission: Permission) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.into(),
            pattern,
            principal: principal.into(),
            host: WILDCARD.into(),
            operation: op,
            permission,
        }
    }

    #[test]
    fn deny_wins_and_implied_operations_allow() {
        let mut set = AclSet::default();
        set.insert_all(vec![
            acl(
                "orders",
                PatternType::Literal,
                "User:alice",
                Operation::Write,
                Permission::Allow,
            ),
            acl(
                "ord",
                PatternType::Prefixed,
                "User:*",
                Operation::Read,
                Permission::Allow,
            ),
            acl(
                "orders",
                PatternType::Literal,
                "User:mallory",
                Operation::All,
                Permission::Deny,
            ),
        ])
        .unwrap();
        let decide = |who: &str, op| set.decide(who, "10.0.0.1", op, ResourceType::Topic, "orders");
        assert_eq!(decide("User:alice", Operation::Write), Decision::Allowed);
        assert_eq!(
            decide("User:alice", Operation::Describe),
            Decision::Allowed,
            "WRITE implies DESCRIBE"
        );
        assert_eq!(decide("User:alice", Operation::Delete), Decision::Denied);
        assert_eq!(
            decide("User:bob", Operation::Read),
            Decision::Allowed,
            "prefixed wildcard principal"
        );
        assert_eq!(decide("User:mallory", Operation::Read), Decision::Denied, "deny wins");
        assert_eq!(
            set.decide("User:bob", "h", Operation::Read, ResourceType::Topic, "payments"),
            Decision::NoAclFound
        );
        assert_eq!(
            set.decide("User:bob", "h", Operation::Read, ResourceType::Group, "orders"),
            Decision::NoAclFound,
            "ACLs are per resource type"
        );
    }

    #[test]
    fn hosts_and_literal_wildcards() {
        let mut set = AclSet::default();
        let mut only_there = acl(
            "*",
            PatternType::Literal,
            "User:carol",
            Operation::Read,
            Permission::Allow,
        );
        only_there.host = "10.0.0.9".into();
        set.insert_all(vec![only_there]).unwrap();
        assert_eq!(
            set.decide("User:carol", "10.0.0.9", Operation::Read, ResourceType::Topic, "any"),
            Decision::Allowed
        );
        assert_eq!(
            set.decide("User:carol", "10.0.0.8", Operation::Read, ResourceType::Topic, "any"),
            Decision::Denied
        );
    }

    #[test]
    fn filters_select_as_kafka_does() {
        let mut set = AclSet::default();
        let prefixed = acl(
            "ord",
            PatternType::Prefixed,
            "User:a",
            Operation::Read,
            Permission::Allow,
        );
        let literal = acl(
            "orders",
            PatternType::Literal,
            "User:b",
            Operation::Write,
            Permission::Allow,
        );
        set.insert_all(vec![prefixed.clone(), literal.clone()]).unwrap();
        let any = AclFilter {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        };
        assert_eq!(set.matching(&any).count(), 2);
        let matching = AclFilter {
            resource_name: Some("orders".into()),
            pattern: PatternFilter::Match,
            ..any.clone()
        };
        assert_eq!(set.matching(&matching).count(), 2, "both apply to 'orders'");
        let exact = AclFilter {
            resource_name: Some("ord".into()),
            pattern: PatternFilter::Exactly(PatternType::Prefixed),
            ..any.clone()
        };
        assert_eq!(set.matching(&exact).collect::<Vec<_>>(), vec![&prefixed]);
        let by_principal = AclFilter {
            principal: Some("User:b".into()),
            ..any
        };
        assert_eq!(set.matching(&by_principal).collect::<Vec<_>>(), vec![&literal]);
    }

    #[test]
    fn bindings_are_validated() {
        let good = acl("t", PatternType::Literal, "User:a", Operation::Read, Permission::Allow);
        assert!(good.validate().is_ok());
        for (bad, why) in [
            (
                AclBinding {
                    principal: "alice".into(),
                    ..good.clone()
                },
                "TYPE:NAME",
            ),
            (
                AclBinding {
                    host: String::new(),
                    ..good.clone()
                },
                "host",
            ),
            (
                AclBinding {
                    resource_name: String::new(),
                    ..good.clone()
                },
                "empty",
            ),
            (
                AclBinding {
                    resource_type: ResourceType::Cluster,
                    resource_name: "c".into(),
                    ..good.clone()
                },
                "kafka-cluster",
            ),
        ] {
            assert!(bad.validate().unwrap_err().contains(why), "{bad:?}");
        }
    }
}
