//! The authorizer: decides whether a principal connected from a host may perform an
//! operation on a resource, given the cluster's ACLs — the rules of Kafka's
//! `StandardAuthorizer`:
//!
//! - no authorizer configured (`authorizer.class.name` empty, the default): everything is
//!   allowed and ACLs are not consulted;
//! - a principal in `super.users` may do everything;
//! - otherwise the ACLs whose pattern covers the resource (same literal name, the literal `*`,
//!   or a prefix) and whose principal (`User:*` for any user) and host (`*` for any) match are
//!   consulted: a matching DENY of the operation (or ALL) denies, whatever allows; else a
//!   matching ALLOW of the operation, ALL, or an operation implying it allows;
//! - when no ACL covers the resource at all, `allow.everyone.if.no.acl.found` decides.
//!
//! Pure: no I/O, no clock; the caller passes the ACLs of its metadata image. Depends on
//! [`super::acl`] and [`super::Principal`] only.

use super::acl::{AclBinding, Operation, Permission, ResourceType, WILDCARD_HOST};
use super::acl::{PatternType, WILDCARD_PRINCIPAL, WILDCARD_RESOURCE};
use super::Principal;

/// The class names `authorizer.class.name` accepts; both select raftka's authorizer, which
/// follows Kafka's `StandardAuthorizer` (ACLs in the metadata quorum).
pub const ACCEPTED_CLASS_NAMES: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// The authorizer's settings (`authorizer.class.name`, `super.users`,
/// `allow.everyone.if.no.acl.found`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizerSettings {
    /// An authorizer is configured; without one nothing is checked.
    pub enabled: bool,
    /// Principals allowed everything (`super.users`, `User:a;User:b`).
    pub super_users: Vec<Principal>,
    /// What happens when no ACL covers a resource (Kafka's default: deny).
    pub allow_everyone_if_no_acl_found: bool,
}

/// Who asks: the principal and the client's IP address as text (`127.0.0.1`; empty when
/// unknown, which only `*` host rules match).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub principal: &'a Principal,
    pub host: &'a str,
}

impl AuthorizerSettings {
    /// Parses `super.users` (semicolon separated `Type:name` entries, as in Kafka).
    pub fn parse_super_users(s: &str) -> Result<Vec<Principal>, String> {
        s.split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| Principal::parse(p).ok_or_else(|| format!("`{p}` is not Type:name")))
            .collect()
    }

    fn is_super(&self, who: &Subject<'_>) -> bool {
        self.super_users.iter().any(|s| s == who.principal)
    }

    /// Whether `who` may perform `op` on the resource `(rt, name)`.
    pub fn authorize(
        &self,
        acls: &[AclBinding],
        who: &Subject<'_>,
        op: Operation,
        rt: ResourceType,
        name: &str,
    ) -> bool {
        if !self.enabled || self.is_super(who) {
            return true;
        }
        let mut covered = false;
        let mut allowed = false;
        for b in acls.iter().filter(|b| b.covers(rt, name)) {
            covered = true;
            if !applies_to(b, who) {
                continue;
            }
            match b.permission {
                Permission::Deny if b.operation.denies(op) => return false,
                Permission::Allow if b.operation.allows(op) => allowed = true,
                _ => {}
            }
        }
        allowed || (!covered && self.allow_everyone_if_no_acl_found)
    }

    /// Whether `who` may perform `op` on at least one resource of type `rt` (Kafka's
    /// `authorizeByResourceType`, used by InitProducerId without a transactional id: WRITE on
    /// any topic). An ALLOW counts unless a DENY of the same principal covers everything it
    /// allows (a DENY of the literal `*`, the same literal name, or a prefix of its name).
    /// With no ACL of the type at all, `allow.everyone.if.no.acl.found` decides.
    pub fn authorize_any(
        &self,
        acls: &[AclBinding],
        who: &Subject<'_>,
        op: Operation,
        rt: ResourceType,
    ) -> bool {
        if !self.enabled || self.is_super(who) {
            return true;
        }
        let of_type: Vec<&AclBinding> = acls.iter().filter(|b| b.resource_type == rt).collect();
        if of_type.is_empty() {
            return self.allow_everyone_if_no_acl_found;
        }
        let mine = |b: &&&AclBinding| applies_to(b, who);
        let denies: Vec<&AclBinding> = of_type
            .iter()
            .filter(mine)
            .filter(|b| b.permission == Permission::Deny && b.operation.denies(op))
            .copied()
            .collect();
        let denied = |allow: &AclBinding| {
            denies.iter().any(|d| match d.pattern_type {
                PatternType::Literal => {
                    d.resource_name == WILDCARD_RESOURCE
                        || (allow.pattern_type == PatternType::Literal
                            && d.resource_name == allow.resource_name)
                }
                PatternType::Prefixed => allow.resource_name.starts_with(&d.resource_name),
            })
        };
        of_type
            .iter()
            .filter(mine)
            .filter(|b| b.permission == Permission::Allow && b.operation.allows(op))
            .any(|b| !denied(b))
    }

    /// The operations of `supported` that `who` may perform on `(rt, name)`, as KIP-430's
    /// bit set (bit n = operation code n).
    pub fn authorized_operations(
        &self,
        acls: &[AclBinding],
        who: &Subject<'_>,
        rt: ResourceType,
        name: &str,
        supported: &[Operation],
    ) -> i32 {
        supported
            .iter()
            .filter(|op| self.authorize(acls, who, **op, rt, name))
            .fold(0, |set, op| set | (1 << op.code()))
    }
}

/// Whether binding `b` names `who` (exactly or as `User:*`) and `who`'s host (or `*`).
fn applies_to(b: &AclBinding, who: &Subject<'_>) -> bool {
    let principal = (b.principal == WILDCARD_PRINCIPAL && who.principal.kind == "User")
        || principal_eq(&b.principal, who.principal);
    principal && (b.host == WILDCARD_HOST || b.host == who.host)
}

fn principal_eq(text: &str, p: &Principal) -> bool {
    text.split_once(':')
        .is_some_and(|(kind, name)| kind == p.kind && name == p.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::acl::PatternType::{Literal, Prefixed};
    use crate::security::acl::Permission::{Allow, Deny};
    use crate::security::acl::ResourceType::{Cluster, Group, Topic};
    use Operation::*;

    fn acl(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        principal: &str,
        host: &str,
        op: Operation,
        perm: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: host.into(),
            operation: op,
            permission: perm,
        }
    }

    fn on() -> AuthorizerSettings {
        AuthorizerSettings {
            enabled: true,
            super_users: vec![Principal::user("admin")],
            allow_everyone_if_no_acl_found: false,
        }
    }

    /// One decision to check: (ACLs, principal, host, operation, resource, name, expected).
    type Case<'a> = (
        &'a [AclBinding],
        &'a str,
        &'a str,
        Operation,
        ResourceType,
        &'a str,
        bool,
    );

    fn check(settings: &AuthorizerSettings, cases: &[Case<'_>]) {
        for (i, (acls, principal, host, op, rt, name, want)) in cases.iter().enumerate() {
            let p = Principal::parse(principal).unwrap();
            let who = Subject {
                principal: &p,
                host,
            };
            assert_eq!(
                settings.authorize(acls, &who, *op, *rt, name),
                *want,
                "case {i}: {principal}@{host} {op:?} {rt:?}:{name} with {acls:?}"
            );
        }
    }

    #[test]
    fn decisions_follow_kafkas_rules() {
        let write_t = [acl(Topic, "t", Literal, "User:alice", "*", Write, Allow)];
        let prefixed = [acl(
            Topic,
            "pay-",
            Prefixed,
            "User:alice",
            "*",
            Write,
            Allow,
        )];
        let deny_beats = [
            acl(Topic, "pay-", Prefixed, "User:alice", "*", All, Allow),
            acl(Topic, "pay-eu", Literal, "User:alice", "*", Write, Deny),
        ];
        let wildcard = [acl(Topic, "*", Literal, "User:*", "*", Read, Allow)];
        let by_host = [
            acl(Topic, "t", Literal, "User:*", "10.0.0.1", Write, Allow),
            acl(Topic, "t", Literal, "User:*", "10.0.0.2", Write, Deny),
        ];
        let implied = [
            acl(Topic, "t", Literal, "User:alice", "*", Read, Allow),
            acl(Topic, "t", Literal, "User:alice", "*", AlterConfigs, Allow),
            acl(Group, "g", Literal, "User:alice", "*", Delete, Allow),
        ];
        let deny_read = [
            acl(Topic, "t", Literal, "User:alice", "*", All, Allow),
            acl(Topic, "t", Literal, "User:alice", "*", Read, Deny),
        ];
        let cluster = [acl(
            Cluster,
            "kafka-cluster",
            Literal,
            "User:ops",
            "*",
            Alter,
            Allow,
        )];
        check(
            &on(),
            &[
                // no ACLs: denied (allow.everyone.if.no.acl.found=false), super users pass
                (&[], "User:alice", "1.2.3.4", Write, Topic, "t", false),
                (&[], "User:admin", "1.2.3.4", Write, Topic, "t", true),
                (
                    &deny_beats,
                    "User:admin",
                    "1.2.3.4",
                    Write,
                    Topic,
                    "pay-eu",
                    true,
                ),
                // literal
                (&write_t, "User:alice", "1.2.3.4", Write, Topic, "t", true),
                (&write_t, "User:alice", "1.2.3.4", Write, Topic, "t2", false),
                (&write_t, "User:bob", "1.2.3.4", Write, Topic, "t", false),
                (&write_t, "User:alice", "1.2.3.4", Read, Topic, "t", false),
                (&write_t, "User:alice", "1.2.3.4", Write, Group, "t", false),
                // prefixed
                (&prefixed, "User:alice", "h", Write, Topic, "pay-eu", true),
                (&prefixed, "User:alice", "h", Write, Topic, "pay", false),
                (&prefixed, "User:alice", "h", Write, Topic, "xpay-eu", false),
                // deny wins over allow (ALL allows; the literal deny covers only pay-eu)
                (
                    &deny_beats,
                    "User:alice",
                    "h",
                    Write,
                    Topic,
                    "pay-eu",
                    false,
                ),
                (&deny_beats, "User:alice", "h", Read, Topic, "pay-eu", true),
                (&deny_beats, "User:alice", "h", Write, Topic, "pay-us", true),
                // wildcards of resource and principal
                (&wildcard, "User:anyone", "h", Read, Topic, "x", true),
                (&wildcard, "User:anyone", "h", Write, Topic, "x", false),
                (&wildcard, "Group:x", "h", Read, Topic, "x", false),
                // hosts
                (
                    &by_host,
                    "User:ANONYMOUS",
                    "10.0.0.1",
                    Write,
                    Topic,
                    "t",
                    true,
                ),
                (
                    &by_host,
                    "User:ANONYMOUS",
                    "10.0.0.2",
                    Write,
                    Topic,
                    "t",
                    false,
                ),
                (
                    &by_host,
                    "User:ANONYMOUS",
                    "10.0.0.3",
                    Write,
                    Topic,
                    "t",
                    false,
                ),
                // implications: READ → DESCRIBE, ALTER_CONFIGS → DESCRIBE_CONFIGS, DELETE →
                // DESCRIBE; nothing implies WRITE or READ
                (&implied, "User:alice", "h", Describe, Topic, "t", true),
                (
                    &implied,
                    "User:alice",
                    "h",
                    DescribeConfigs,
                    Topic,
                    "t",
                    true,
                ),
                (&implied, "User:alice", "h", Describe, Group, "g", true),
                (&implied, "User:alice", "h", Write, Topic, "t", false),
                (&implied, "User:alice", "h", Read, Group, "g", false),
                // a deny of READ does not deny DESCRIBE (only the operation itself or ALL)
                (&deny_read, "User:alice", "h", Read, Topic, "t", false),
                (&deny_read, "User:alice", "h", Describe, Topic, "t", true),
                // the cluster resource
                (
                    &cluster,
                    "User:ops",
                    "h",
                    Alter,
                    Cluster,
                    "kafka-cluster",
                    true,
                ),
                (
                    &cluster,
                    "User:ops",
                    "h",
                    Describe,
                    Cluster,
                    "kafka-cluster",
                    true,
                ),
                (
                    &cluster,
                    "User:ops",
                    "h",
                    Create,
                    Cluster,
                    "kafka-cluster",
                    false,
                ),
            ],
        );
    }

    #[test]
    fn allow_everyone_applies_only_to_resources_without_acls() {
        let s = AuthorizerSettings {
            allow_everyone_if_no_acl_found: true,
            ..on()
        };
        let acls = [acl(Topic, "t", Literal, "User:bob", "*", Write, Allow)];
        check(
            &s,
            &[
                (&acls, "User:alice", "h", Write, Topic, "other", true),
                (&acls, "User:alice", "h", Write, Topic, "t", false),
                (&acls, "User:bob", "h", Write, Topic, "t", true),
            ],
        );
    }

    #[test]
    fn without_an_authorizer_everything_is_allowed() {
        let s = AuthorizerSettings::default();
        let deny = [acl(Topic, "*", Literal, "User:*", "*", All, Deny)];
        check(&s, &[(&deny, "User:alice", "h", Write, Topic, "t", true)]);
    }

    #[test]
    fn any_resource_of_a_type() {
        let p = Principal::user("alice");
        let who = Subject {
            principal: &p,
            host: "h",
        };
        let s = on();
        let allow = acl(Topic, "a-", Prefixed, "User:alice", "*", Write, Allow);
        assert!(s.authorize_any(std::slice::from_ref(&allow), &who, Write, Topic));
        assert!(!s.authorize_any(std::slice::from_ref(&allow), &who, Read, Topic));
        let deny_all = acl(Topic, "*", Literal, "User:alice", "*", Write, Deny);
        assert!(!s.authorize_any(&[allow.clone(), deny_all], &who, Write, Topic));
        let deny_prefix = acl(Topic, "a", Prefixed, "User:*", "*", All, Deny);
        assert!(!s.authorize_any(&[allow.clone(), deny_prefix], &who, Write, Topic));
        let other_allow = acl(Topic, "b", Literal, "User:alice", "*", Write, Allow);
        let deny_a = acl(Topic, "a-", Prefixed, "User:alice", "*", Write, Deny);
        assert!(s.authorize_any(&[allow, deny_a, other_allow], &who, Write, Topic));
        assert!(!s.authorize_any(&[], &who, Write, Topic));
        let everyone = AuthorizerSettings {
            allow_everyone_if_no_acl_found: true,
            ..on()
        };
        assert!(everyone.authorize_any(&[], &who, Write, Topic));
    }

    #[test]
    fn authorized_operations_are_a_bit_set_of_allowed_operations() {
        let p = Principal::user("alice");
        let who = Subject {
            principal: &p,
            host: "h",
        };
        let acls = [acl(Topic, "t", Literal, "User:alice", "*", Read, Allow)];
        let set = on().authorized_operations(&acls, &who, Topic, "t", &[Read, Write, Describe]);
        assert_eq!(set, (1 << 3) | (1 << 8));
    }

    #[test]
    fn super_users_parse_like_kafka() {
        assert_eq!(
            AuthorizerSettings::parse_super_users("User:a; User:b;").unwrap(),
            vec![Principal::user("a"), Principal::user("b")]
        );
        assert!(AuthorizerSettings::parse_super_users("alice").is_err());
        assert!(AuthorizerSettings::parse_super_users("")
            .unwrap()
            .is_empty());
    }
}
