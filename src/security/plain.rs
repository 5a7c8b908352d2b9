//! SASL/PLAIN (RFC 4616) and its user list, read from Kafka's JAAS form:
//! `org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="pw" …;`.
//!
//! Depends on nothing else in the crate.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

/// Why a PLAIN login failed; sent to the client with SASL_AUTHENTICATION_FAILED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error(
        "Invalid SASL/PLAIN response: expected 3 tokens separated by NUL (authzid, user, password)"
    )]
    Malformed,
    #[error("Authentication failed: username not specified")]
    NoUser,
    #[error("Authentication failed: password not specified")]
    NoPassword,
    #[error("Authentication failed: Invalid username or password")]
    Invalid,
    #[error("Authentication failed: Client requested an authorization id that is different from username")]
    AuthzId,
}

/// Checks one PLAIN message (`authzid NUL user NUL password`) against `users`
/// (user → password); returns the user name.
pub fn authenticate(
    message: &[u8],
    users: &BTreeMap<String, String>,
) -> Result<String, PlainError> {
    let text = std::str::from_utf8(message).map_err(|_| PlainError::Malformed)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    if user.is_empty() {
        return Err(PlainError::NoUser);
    }
    if password.is_empty() {
        return Err(PlainError::NoPassword);
    }
    if !authzid.is_empty() && authzid != user {
        return Err(PlainError::AuthzId);
    }
    match users.get(user) {
        Some(expected) if bool::from(expected.as_bytes().ct_eq(password.as_bytes())) => {
            Ok(user.to_string())
        }
        _ => Err(PlainError::Invalid),
    }
}

/// The `user_<name>="<password>"` options of JAAS text (a `sasl.jaas.config` value or a
/// whole JAAS file; other options such as `username`/`password`, which a broker uses as a
/// client, are ignored). Values are quoted with `"`, and `\"` and `\\` escape inside them.
pub fn jaas_users(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut users = BTreeMap::new();
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        // An option is name=value; scan for names starting with user_.
        if bytes[i].is_alphanumeric() || bytes[i] == '_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_alphanumeric() || "_.-".contains(bytes[i])) {
                i += 1;
            }
            let name: String = bytes[start..i].iter().collect();
            let mut j = i;
            while j < bytes.len() && bytes[j].is_whitespace() {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == '=' {
                j += 1;
                while j < bytes.len() && bytes[j].is_whitespace() {
                    j += 1;
                }
                let value = if j < bytes.len() && bytes[j] == '"' {
                    j += 1;
                    let mut v = String::new();
                    loop {
                        match bytes.get(j) {
                            None => return Err(format!("unterminated quoted value of {name}")),
                            Some('"') => {
                                j += 1;
                                break;
                            }
                            Some('\\') => {
                                if let Some(c) = bytes.get(j + 1) {
                                    v.push(*c);
                                }
                                j += 2;
                            }
                            Some(c) => {
                                v.push(*c);
                                j += 1;
                            }
                        }
                    }
                    v
                } else {
                    let s = j;
                    while j < bytes.len() && !bytes[j].is_whitespace() && bytes[j] != ';' {
                        j += 1;
                    }
                    bytes[s..j].iter().collect()
                };
                if let Some(user) = name.strip_prefix("user_") {
                    if !user.is_empty() {
                        users.insert(user.to_string(), value);
                    }
                }
                i = j;
            }
            continue;
        }
        i += 1;
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_options_and_logins() {
        let users = jaas_users(
            r#"KafkaServer {
                 org.apache.kafka.common.security.plain.PlainLoginModule required
                 username="admin" password="admin-secret"
                 user_admin="admin-secret"
                 user_alice = "a\"lice pw";
               };"#,
        )
        .unwrap();
        assert_eq!(users.len(), 2, "{users:?}");
        assert_eq!(users["alice"], "a\"lice pw");
        assert_eq!(
            authenticate(b"\0alice\0a\"lice pw", &users).unwrap(),
            "alice"
        );
        assert_eq!(
            authenticate(b"alice\0alice\0a\"lice pw", &users).unwrap(),
            "alice"
        );
        assert_eq!(
            authenticate(b"\0alice\0nope", &users),
            Err(PlainError::Invalid)
        );
        assert_eq!(authenticate(b"\0bob\0x", &users), Err(PlainError::Invalid));
        assert_eq!(
            authenticate(b"admin\0alice\0x", &users),
            Err(PlainError::AuthzId)
        );
        assert_eq!(authenticate(b"\0\0x", &users), Err(PlainError::NoUser));
        assert_eq!(authenticate(b"alice", &users), Err(PlainError::Malformed));
        assert_eq!(
            authenticate(b"\0a\0b\0c", &users),
            Err(PlainError::Malformed)
        );
        assert!(jaas_users("user_x=\"open").is_err());
    }
}
