//! Access control lists as Kafka defines them: a binding ties a resource pattern (type, name,
//! LITERAL or PREFIXED) to an entry (principal, host, operation, ALLOW or DENY); a filter
//! selects bindings for DescribeAcls and DeleteAcls (ANY and MATCH patterns, ANY operation
//! and permission, null names).
//!
//! Kafka's wire codes of each enum are here too (`code`/`from_code`), so the API handlers
//! convert at the edge and the metadata image stores plain enums. Depends on nothing else in
//! the crate but [`super::Principal`] (to validate principals).

use serde::{Deserialize, Serialize};

/// The name of the one cluster resource, as Kafka spells it.
pub const CLUSTER_NAME: &str = "kafka-cluster";

/// The wildcard resource name of a LITERAL pattern (any resource of the type).
pub const WILDCARD_RESOURCE: &str = "*";

/// The wildcard principal: any `User` principal.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// The wildcard host: any client address.
pub const WILDCARD_HOST: &str = "*";

/// Kafka's `ResourceType` (codes 2-5; 0 UNKNOWN and 1 ANY appear only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

/// Kafka's code of "any resource type" in a filter.
pub const ANY_CODE: i8 = 1;

impl ResourceType {
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            _ => return None,
        })
    }
}

/// Kafka's `PatternType` of a binding: LITERAL (3) or PREFIXED (4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
}

/// The pattern type of a filter: ANY (1) matches bindings of any pattern type by exact name;
/// MATCH (2) matches every binding that would apply to the named resource (literal name,
/// wildcard, prefixes of it); LITERAL and PREFIXED match that type exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PatternFilter {
    Any,
    Match,
    Literal,
    Prefixed,
}

impl PatternFilter {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            1 => PatternFilter::Any,
            2 => PatternFilter::Match,
            3 => PatternFilter::Literal,
            4 => PatternFilter::Prefixed,
            _ => return None,
        })
    }
}

/// Kafka's `AclOperation` (codes 2-14; 0 UNKNOWN and 1 ANY appear only in filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    CreateTokens,
    DescribeTokens,
}

impl Operation {
    /// Every operation, in code order.
    pub const EVERY: [Operation; 13] = [
        Operation::All,
        Operation::Read,
        Operation::Write,
        Operation::Create,
        Operation::Delete,
        Operation::Alter,
        Operation::Describe,
        Operation::ClusterAction,
        Operation::DescribeConfigs,
        Operation::AlterConfigs,
        Operation::IdempotentWrite,
        Operation::CreateTokens,
        Operation::DescribeTokens,
    ];

    pub fn code(self) -> i8 {
        // `EVERY` is in code order from 2.
        Self::EVERY.iter().position(|o| *o == self).unwrap_or(0) as i8 + 2
    }

    pub fn from_code(code: i8) -> Option<Self> {
        let i = usize::try_from(code.checked_sub(2)?).ok()?;
        Self::EVERY.get(i).copied()
    }

    /// Whether an ALLOW of `self` also allows `requested`: the operation itself, ALL, and
    /// Kafka's implications (READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS
    /// implies DESCRIBE_CONFIGS).
    pub fn allows(self, requested: Operation) -> bool {
        use Operation::*;
        self == requested
            || self == All
            || (requested == Describe && matches!(self, Read | Write | Delete | Alter))
            || (requested == DescribeConfigs && self == AlterConfigs)
    }

    /// Whether a DENY of `self` denies `requested`: the operation itself or ALL (a DENY of
    /// READ does not deny DESCRIBE, as in Kafka).
    pub fn denies(self, requested: Operation) -> bool {
        self == requested || self == Operation::All
    }
}

/// Kafka's `AclPermissionType`: DENY (2) or ALLOW (3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => Permission::Deny,
            3 => Permission::Allow,
            _ => return None,
        })
    }
}

/// One ACL: who (principal, host) may or may not (permission) do what (operation) on which
/// resources (type, name, pattern type).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `Type:name`, or `User:*` for every user.
    pub principal: String,
    /// A client IP address as text, or `*` for any.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a binding or filter is refused (Kafka answers INVALID_REQUEST with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("invalid resource type code {0}")]
    ResourceType(i8),
    #[error("invalid pattern type code {0}: ACLs are LITERAL (3) or PREFIXED (4)")]
    PatternType(i8),
    #[error("invalid operation code {0}")]
    Operation(i8),
    #[error("invalid permission type code {0}: ACLs are DENY (2) or ALLOW (3)")]
    Permission(i8),
    #[error("resource name should not be empty")]
    EmptyName,
    #[error("the only valid name for the CLUSTER resource is {CLUSTER_NAME}")]
    ClusterName,
    #[error("could not parse principal `{0}`: expected Type:name, e.g. User:alice")]
    Principal(String),
    #[error("the host of an ACL must not be empty (use `*` for any host)")]
    EmptyHost,
}

impl AclBinding {
    /// Builds a binding from the codes of a CreateAcls creation, checking what Kafka checks.
    pub fn from_codes(
        resource_type: i8,
        resource_name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<Self, AclError> {
        let rt =
            ResourceType::from_code(resource_type).ok_or(AclError::ResourceType(resource_type))?;
        let pt = match pattern_type {
            3 => PatternType::Literal,
            4 => PatternType::Prefixed,
            c => return Err(AclError::PatternType(c)),
        };
        let op = Operation::from_code(operation).ok_or(AclError::Operation(operation))?;
        let perm = Permission::from_code(permission).ok_or(AclError::Permission(permission))?;
        if resource_name.is_empty() {
            return Err(AclError::EmptyName);
        }
        if rt == ResourceType::Cluster && resource_name != CLUSTER_NAME {
            return Err(AclError::ClusterName);
        }
        if super::Principal::parse(principal).is_none() {
            return Err(AclError::Principal(principal.to_string()));
        }
        if host.is_empty() {
            return Err(AclError::EmptyHost);
        }
        Ok(Self {
            resource_type: rt,
            resource_name: resource_name.to_string(),
            pattern_type: pt,
            principal: principal.to_string(),
            host: host.to_string(),
            operation: op,
            permission: perm,
        })
    }

    /// Whether this binding's pattern covers the resource `(rt, name)`: the same literal
    /// name, the literal wildcard `*`, or a prefix of the name.
    pub fn covers(&self, rt: ResourceType, name: &str) -> bool {
        self.resource_type == rt
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD_RESOURCE
                }
                PatternType::Prefixed => name.starts_with(&self.resource_name),
            }
    }
}

/// A selection of bindings (DescribeAcls, DeleteAcls). `None` fields match anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Builds a filter from the codes of a DescribeAcls request or DeleteAcls filter. ANY (1)
    /// is accepted for the resource type, pattern type, operation and permission; UNKNOWN (0)
    /// and codes Kafka does not define are refused, as Kafka does.
    pub fn from_codes(
        resource_type: i8,
        resource_name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<Self, AclError> {
        let rt = match resource_type {
            ANY_CODE => None,
            c => Some(ResourceType::from_code(c).ok_or(AclError::ResourceType(c))?),
        };
        let pattern =
            PatternFilter::from_code(pattern_type).ok_or(AclError::PatternType(pattern_type))?;
        let op = match operation {
            ANY_CODE => None,
            c => Some(Operation::from_code(c).ok_or(AclError::Operation(c))?),
        };
        let perm = match permission {
            ANY_CODE => None,
            c => Some(Permission::from_code(c).ok_or(AclError::Permission(c))?),
        };
        Ok(Self {
            resource_type: rt,
            resource_name: resource_name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation: op,
            permission: perm,
        })
    }

    /// A filter that matches every binding.
    pub fn any() -> Self {
        Self {
            resource_type: None,
            resource_name: None,
            pattern: PatternFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    /// Whether `b` is selected (Kafka's `AclBindingFilter.matches`).
    pub fn matches(&self, b: &AclBinding) -> bool {
        self.resource_type.is_none_or(|t| t == b.resource_type)
            && self.matches_pattern(b)
            && self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && self.operation.is_none_or(|o| o == b.operation)
            && self.permission.is_none_or(|p| p == b.permission)
    }

    fn matches_pattern(&self, b: &AclBinding) -> bool {
        let exact = match self.pattern {
            PatternFilter::Any | PatternFilter::Match => None,
            PatternFilter::Literal => Some(PatternType::Literal),
            PatternFilter::Prefixed => Some(PatternType::Prefixed),
        };
        if exact.is_some_and(|t| t != b.pattern_type) {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern != PatternFilter::Match {
            return *name == b.resource_name;
        }
        match b.pattern_type {
            PatternType::Literal => {
                *name == b.resource_name || b.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(&b.resource_name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(rt: ResourceType, name: &str, pt: PatternType) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn codes_round_trip() {
        for op in Operation::EVERY {
            assert_eq!(Operation::from_code(op.code()), Some(op));
        }
        assert_eq!(Operation::Read.code(), 3);
        assert_eq!(Operation::IdempotentWrite.code(), 12);
        assert_eq!(Operation::from_code(1), None);
        assert_eq!(Operation::from_code(15), None);
        assert_eq!(Operation::from_code(i8::MIN), None);
        for t in [
            ResourceType::Topic,
            ResourceType::Group,
            ResourceType::Cluster,
            ResourceType::TransactionalId,
        ] {
            assert_eq!(ResourceType::from_code(t.code()), Some(t));
        }
    }

    #[test]
    fn creations_are_validated_like_kafka() {
        let ok = AclBinding::from_codes(2, "t", 3, "User:a", "*", 4, 3).unwrap();
        assert_eq!(ok.operation, Operation::Write);
        // (resource type, name, pattern type, principal, host, operation, permission, error)
        type Case<'a> = (i8, &'a str, i8, &'a str, &'a str, i8, i8, AclError);
        let cases: &[Case<'_>] = &[
            (1, "t", 3, "User:a", "*", 4, 3, AclError::ResourceType(1)),
            (2, "t", 2, "User:a", "*", 4, 3, AclError::PatternType(2)),
            (2, "t", 1, "User:a", "*", 4, 3, AclError::PatternType(1)),
            (2, "t", 3, "User:a", "*", 1, 3, AclError::Operation(1)),
            (2, "t", 3, "User:a", "*", 4, 1, AclError::Permission(1)),
            (2, "", 3, "User:a", "*", 4, 3, AclError::EmptyName),
            (4, "c", 3, "User:a", "*", 4, 3, AclError::ClusterName),
            (
                2,
                "t",
                3,
                "alice",
                "*",
                4,
                3,
                AclError::Principal("alice".into()),
            ),
            (2, "t", 3, "User:a", "", 4, 3, AclError::EmptyHost),
        ];
        for (rt, name, pt, p, h, op, perm, err) in cases {
            assert_eq!(
                AclBinding::from_codes(*rt, name, *pt, p, h, *op, *perm).as_ref(),
                Err(err),
                "{rt} {name} {pt} {p} {h} {op} {perm}"
            );
        }
    }

    #[test]
    fn filters_select_like_kafka() {
        use PatternType::*;
        use ResourceType::*;
        let lit = binding(Topic, "orders", Literal);
        let star = binding(Topic, "*", Literal);
        let pre = binding(Topic, "ord", Prefixed);
        let group = binding(Group, "orders", Literal);
        let all = [&lit, &star, &pre, &group];
        let select = |f: &AclFilter| -> Vec<&AclBinding> {
            all.iter().copied().filter(|b| f.matches(b)).collect()
        };
        let f = |rt: i8, name: Option<&str>, pt: i8| {
            AclFilter::from_codes(rt, name, pt, None, None, 1, 1).unwrap()
        };
        assert_eq!(select(&AclFilter::any()).len(), 4);
        assert_eq!(select(&f(2, None, 1)), vec![&lit, &star, &pre]);
        // ANY with a name: exact names of any pattern type.
        assert_eq!(select(&f(1, Some("orders"), 1)), vec![&lit, &group]);
        // MATCH: everything that applies to topic "orders".
        assert_eq!(select(&f(2, Some("orders"), 2)), vec![&lit, &star, &pre]);
        assert_eq!(select(&f(2, Some("other"), 2)), vec![&star]);
        assert_eq!(select(&f(2, Some("ord"), 4)), vec![&pre]);
        assert_eq!(select(&f(2, Some("orders"), 4)), Vec::<&AclBinding>::new());
        assert_eq!(select(&f(1, None, 3)), vec![&lit, &star, &group]);
        let by_principal = AclFilter::from_codes(1, None, 1, Some("User:bob"), None, 1, 1).unwrap();
        assert!(select(&by_principal).is_empty());
        let by_op = AclFilter::from_codes(1, None, 1, None, Some("*"), 3, 3).unwrap();
        assert_eq!(select(&by_op).len(), 4);
        assert!(AclFilter::from_codes(0, None, 1, None, None, 1, 1).is_err());
        assert!(AclFilter::from_codes(1, None, 0, None, None, 1, 1).is_err());
        assert!(AclFilter::from_codes(1, None, 1, None, None, 0, 1).is_err());
    }
}
