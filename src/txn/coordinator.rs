//! The coordinator's state machine over the `__transaction_state` partitions this broker
//! leads (see the `txn` module documentation for placement).
//!
//! Every change of a transactional id's state is first appended to its partition as the
//! partition's leader and awaited until the ISR has it (acks=all, `write_timeout`); only then
//! does the in-memory copy change and the client get its answer. While a change is being
//! written the id is *pending* and every other request for it answers CONCURRENT_TRANSACTIONS
//! (Kafka's `pendingState`). So a new coordinator that replays the log (the `loader`) knows
//! every state a client was ever told about.
//!
//! Ending a transaction: EndTxn persists PrepareCommit/PrepareAbort and answers; a task then
//! sends the markers to the leaders of every partition of the transaction (retrying until each
//! is written, following leader moves) and persists CompleteCommit/CompleteAbort. The same
//! task runs for a transaction aborted by its timeout (the reaper) or by a producer
//! re-initialising (InitProducerId), both with the producer epoch bumped so the old producer
//! is fenced, and for a Prepare* state found when a partition is loaded.
//!
//! The coordinator epoch of the markers is the leader epoch of the `__transaction_state`
//! partition.
//!
//! May depend on: `txn::state`, `txn::markers`, `log`, `writer`, `metadata`, `lease`,
//! `clock`, `offsets_topic` (the batch builder).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::host::TxnHost;
use super::markers::{write_local, MarkerOutcome, MarkerTransport, MarkerWrite, VerifyTxn};
use super::state::{encode_key, encode_value, epoch_exhausted, TxnMeta, TxnState};
use super::{partition_for, TxnError, TxnSettings, TXN_TOPIC};
use crate::lease::SelfLease;
use crate::log::{LogStore, TxnMarker};
use crate::offsets_topic::{build_batch, OFFSETS_TOPIC};
use crate::writer::{PartitionWriter, WriteError};

/// A transactional id as this coordinator holds it.
#[derive(Debug, Clone)]
struct Entry {
    meta: TxnMeta,
    /// The state is in the log (false only for a new id whose first write is under way).
    persisted: bool,
    /// A state change is being written.
    pending: bool,
}

/// One `__transaction_state` partition this broker leads.
struct Slot {
    /// The leader epoch of this leadership (the markers' coordinator epoch).
    epoch: i32,
    loaded: bool,
    txns: HashMap<String, Entry>,
}

/// What a state-machine step decided under the lock.
enum Step<R> {
    /// Answer without writing.
    Done(R),
    /// Persist this state, then answer.
    Write(TxnMeta, R),
}

/// One transaction as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
    pub start_ms: i64,
}

/// What InitProducerId decided.
enum Init {
    Ready(i64, i16),
    /// An ongoing transaction is being aborted first (this state was written).
    Aborting,
}

/// The coordinator's clock (transaction start and update times): the wall clock.
pub(crate) use crate::clock::unix_ms as now_ms;

/// See the module documentation.
pub struct TxnCoordinator {
    node_id: i32,
    settings: TxnSettings,
    logs: Arc<LogStore>,
    writer: Arc<PartitionWriter>,
    lease: Arc<SelfLease>,
    slots: Mutex<HashMap<i32, Slot>>,
    host: OnceLock<Weak<dyn TxnHost>>,
    transport: OnceLock<Arc<dyn MarkerTransport>>,
    /// Bumped on every state change: InitProducerId waits on it for an abort to complete.
    changed: watch::Sender<u64>,
}

impl TxnCoordinator {
    pub fn new(
        node_id: i32,
        settings: TxnSettings,
        logs: Arc<LogStore>,
        writer: Arc<PartitionWriter>,
        lease: Arc<SelfLease>,
    ) -> Arc<Self> {
        Arc::new(Self {
            node_id,
            settings,
            logs,
            writer,
            lease,
            slots: Mutex::new(HashMap::new()),
            host: OnceLock::new(),
            transport: OnceLock::new(),
            changed: watch::channel(0).0,
        })
    }

    /// Binds the broker (set once, after it is built) and starts the timeout reaper.
    pub fn start(
        self: &Arc<Self>,
        host: Weak<dyn TxnHost>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let _ = self.host.set(host);
        let me = Arc::downgrade(self);
        let interval = self.settings.abort_interval;
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(interval) => {}
                    }
                    let Some(c) = me.upgrade() else { return };
                    c.abort_timed_out().await;
                    c.expire_ids(super::coordinator::now_ms()).await;
                }
            });
        }
    }

    /// How markers reach other brokers (cluster mode).
    pub fn set_transport(&self, t: Arc<dyn MarkerTransport>) {
        let _ = self.transport.set(t);
    }

    pub(crate) fn logs(&self) -> &Arc<LogStore> {
        &self.logs
    }

    fn host(&self) -> Result<Arc<dyn TxnHost>, TxnError> {
        self.host
            .get()
            .and_then(|w| w.upgrade())
            .ok_or(TxnError::NotAvailable)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<i32, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The `__transaction_state` partition of `id` (NotAvailable before the topic exists).
    pub fn partition_of(&self, id: &str) -> Result<i32, TxnError> {
        // Its record key holds the length as an i16 (as Kafka's key does).
        if id.len() > i16::MAX as usize {
            return Err(TxnError::IdTooLong);
        }
        let host = self.host()?;
        let image = host.image();
        let n = image
            .topics
            .get(TXN_TOPIC)
            .map(|t| t.partitions.len())
            .filter(|n| *n > 0)
            .ok_or(TxnError::NotAvailable)?;
        Ok(partition_for(id, n))
    }

    /// Whether the current metadata image still names this broker the leader of
    /// `__transaction_state` partition `p` in leader epoch `epoch` (cluster mode). The loader
    /// drops a slot only when the replica manager gets to the image that moved the partition
    /// away; a broker resuming after a pause may renew its lease before that, and must not
    /// answer from state a new coordinator may already have changed.
    fn still_leads(&self, p: i32, epoch: i32) -> bool {
        if !self.settings.cluster {
            return true;
        }
        let Ok(host) = self.host() else {
            return false;
        };
        host.image()
            .topics
            .get(TXN_TOPIC)
            .and_then(|t| t.partitions.iter().find(|m| m.index == p))
            .is_some_and(|m| m.leader == self.node_id && m.leader_epoch == epoch)
    }

    /// Runs `step` on the state of `id` under the lock; persists what it decides to write.
    /// Returns its answer and the state written, if any.
    async fn transition<R>(
        &self,
        id: &str,
        step: impl FnOnce(Option<&TxnMeta>) -> Result<Step<R>, TxnError>,
    ) -> Result<(R, Option<(TxnMeta, i32, i32)>), TxnError> {
        let p = self.partition_of(id)?;
        if self.settings.cluster && !self.lease.is_valid() {
            return Err(TxnError::NotCoordinator);
        }
        let (epoch, meta, answer) = {
            let mut slots = self.lock();
            let slot = slots.get_mut(&p).ok_or(TxnError::NotCoordinator)?;
            if !self.still_leads(p, slot.epoch) {
                return Err(TxnError::NotCoordinator);
            }
            if !slot.loaded {
                return Err(TxnError::LoadInProgress);
            }
            let entry = slot.txns.get(id);
            if entry.is_some_and(|e| e.pending) {
                return Err(TxnError::Concurrent);
            }
            match step(entry.filter(|e| e.persisted).map(|e| &e.meta))? {
                Step::Done(r) => return Ok((r, None)),
                Step::Write(meta, r) => {
                    match slot.txns.get_mut(id) {
                        Some(e) => e.pending = true,
                        None => {
                            slot.txns.insert(
                                id.to_string(),
                                Entry {
                                    meta: meta.clone(),
                                    persisted: false,
                                    pending: true,
                                },
                            );
                        }
                    }
                    (slot.epoch, meta, r)
                }
            }
        };
        let written = self.persist(p, epoch, id, &meta).await;
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(&p).filter(|s| s.epoch == epoch) else {
            return Err(TxnError::NotCoordinator);
        };
        match written {
            Ok(()) => {
                slot.txns.insert(
                    id.to_string(),
                    Entry {
                        meta: meta.clone(),
                        persisted: true,
                        pending: false,
                    },
                );
                drop(slots);
                self.notify();
                Ok((answer, Some((meta, p, epoch))))
            }
            Err(e) => {
                if slot.txns.get(id).is_some_and(|e| !e.persisted) {
                    slot.txns.remove(id);
                } else if let Some(e) = slot.txns.get_mut(id) {
                    e.pending = false;
                }
                drop(slots);
                self.notify();
                Err(e)
            }
        }
    }

    /// Forgets the ids without a transaction whose state has not changed for
    /// `transactional.id.expiration.ms` before `now` (a tombstone in their partition, as
    /// Kafka's `removeExpiredTransactionalIds`); a producer using such an id again starts anew.
    pub async fn expire_ids(&self, now: i64) {
        let expiration = self.settings.id_expiration_ms;
        let expired: Vec<(i32, String)> = self
            .lock()
            .iter()
            .filter(|(_, s)| s.loaded)
            .flat_map(|(p, s)| s.txns.iter().map(move |(id, e)| (*p, id, e)))
            .filter(|(_, _, e)| {
                e.persisted
                    && !e.pending
                    && matches!(
                        e.meta.state,
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                    )
                    && now.saturating_sub(e.meta.update_ms) > expiration
            })
            .map(|(p, id, _)| (p, id.clone()))
            .collect();
        for (p, id) in expired {
            let epoch = {
                let mut slots = self.lock();
                let Some(slot) = slots.get_mut(&p) else {
                    continue;
                };
                let Some(e) = slot.txns.get_mut(&id).filter(|e| !e.pending) else {
                    continue;
                };
                e.pending = true;
                slot.epoch
            };
            let written = self.persist_record(p, epoch, &id, None).await;
            let mut slots = self.lock();
            if let Some(slot) = slots.get_mut(&p).filter(|s| s.epoch == epoch) {
                match written {
                    Ok(()) => {
                        slot.txns.remove(&id);
                        tracing::info!(transactional_id = %id, "transactional id expired");
                    }
                    Err(_) => {
                        if let Some(e) = slot.txns.get_mut(&id) {
                            e.pending = false;
                        }
                    }
                }
            }
            drop(slots);
            self.notify();
        }
    }

    /// Appends `meta` for `id` to partition `p` as its leader in `epoch` and waits for the ISR.
    /// Refused (COORDINATOR_NOT_AVAILABLE, as Kafka maps NOT_ENOUGH_REPLICAS of its state log)
    /// while the partition's ISR is smaller than the topic's `min.insync.replicas`.
    async fn persist(&self, p: i32, epoch: i32, id: &str, meta: &TxnMeta) -> Result<(), TxnError> {
        self.persist_record(p, epoch, id, Some(meta)).await
    }

    /// [`Self::persist`] of `meta`, or of a tombstone for `id` (`None`).
    async fn persist_record(
        &self,
        p: i32,
        epoch: i32,
        id: &str,
        meta: Option<&TxnMeta>,
    ) -> Result<(), TxnError> {
        let image = self.host()?.image();
        if let Some(t) = image.topics.get(TXN_TOPIC) {
            let min_isr = t
                .configs
                .get("min.insync.replicas")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1);
            let isr = usize::try_from(p)
                .ok()
                .and_then(|i| t.partitions.get(i))
                .map_or(0, |m| m.isr.len());
            if isr < min_isr {
                return Err(TxnError::NotAvailable);
            }
        }
        let batch = build_batch(&[(encode_key(id), meta.map(encode_value))], now_ms());
        let appended = self
            .writer
            .append(TXN_TOPIC, p, epoch, &[batch])
            .map_err(write_error)?;
        self.writer.make_durable().await.map_err(write_error)?;
        self.writer
            .wait_committed(
                &appended.commit,
                Instant::now() + self.settings.write_timeout,
            )
            .await
            .map_err(write_error)
    }

    /// InitProducerId with a transactional id: a producer id and epoch for `id`, fencing
    /// every earlier producer of it. An ongoing transaction is aborted first (with the epoch
    /// bumped); the call waits for that abort, up to `wait`, then answers
    /// CONCURRENT_TRANSACTIONS if it is still completing (the client retries).
    pub async fn init_producer_id(
        self: &Arc<Self>,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocate: &(dyn Fn() -> Result<i64, String> + Sync),
        wait: Duration,
    ) -> Result<(i64, i16), TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.settings.max_timeout_ms {
            return Err(TxnError::InvalidTimeout(self.settings.max_timeout_ms));
        }
        let deadline = Instant::now() + wait;
        let mut expected = expected;
        loop {
            let mut changed = self.changed.subscribe();
            match self.try_init(id, timeout_ms, expected, allocate).await {
                Err(TxnError::Concurrent) if Instant::now() < deadline => {
                    // The producer was checked before the abort began, which bumped the
                    // epoch it named: the retries after it must not be fenced by that.
                    expected = None;
                    let _ = tokio::time::timeout_at(deadline, changed.changed()).await;
                }
                other => return other,
            }
        }
    }

    async fn try_init(
        self: &Arc<Self>,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocate: &(dyn Fn() -> Result<i64, String> + Sync),
    ) -> Result<(i64, i16), TxnError> {
        let now = now_ms();
        let (init, written) = self
            .transition(id, |cur| {
                let Some(m) = cur else {
                    let pid = allocate().map_err(TxnError::Storage)?;
                    let meta = TxnMeta {
                        producer_id: pid,
                        producer_epoch: 0,
                        last_producer_id: -1,
                        last_producer_epoch: -1,
                        timeout_ms,
                        state: TxnState::Empty,
                        partitions: BTreeSet::new(),
                        start_ms: -1,
                        update_ms: now,
                    };
                    return Ok(Step::Write(meta, Init::Ready(pid, 0)));
                };
                let mut retry = false;
                if let Some((pid, epoch)) = expected {
                    // KIP-360: a producer re-initialising names its current id and epoch. A
                    // retry whose answer was lost names the previous ones; so does a producer
                    // whose transaction the coordinator aborted (timeout, KIP-588).
                    let previous = (pid == m.producer_id || pid == m.last_producer_id)
                        && epoch == m.last_producer_epoch;
                    if pid == m.producer_id && epoch == m.producer_epoch {
                    } else if previous && m.state == TxnState::Empty {
                        retry = true;
                    } else if !(previous && m.state == TxnState::CompleteAbort) {
                        return Err(TxnError::ProducerFenced);
                    }
                }
                match m.state {
                    TxnState::PrepareCommit | TxnState::PrepareAbort => Err(TxnError::Concurrent),
                    _ if retry => Ok(Step::Done(Init::Ready(m.producer_id, m.producer_epoch))),
                    TxnState::Ongoing => {
                        // Abort the unfinished transaction with a bumped epoch (fences the old
                        // producer's writes), then bump again for the new producer.
                        Ok(Step::Write(fence_and_abort(m, now), Init::Aborting))
                    }
                    _ => {
                        let mut next = m.clone();
                        if epoch_exhausted(m.producer_epoch) {
                            next.producer_id = allocate().map_err(TxnError::Storage)?;
                            next.producer_epoch = 0;
                        } else {
                            next.producer_epoch = m.producer_epoch + 1;
                        }
                        next.last_producer_id = m.producer_id;
                        next.last_producer_epoch = m.producer_epoch;
                        next.timeout_ms = timeout_ms;
                        next.state = TxnState::Empty;
                        next.partitions.clear();
                        next.start_ms = -1;
                        next.update_ms = now;
                        let answer = Init::Ready(next.producer_id, next.producer_epoch);
                        Ok(Step::Write(next, answer))
                    }
                }
            })
            .await?;
        match init {
            Init::Ready(pid, epoch) => Ok((pid, epoch)),
            Init::Aborting => {
                if let Some((meta, p, epoch)) = written {
                    self.spawn_completion(id.to_string(), meta, p, epoch);
                }
                Err(TxnError::Concurrent)
            }
        }
    }

    /// Checks the producer of a request against the state of `id`.
    fn check_producer(m: Option<&TxnMeta>, pid: i64, epoch: i16) -> Result<&TxnMeta, TxnError> {
        let m = m.ok_or(TxnError::InvalidProducerIdMapping)?;
        if m.producer_id != pid {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(m)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: adds `parts` to the producer's transaction,
    /// starting one if none is ongoing.
    pub async fn add_partitions(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        parts: &[(String, i32)],
    ) -> Result<(), TxnError> {
        let now = now_ms();
        self.transition(id, |cur| {
            let m = Self::check_producer(cur, pid, epoch)?;
            match m.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort => Err(TxnError::Concurrent),
                TxnState::PrepareEpochFence => Err(TxnError::ProducerFenced),
                TxnState::Dead => Err(TxnError::InvalidState(
                    "the transactional id has expired".into(),
                )),
                TxnState::Ongoing if parts.iter().all(|p| m.partitions.contains(p)) => {
                    Ok(Step::Done(()))
                }
                state => {
                    let mut next = m.clone();
                    if state != TxnState::Ongoing {
                        next.partitions.clear();
                        next.start_ms = now;
                    }
                    next.state = TxnState::Ongoing;
                    next.partitions.extend(parts.iter().cloned());
                    next.update_ms = now;
                    Ok(Step::Write(next, ()))
                }
            }
        })
        .await
        .map(|_| ())
    }

    /// KIP-890's verification: whether `(topic, partition)` is part of the ongoing
    /// transaction of `id` by producer `pid` in `epoch`.
    pub fn verify_partition(
        &self,
        id: &str,
        pid: i64,
        epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<bool, TxnError> {
        let p = self.partition_of(id)?;
        let slots = self.lock();
        let slot = slots.get(&p).ok_or(TxnError::NotCoordinator)?;
        if !slot.loaded {
            return Err(TxnError::LoadInProgress);
        }
        let entry = slot.txns.get(id).filter(|e| e.persisted);
        let m = Self::check_producer(entry.map(|e| &e.meta), pid, epoch)?;
        Ok(m.state == TxnState::Ongoing && m.partitions.contains(&(topic.to_string(), partition)))
    }

    /// KIP-890 part 1 on the coordinator: one Kafka error code per partition of `check`
    /// (NONE: part of the producer's ongoing transaction; INVALID_TXN_STATE: not).
    pub fn verify_local(&self, check: &VerifyTxn) -> Vec<i16> {
        check
            .partitions
            .iter()
            .map(|(t, p)| {
                match self.verify_partition(
                    &check.transactional_id,
                    check.producer_id,
                    check.producer_epoch,
                    t,
                    *p,
                ) {
                    Ok(true) => 0,
                    Ok(false) => ResponseError::InvalidTxnState.code(),
                    Err(e) => e.kafka().code(),
                }
            })
            .collect()
    }

    /// KIP-890 part 1 on a partition leader: asks the coordinator of
    /// `check.transactional_id` (this broker or another) to verify the partitions. A
    /// coordinator that cannot be asked answers COORDINATOR_NOT_AVAILABLE for each.
    pub async fn verify(&self, check: VerifyTxn) -> Vec<i16> {
        let unavailable =
            vec![ResponseError::CoordinatorNotAvailable.code(); check.partitions.len()];
        let Ok(host) = self.host() else {
            return unavailable;
        };
        let image = host.image();
        let leader = image.topics.get(TXN_TOPIC).and_then(|t| {
            let p = partition_for(&check.transactional_id, t.partitions.len());
            usize::try_from(p)
                .ok()
                .and_then(|i| t.partitions.get(i))
                .map(|m| m.leader)
        });
        match leader {
            Some(l) if l == self.node_id => self.verify_local(&check),
            Some(l) if l >= 0 => match self.transport.get() {
                Some(t) => match t.verify(l, self.node_id, check).await {
                    Ok(codes) if codes.len() == unavailable.len() => codes,
                    Ok(_) => unavailable,
                    Err(e) => {
                        tracing::debug!(coordinator = l, error = %e, "cannot verify transaction partitions");
                        unavailable
                    }
                },
                None => unavailable,
            },
            _ => unavailable,
        }
    }

    /// EndTxn: persists PrepareCommit/PrepareAbort and answers; the markers follow.
    pub async fn end_txn(
        self: &Arc<Self>,
        id: &str,
        pid: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<(), TxnError> {
        let now = now_ms();
        let ((), written) = self
            .transition(id, |cur| {
                let m = Self::check_producer(cur, pid, epoch)?;
                let wrong = |m: &TxnMeta| {
                    Err(TxnError::InvalidState(format!(
                        "cannot {} a transaction in state {}",
                        if commit { "commit" } else { "abort" },
                        m.state.name()
                    )))
                };
                match (m.state, commit) {
                    (TxnState::Ongoing, _) => {
                        let mut next = m.clone();
                        next.state = if commit {
                            TxnState::PrepareCommit
                        } else {
                            TxnState::PrepareAbort
                        };
                        next.update_ms = now;
                        Ok(Step::Write(next, ()))
                    }
                    // A retried EndTxn whose answer was lost.
                    (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                        Ok(Step::Done(()))
                    }
                    (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                        Err(TxnError::Concurrent)
                    }
                    (TxnState::PrepareEpochFence, _) => Err(TxnError::ProducerFenced),
                    _ => wrong(m),
                }
            })
            .await?;
        if let Some((meta, p, epoch)) = written {
            self.spawn_completion(id.to_string(), meta, p, epoch);
        }
        Ok(())
    }

    /// Aborts every ongoing transaction older than its timeout, bumping the producer epoch
    /// so its producer is fenced (Kafka's `abortTimedOutTransactions`).
    pub async fn abort_timed_out(self: &Arc<Self>) {
        let now = now_ms();
        let expired: Vec<(String, i64, i16)> = self
            .lock()
            .values()
            .filter(|s| s.loaded)
            .flat_map(|s| s.txns.iter())
            .filter(|(_, e)| {
                e.persisted
                    && !e.pending
                    && e.meta.state == TxnState::Ongoing
                    && e.meta.start_ms + i64::from(e.meta.timeout_ms) < now
            })
            .map(|(id, e)| (id.clone(), e.meta.producer_id, e.meta.producer_epoch))
            .collect();
        for (id, pid, epoch) in expired {
            let r = self
                .transition(&id, |cur| match cur {
                    Some(m)
                        if m.producer_id == pid
                            && m.producer_epoch == epoch
                            && m.state == TxnState::Ongoing =>
                    {
                        Ok(Step::Write(fence_and_abort(m, now), ()))
                    }
                    _ => Ok(Step::Done(())),
                })
                .await;
            match r {
                Ok(((), Some((meta, p, e)))) => {
                    tracing::info!(transactional_id = %id, producer_id = pid, "aborting a transaction that exceeded its timeout");
                    self.spawn_completion(id, meta, p, e);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(transactional_id = %id, error = %e, "cannot abort a timed-out transaction yet")
                }
            }
        }
    }

    /// Sends the markers of a Prepare* state and persists its Complete* state, in the
    /// background; ends quietly when this broker stops coordinating the partition.
    pub(crate) fn spawn_completion(
        self: &Arc<Self>,
        id: String,
        meta: TxnMeta,
        p: i32,
        epoch: i32,
    ) {
        let me = self.clone();
        let task = async move { me.complete(id, meta, p, epoch).await };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(task);
            }
            Err(_) => tracing::error!("no runtime to complete a transaction on"),
        }
    }

    fn coordinating(&self, p: i32, epoch: i32) -> bool {
        self.lock().get(&p).is_some_and(|s| s.epoch == epoch)
    }

    async fn complete(self: Arc<Self>, id: String, meta: TxnMeta, p: i32, epoch: i32) {
        let commit = meta.state == TxnState::PrepareCommit;
        let marker = TxnMarker {
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            coordinator_epoch: epoch,
            commit,
        };
        let mut remaining: Vec<(String, i32)> = meta.partitions.iter().cloned().collect();
        let mut backoff = Duration::from_millis(20);
        let mut warn_at = Instant::now() + Duration::from_secs(10);
        while !remaining.is_empty() {
            if !self.coordinating(p, epoch) {
                return;
            }
            remaining = self.send_markers(&remaining, marker).await;
            if !remaining.is_empty() {
                if Instant::now() >= warn_at {
                    tracing::warn!(transactional_id = %id, partitions = ?remaining, "transaction markers not written yet; retrying");
                    warn_at = Instant::now() + Duration::from_secs(10);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
        let now = now_ms();
        loop {
            if !self.coordinating(p, epoch) {
                return;
            }
            let r = self
                .transition(&id, |cur| match cur {
                    Some(m)
                        if m.producer_id == meta.producer_id
                            && m.producer_epoch == meta.producer_epoch
                            && m.state == meta.state =>
                    {
                        let mut next = m.clone();
                        next.state = if commit {
                            TxnState::CompleteCommit
                        } else {
                            TxnState::CompleteAbort
                        };
                        next.partitions.clear();
                        next.update_ms = now;
                        Ok(Step::Write(next, ()))
                    }
                    _ => Ok(Step::Done(())),
                })
                .await;
            match r {
                Ok(_) => {
                    tracing::debug!(transactional_id = %id, commit, "transaction completed");
                    return;
                }
                Err(TxnError::NotCoordinator) => return,
                Err(e) => {
                    tracing::debug!(transactional_id = %id, error = %e, "cannot complete the transaction yet");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }

    /// Sends `marker` to the leaders of `parts`; returns the partitions still to mark.
    async fn send_markers(&self, parts: &[(String, i32)], marker: TxnMarker) -> Vec<(String, i32)> {
        let Ok(host) = self.host() else {
            return parts.to_vec();
        };
        let image = host.image();
        let mut by_leader: HashMap<i32, Vec<MarkerWrite>> = HashMap::new();
        let mut remaining = Vec::new();
        for (topic, partition) in parts {
            let Some(t) = image.topics.get(topic) else {
                // No such topic: `__consumer_offsets` of a single broker (offsets kept
                // locally) — the group coordinator applies the marker itself; any other
                // topic was deleted and has nothing to mark.
                if topic == OFFSETS_TOPIC && !host.offsets_marker_without_topic(*partition, marker)
                {
                    remaining.push((topic.clone(), *partition));
                }
                continue;
            };
            let Some(pm) = usize::try_from(*partition)
                .ok()
                .and_then(|i| t.partitions.get(i))
            else {
                continue;
            };
            by_leader.entry(pm.leader).or_default().push(MarkerWrite {
                topic: topic.clone(),
                partition: *partition,
                marker,
            });
        }
        let timeout = self.settings.write_timeout;
        for (leader, writes) in by_leader {
            let outcomes = if leader == self.node_id {
                write_local(&self.writer, &image, self.node_id, &writes, timeout).await
            } else if let Some(t) = self.transport.get() {
                match t
                    .write_markers(leader, self.node_id, writes.clone(), timeout)
                    .await
                {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::debug!(broker = leader, error = %e, "cannot send transaction markers");
                        vec![MarkerOutcome::Failed(e.to_string()); writes.len()]
                    }
                }
            } else {
                vec![MarkerOutcome::NotLeader; writes.len()]
            };
            for (i, w) in writes.into_iter().enumerate() {
                match outcomes.get(i) {
                    Some(MarkerOutcome::Written) | Some(MarkerOutcome::UnknownPartition) => {}
                    Some(MarkerOutcome::Superseded(e)) => {
                        tracing::warn!(topic = %w.topic, partition = w.partition, error = %e, "transaction marker superseded; not retried");
                    }
                    other => {
                        if let Some(MarkerOutcome::Failed(e)) = other {
                            tracing::debug!(topic = %w.topic, partition = w.partition, error = %e, "transaction marker not written");
                        }
                        remaining.push((w.topic, w.partition));
                    }
                }
            }
        }
        remaining
    }

    /// The transactions of the loaded partitions (ListTransactions).
    pub fn list(&self) -> Vec<Listed> {
        let mut out: Vec<Listed> = self
            .lock()
            .values()
            .filter(|s| s.loaded)
            .flat_map(|s| s.txns.iter())
            .filter(|(_, e)| e.persisted)
            .map(|(id, e)| Listed {
                transactional_id: id.clone(),
                producer_id: e.meta.producer_id,
                state: e.meta.state,
                start_ms: e.meta.start_ms,
            })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }

    /// The state of `id` (DescribeTransactions).
    pub fn describe(&self, id: &str) -> Result<TxnMeta, TxnError> {
        let p = self.partition_of(id)?;
        if self.settings.cluster && !self.lease.is_valid() {
            return Err(TxnError::NotCoordinator);
        }
        let slots = self.lock();
        let slot = slots.get(&p).ok_or(TxnError::NotCoordinator)?;
        if !self.still_leads(p, slot.epoch) {
            return Err(TxnError::NotCoordinator);
        }
        if !slot.loaded {
            return Err(TxnError::LoadInProgress);
        }
        slot.txns
            .get(id)
            .filter(|e| e.persisted)
            .map(|e| e.meta.clone())
            .ok_or(TxnError::NotFound)
    }

    // The loader's side.

    pub(crate) fn start_loading(&self, p: i32, epoch: i32) {
        self.lock().insert(
            p,
            Slot {
                epoch,
                loaded: false,
                txns: HashMap::new(),
            },
        );
    }

    /// Installs what loading partition `p` in `epoch` found; returns the transactions to
    /// complete, or `None` when the partition changed hands meanwhile.
    pub(crate) fn finish_loading(
        &self,
        p: i32,
        epoch: i32,
        txns: HashMap<String, TxnMeta>,
    ) -> Option<Vec<(String, TxnMeta)>> {
        let mut slots = self.lock();
        let slot = slots
            .get_mut(&p)
            .filter(|s| s.epoch == epoch && !s.loaded)?;
        let preparing = txns
            .iter()
            .filter(|(_, m)| m.state.is_preparing())
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        slot.txns = txns
            .into_iter()
            .map(|(id, meta)| {
                (
                    id,
                    Entry {
                        meta,
                        persisted: true,
                        pending: false,
                    },
                )
            })
            .collect();
        slot.loaded = true;
        drop(slots);
        self.notify();
        Some(preparing)
    }

    pub(crate) fn unload(&self, p: i32) {
        self.lock().remove(&p);
        self.notify();
    }
}

/// The state that aborts `m`'s ongoing transaction with its epoch bumped (unless exhausted),
/// so the producer that ran it is fenced.
fn fence_and_abort(m: &TxnMeta, now: i64) -> TxnMeta {
    let mut next = m.clone();
    if !epoch_exhausted(m.producer_epoch) {
        next.producer_epoch = m.producer_epoch + 1;
        next.last_producer_id = m.producer_id;
        next.last_producer_epoch = m.producer_epoch;
    }
    next.state = TxnState::PrepareAbort;
    next.update_ms = now;
    next
}

fn write_error(e: WriteError) -> TxnError {
    match e {
        WriteError::NotLeader { .. } | WriteError::LeadershipLost { .. } => {
            TxnError::NotCoordinator
        }
        // Kafka answers a timed-out or failed state write with NOT_COORDINATOR too: the
        // client looks the coordinator up again and retries.
        WriteError::Timeout { .. } | WriteError::Log(_) => TxnError::NotCoordinator,
    }
}
