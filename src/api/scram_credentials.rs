//! DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51): SCRAM
//! credentials kept in the metadata quorum (`MetadataCommand::ScramCredential`), so every
//! broker can check a SCRAM login. Error codes and messages follow Kafka's controller.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::errors::{
    code, metadata_code, DUPLICATE_RESOURCE, RESOURCE_NOT_FOUND, UNACCEPTABLE_CREDENTIAL,
    UNSUPPORTED_SASL_MECHANISM,
};
use super::{authz, RequestContext};
use crate::broker::Broker;
use crate::metadata::MetadataCommand;
use crate::security::acl::Operation;
use crate::security::scram::{ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS};

type Outcome = (i16, Option<String>);

pub async fn describe(
    broker: &Broker,
    ctx: &RequestContext,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    // Kafka: DESCRIBE on the cluster.
    if !authz::cluster(ctx, Operation::Describe) {
        return DescribeUserScramCredentialsResponse::default()
            .with_error_code(code(ResponseError::ClusterAuthorizationFailed));
    }
    let image = broker.metadata.image();
    let names: Vec<String> = match &req.users {
        Some(users) if !users.is_empty() => users.iter().map(|u| u.name.to_string()).collect(),
        _ => image.scram.keys().cloned().collect(),
    };
    let mut results = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let mut r = DescribeUserScramCredentialsResult::default()
            .with_user(StrBytes::from_string(name.clone()));
        if names[..i].contains(name) || names[i + 1..].contains(name) {
            if names[..i].contains(name) {
                continue;
            }
            r = r
                .with_error_code(DUPLICATE_RESOURCE)
                .with_error_message(Some(StrBytes::from_static_str(
                    "Cannot describe SCRAM credentials for the same user twice in a single request",
                )));
        } else {
            match image.scram.get(name) {
                Some(creds) => {
                    r.credential_infos = creds
                        .iter()
                        .map(|(m, c)| {
                            CredentialInfo::default()
                                .with_mechanism(m.type_id())
                                .with_iterations(c.iterations)
                        })
                        .collect();
                }
                None => {
                    r = r
                        .with_error_code(RESOURCE_NOT_FOUND)
                        .with_error_message(Some(StrBytes::from_static_str(
                            "Attempt to describe a user credential that does not exist",
                        )))
                }
            }
        }
        results.push(r);
    }
    DescribeUserScramCredentialsResponse::default().with_results(results)
}

pub async fn alter(
    broker: &Broker,
    ctx: &RequestContext,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Kafka: ALTER on the cluster, answered for every user of the request.
    if !authz::cluster(ctx, Operation::Alter) {
        let mut users: Vec<String> = req
            .deletions
            .iter()
            .map(|d| d.name.to_string())
            .chain(req.upsertions.iter().map(|u| u.name.to_string()))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        users.retain(|u| seen.insert(u.clone()));
        let denied = code(ResponseError::ClusterAuthorizationFailed);
        let results = users
            .into_iter()
            .map(|u| {
                AlterUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(u))
                    .with_error_code(denied)
            })
            .collect();
        return AlterUserScramCredentialsResponse::default().with_results(results);
    }
    // Every (user, mechanism) at most once per request, as Kafka's controller checks.
    let mut seen: BTreeMap<(String, i8), usize> = BTreeMap::new();
    for (name, m) in req
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism))
        .chain(
            req.upsertions
                .iter()
                .map(|u| (u.name.to_string(), u.mechanism)),
        )
    {
        *seen.entry((name, m)).or_default() += 1;
    }
    let duplicate = |name: &str, m: i8| seen.get(&(name.to_string(), m)).copied().unwrap_or(0) > 1;
    // The first failure of each user is its result; users keep request order.
    let mut results = Results::default();
    let mut commands = Vec::new();
    for d in &req.deletions {
        let user = d.name.to_string();
        let checked = check(&user, d.mechanism, duplicate(&user, d.mechanism)).and_then(|m| {
            if broker.metadata.image().scram_credential(&user, m).is_none() {
                Err((
                    RESOURCE_NOT_FOUND,
                    Some("Attempt to delete a user credential that does not exist".to_string()),
                ))
            } else {
                Ok(m)
            }
        });
        match checked {
            Ok(m) => commands.push((
                user.clone(),
                MetadataCommand::ScramCredential {
                    user: user.clone(),
                    mechanism: m,
                    credential: None,
                },
            )),
            Err(o) => results.record(&user, o),
        }
        results.record(&user, (0, None));
    }
    for u in &req.upsertions {
        let user = u.name.to_string();
        let checked = check(&user, u.mechanism, duplicate(&user, u.mechanism)).and_then(|m| {
            if u.iterations < MIN_ITERATIONS {
                return Err((
                    UNACCEPTABLE_CREDENTIAL,
                    Some("Too few iterations".to_string()),
                ));
            }
            if u.iterations > MAX_ITERATIONS {
                return Err((
                    UNACCEPTABLE_CREDENTIAL,
                    Some("Too many iterations".to_string()),
                ));
            }
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err((
                    UNACCEPTABLE_CREDENTIAL,
                    Some("Salt and salted password must not be empty".to_string()),
                ));
            }
            Ok(m)
        });
        match checked {
            Ok(m) => commands.push((
                user.clone(),
                MetadataCommand::ScramCredential {
                    user: user.clone(),
                    mechanism: m,
                    credential: Some(m.credential(&u.salt, &u.salted_password, u.iterations)),
                },
            )),
            Err(o) => results.record(&user, o),
        }
        results.record(&user, (0, None));
    }
    for (user, cmd) in commands {
        // A user with a refused operation has none of its operations applied.
        if results.failed(&user) {
            continue;
        }
        if let Err(e) = broker.metadata.submit(&cmd).await {
            results.record(&user, (metadata_code(&e), Some(e.to_string())));
        } else {
            tracing::info!(%user, "altered SCRAM credential");
        }
    }
    let results = results
        .order
        .into_iter()
        .map(|user| {
            let (code, message) = results.outcome.get(&user).cloned().unwrap_or((0, None));
            AlterUserScramCredentialsResult::default()
                .with_user(StrBytes::from_string(user))
                .with_error_code(code)
                .with_error_message(message.map(StrBytes::from_string))
        })
        .collect();
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// Each user's first failure (or success), in the order users appear in the request.
#[derive(Default)]
struct Results {
    order: Vec<String>,
    outcome: BTreeMap<String, Outcome>,
}

impl Results {
    fn record(&mut self, user: &str, o: Outcome) {
        if !self.order.iter().any(|u| u == user) {
            self.order.push(user.to_string());
        }
        let slot = self.outcome.entry(user.to_string()).or_insert((0, None));
        if slot.0 == 0 {
            *slot = o;
        }
    }

    fn failed(&self, user: &str) -> bool {
        self.outcome.get(user).is_some_and(|o| o.0 != 0)
    }
}

/// Checks the user name and mechanism of one operation.
fn check(user: &str, mechanism: i8, duplicate: bool) -> Result<ScramMechanism, Outcome> {
    if user.is_empty() {
        return Err((
            UNACCEPTABLE_CREDENTIAL,
            Some("Username must not be empty".to_string()),
        ));
    }
    if duplicate {
        return Err((
            DUPLICATE_RESOURCE,
            Some("A user credential cannot be altered twice in the same request".to_string()),
        ));
    }
    ScramMechanism::from_type(mechanism).ok_or_else(|| {
        (
            UNSUPPORTED_SASL_MECHANISM,
            Some("Unknown SCRAM mechanism".to_string()),
        )
    })
}
