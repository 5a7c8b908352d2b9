//! What a broker's settings leave open, for the one WARN line it logs at startup: Kafka
//! listeners that authenticate nobody, no authorizer, and (in a cluster) an inter-broker
//! gRPC port without the cluster secret or mutual TLS. Secured settings give an empty list
//! and no line.
//!
//! May depend on: `config`.

use crate::config::{BrokerConfig, ClientAuth, SecurityProtocol};

/// One short phrase per open door, in a fixed order (listeners, authorizer, gRPC port).
pub fn open_doors(config: &BrokerConfig) -> Vec<String> {
    let mut open = Vec::new();
    for l in &config.listeners {
        let authenticated = match l.protocol {
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl => true,
            SecurityProtocol::Ssl => {
                config.ssl_for(&l.name).client_auth == Some(ClientAuth::Required)
            }
            SecurityProtocol::Plaintext => false,
        };
        if !authenticated {
            let protocol = match l.protocol {
                SecurityProtocol::Plaintext => "PLAINTEXT",
                _ => "SSL without ssl.client.auth=required",
            };
            open.push(format!(
                "Kafka listener {} ({}, {protocol}) authenticates no client",
                l.name, l.bind
            ));
        }
    }
    if !config.authorizer.enabled {
        open.push(
            "no authorizer.class.name: every client may do everything (create, delete, \
             alter configs)"
                .to_string(),
        );
    }
    if !config.quorum_voters.is_empty()
        && config.inter_broker_secret.is_none()
        && !config.inter_broker_tls
    {
        open.push(format!(
            "inter-broker gRPC port {} is unauthenticated (no inter.broker.secret, \
             security.inter.broker.protocol=PLAINTEXT): whoever reaches it can act as any broker{}",
            config.raft_listener,
            if config.raft_listener_narrowed {
                "; bound to the Kafka listener's host instead of the wildcard address"
            } else {
                ""
            }
        ));
    }
    open
}

/// Logs [`open_doors`] as one WARN line (nothing when the list is empty).
pub fn warn_open_doors(config: &BrokerConfig) {
    let open = open_doors(config);
    if !open.is_empty() {
        tracing::warn!(
            open = %open.join("; "),
            "SECURITY IS OFF for part of this broker: see `open` (README: Security)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> BrokerConfig {
        BrokerConfig::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ("test".to_string(), k.to_string(), v.to_string())),
        )
        .unwrap()
    }

    #[test]
    fn the_laptop_default_names_every_open_door() {
        let open = open_doors(&config(&[("controller.quorum.voters", "1@127.0.0.1:9093")]));
        assert_eq!(open.len(), 3, "{open:?}");
        assert!(open[0].contains("PLAINTEXT"), "{open:?}");
        assert!(open[1].contains("authorizer"), "{open:?}");
        assert!(open[2].contains("inter-broker gRPC port"), "{open:?}");
        // A single broker has no gRPC port to mention.
        assert_eq!(open_doors(&BrokerConfig::default()).len(), 2);
    }

    #[test]
    fn secured_settings_leave_nothing_open() {
        let open = open_doors(&config(&[
            ("listeners", "SASL_SSL://127.0.0.1:9092"),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.truststore.location", "/ca.pem"),
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            ),
            ("controller.quorum.voters", "1@127.0.0.1:9093"),
            ("security.inter.broker.protocol", "SSL"),
        ]));
        assert!(open.is_empty(), "{open:?}");
    }
}
