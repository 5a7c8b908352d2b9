//! Kafka principals (`User:alice`), as Kafka's `KafkaPrincipal` names them.

use std::fmt;

/// The identity a request runs as: a principal type (`User` for every authenticated
/// client) and a name. A connection that has not authenticated is `User:ANONYMOUS`, as in
/// Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// Kafka's principal type; `User` for clients.
    pub kind: String,
    /// The user name (from SASL, or a certificate's subject).
    pub name: String,
}

impl Principal {
    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: "User".to_string(),
            name: name.into(),
        }
    }

    /// `User:ANONYMOUS`, the principal of a connection that did not authenticate.
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// Parses `Type:name` (the form ACL requests and `super.users` use). `None` when there
    /// is no `:` or either side is empty.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Self {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl Default for Principal {
    fn default() -> Self {
        Self::anonymous()
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_kafka_form() {
        let p = Principal::parse("User:alice").expect("valid");
        assert_eq!(p, Principal::user("alice"));
        assert_eq!(p.to_string(), "User:alice");
        assert_eq!(Principal::parse("alice"), None);
        assert_eq!(Principal::parse("User:"), None);
        assert_eq!(Principal::default().to_string(), "User:ANONYMOUS");
    }
}
