//! Kafka's authorization decision for a session: super-users may do
//! anything; otherwise the cluster's ACLs decide, and a resource without
//! any ACL falls to `allow.everyone.if.no.acl.found`.

use std::collections::BTreeSet;

use chronik_state::acl::{ANY_USER, AclSet, Decision, Operation, Permission, ResourceType, WILDCARD};

use super::session::Session;

#[derive(Debug, Clone)]
pub struct Authorizer {
    super_users: BTreeSet<String>,
    allow_everyone_if_no_acl_found: bool,
}

impl Authorizer {
    pub fn new(super_users: Vec<String>, allow_everyone_if_no_acl_found: bool) -> Authorizer {
        Authorizer {
            super_users: super_users.into_iter().collect(),
            allow_everyone_if_no_acl_found,
        }
    }

    pub fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.contains(principal)
    }

    pub fn allows(
        &self,
        acls: &AclSet,
        session: &Session,
        operation: Operation,
        resource: ResourceType,
        name: &str,
    ) -> bool {
        if self.is_super_user(&session.principal) {
            return true;
        }
        match acls.decide(&session.principal, &session.host, operation, resource, name) {
            Decision::Allowed => true,
            Decision::Denied => false,
            Decision::NoAclFound => self.allow_everyone_if_no_acl_found,
        }
    }

    /// Whether `session` may do `operation` on some resource of the type
    /// (Kafka's authorizeByResourceType): an ALLOW that names it, or no ACL
    /// of the type at all under allow-everyone.
    pub fn allows_some(&self, acls: &AclSet, session: &Session, operation: Operation, resource: ResourceType) -> bool {
        if self.is_super_user(&session.principal) {
            return true;
        }
        let mut of_type = acls.iter().filter(|b| b.resource_type == resource).peekable();
        if of_type.peek().is_none() {
            return self.allow_everyone_if_no_acl_found;
        }
        of_type.any(|b| {
            b.permission == Permission::Allow
                && (b.principal == session.principal || b.principal == ANY_USER)
                && (b.host == session.host || b.host == WILDCARD)
                && b.operation.implies(operation)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronik_state::acl::{AclBinding, PatternType};

    #[test]
    fn super_users_bypass_and_the_default_covers_unnamed_resources() {
        let mut acls = AclSet::default();
        acls.insert_all(vec![AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: "locked".into(),
            pattern: PatternType::Literal,
            principal: "User:*".into(),
            host: "*".into(),
            operation: Operation::All,
            permission: Permission::Deny,
        }])
        .unwrap();
        let session = |principal: &str| Session {
            listener: "SASL_SSL".into(),
            principal: principal.into(),
            host: "127.0.0.1".into(),
        };
        let closed = Authorizer::new(vec!["User:admin".into()], false);
        let open = Authorizer::new(Vec::new(), true);
        let write = |a: &Authorizer, who: &str, topic: &str| {
            a.allows(&acls, &session(who), Operation::Write, ResourceType::Topic, topic)
        };
        assert!(write(&closed, "User:admin", "locked"), "super-users bypass even a deny");
        assert!(!write(&closed, "User:bob", "locked"));
        assert!(!write(&closed, "User:bob", "free"), "no ACL and no allow-everyone");
        assert!(write(&open, "User:bob", "free"), "no ACL with allow-everyone");
        assert!(!write(&open, "User:bob", "locked"), "an ACL on the resource decides");
    }
}
