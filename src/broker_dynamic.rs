//! This broker's dynamic settings that are not topic defaults
//! (`metadata::config_ops::DYNAMIC_BROKER_SETTINGS`): the value set for this broker through
//! IncrementalAlterConfigs/AlterConfigs, else the cluster-wide dynamic default (the broker
//! resource ""), else the static setting — read from the applied metadata image each time the
//! setting is used, so a change needs no restart.
//!
//! May depend on: `broker` (its config and metadata image).

use crate::broker::Broker;

/// The dynamic value of `name` on this broker (its own, then the cluster-wide default).
pub fn value(broker: &Broker, name: &str) -> Option<String> {
    let image = broker.metadata.image();
    let mine = broker.config.node_id.to_string();
    let found = [mine.as_str(), ""]
        .into_iter()
        .find_map(|key| image.broker_configs.get(key).and_then(|m| m.get(name)))
        .cloned();
    found
}

/// A duration setting in ms: the dynamic value when one is set and valid, else `fallback`
/// (the static value).
pub fn millis(broker: &Broker, name: &str, fallback: u64) -> u64 {
    value(broker, name)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|v| *v > 0)
        .unwrap_or(fallback)
}
