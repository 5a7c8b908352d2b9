//! Connection limits: `max.connections` over all listeners and `max.connections.per.ip`
//! (with `max.connections.per.ip.overrides`). A connection is counted from accept until its
//! task ends; one over a limit is accepted and closed at once, as Kafka closes a connection
//! over the per-IP limit.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::config::BrokerConfig;

/// Why a new connection is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("too many connections from {ip}: max.connections.per.ip is {max}")]
    PerIp { ip: IpAddr, max: usize },
    #[error("too many connections: max.connections is {0}")]
    Total(usize),
}

/// The broker's open connections, counted per IP address. Shared by every listener.
#[derive(Debug)]
pub struct ConnectionQuotas {
    max_total: usize,
    max_per_ip: usize,
    overrides: BTreeMap<IpAddr, usize>,
    /// Open connections by peer address, plus their total; one lock keeps both in step.
    counts: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One counted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct Permit {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
}

impl ConnectionQuotas {
    pub fn new(config: &BrokerConfig) -> Arc<Self> {
        Arc::new(Self {
            max_total: config.max_connections,
            max_per_ip: config.max_connections_per_ip,
            overrides: config.max_connections_per_ip_overrides.clone(),
            counts: Mutex::new((0, HashMap::new())),
        })
    }

    /// Counts a new connection from `ip`, or says which limit it would exceed.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, QuotaError> {
        let mut guard = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        let max_ip = self.overrides.get(&ip).copied().unwrap_or(self.max_per_ip);
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= max_ip {
            return Err(QuotaError::PerIp { ip, max: max_ip });
        }
        if *total >= self.max_total {
            return Err(QuotaError::Total(self.max_total));
        }
        *total += 1;
        per_ip.insert(ip, from_ip + 1);
        Ok(Permit {
            quotas: self.clone(),
            ip,
        })
    }

    /// Open connections in all (for tests and logs).
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut guard = self.quotas.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (total, per_ip) = &mut *guard;
        *total = total.saturating_sub(1);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas(pairs: &[(&str, &str)]) -> Arc<ConnectionQuotas> {
        let c = BrokerConfig::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ("test".to_string(), k.to_string(), v.to_string())),
        )
        .unwrap();
        ConnectionQuotas::new(&c)
    }

    #[test]
    fn per_ip_total_and_overrides() {
        let q = quotas(&[
            ("max.connections", "4"),
            ("max.connections.per.ip", "2"),
            ("max.connections.per.ip.overrides", "10.0.0.9:3"),
        ]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.9".parse().unwrap();
        let a1 = q.acquire(a).unwrap();
        let _a2 = q.acquire(a).unwrap();
        assert!(matches!(
            q.acquire(a),
            Err(QuotaError::PerIp { max: 2, .. })
        ));
        drop(a1);
        let _a3 = q.acquire(a).unwrap();
        let _b1 = q.acquire(b).unwrap();
        let _b2 = q.acquire(b).unwrap();
        assert_eq!(q.acquire(b).unwrap_err(), QuotaError::Total(4));
        assert_eq!(q.open(), 4);
    }
}
