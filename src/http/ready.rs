//! Readiness (`/ready`): whether this broker is a working member of its cluster.
//!
//! A cluster member is ready when all of these hold (each failing one is a reason):
//! - the metadata holds its registration of this process (its incarnation);
//! - the controller has not fenced it;
//! - it has heard from the controller within `broker.session.timeout.ms` and applied the
//!   metadata the controller had (its self-lease, see `lease`);
//! - a metadata quorum leader is known (see `Broker::known_controller`: a leader cut off
//!   from the majority does not count).
//!
//! A broker without `controller.quorum.voters` is ready while it serves.

use serde::Serialize;

use crate::broker::Broker;

/// The answer of `/ready`.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub node_id: i32,
    /// Why not, one sentence each (empty when ready).
    pub reasons: Vec<String>,
}

/// Checks this broker's readiness now.
pub fn check(broker: &Broker) -> Readiness {
    let node_id = broker.config.node_id;
    let mut reasons = Vec::new();
    if broker.metadata.quorum().is_some() {
        let image = broker.metadata.image();
        match image.brokers.get(&node_id) {
            Some(b) if b.incarnation != broker.incarnation => reasons.push(
                "not registered: the metadata still holds this broker's previous process".into(),
            ),
            Some(b) if b.fenced => {
                reasons.push("fenced: the controller counts this broker as down".into())
            }
            Some(_) => {}
            None => reasons.push("not registered with the controller yet".into()),
        }
        if broker.known_controller().is_none() {
            reasons.push(
                "no quorum: no metadata quorum leader (controller) is known to this broker".into(),
            );
        }
        if !broker.self_lease.is_valid() {
            reasons.push(format!(
                "no heartbeat answered by the controller within broker.session.timeout.ms \
                 ({} ms)",
                broker.config.session_timeout_ms
            ));
        }
    }
    Readiness {
        ready: reasons.is_empty(),
        node_id,
        reasons,
    }
}
