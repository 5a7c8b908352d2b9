//! Client fetch sessions (KIP-227): the bounded cache of sessions a Fetch request (v7+) may
//! create, and the rules that turn a request's session id and epoch into what to read and
//! what to answer.
//!
//! | id | epoch | meaning |
//! |---|---|---|
//! | 0 | -1 | full fetch, no session (a pre-KIP-227 request) |
//! | 0 | 0 | full fetch; a new session is created when a slot is free or can be freed |
//! | N | 0 | closes session N, then as (0, 0) |
//! | N | -1 | closes session N, then as (0, -1) |
//! | N | E > 0 | incremental fetch in session N: E must be the session's next epoch |
//!
//! An incremental request names only the partitions added or changed since the previous
//! request (and `forgotten_topics_data` those to drop); the broker reads every partition of the
//! session and answers only those with records, an error, or a high watermark, last stable
//! offset or log start offset different from what the session last answered. An unknown
//! session is FETCH_SESSION_ID_NOT_FOUND, a wrong epoch INVALID_FETCH_SESSION_EPOCH, a
//! session created with topic ids used without them (or the reverse)
//! FETCH_SESSION_TOPIC_ID_ERROR; each answers no partitions and closes nothing.
//!
//! The cache holds at most `max.incremental.fetch.session.cache.slots` sessions. When it is
//! full, a new session may take the slot of one unused for [`EVICTION_MS`]; otherwise of the
//! least valuable evictable session (a consumer's before a follower's, then the fewest
//! partitions) if the new one is worth more (a follower's, or more partitions). A session is evictable by consumers
//! once it is older than [`EVICTION_MS`], by followers also before that when it is a
//! consumer's. Otherwise the fetch is answered without a session (id 0) and the client keeps
//! sending full requests. This is Kafka's policy, without its sharding of the cache.
//!
//! Partitions that returned records move to the end of the session's order, so under a
//! response size limit every partition gets its turn.
//!
//! May depend on: the codec's Fetch messages, `rand`. Nothing else in the crate.

use std::collections::HashMap;
use std::sync::Mutex;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

/// Kafka's `min.incremental.fetch.session.eviction.ms` (a constant there too): a session
/// unused for this long may be evicted by any new one.
pub const EVICTION_MS: u64 = 120_000;

/// A partition of a session: by name (v7-v12) or by topic id (v13+).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: String,
    id: Uuid,
    partition: i32,
}

impl Key {
    fn of(by_id: bool, topic: &TopicName, id: Uuid, partition: i32) -> Self {
        if by_id {
            Self {
                name: String::new(),
                id,
                partition,
            }
        } else {
            Self {
                name: topic.0.to_string(),
                id: Uuid::nil(),
                partition,
            }
        }
    }
}

/// What a session remembers of a partition: the client's last fetch state and what the
/// broker last answered.
#[derive(Debug, Clone)]
struct Cached {
    topic: TopicName,
    fetch: FetchPartition,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    epoch: i32,
    /// A follower's session (the request named a replica): worth more than a consumer's.
    privileged: bool,
    by_id: bool,
    created_ms: u64,
    last_used_ms: u64,
    partitions: HashMap<Key, Cached>,
    /// Read order; partitions that returned records move to the end.
    order: Vec<Key>,
}

impl Session {
    /// Kafka's ordering of eviction candidates: consumers before followers, then the fewest
    /// partitions, then the lowest id.
    fn worth(&self, id: i32) -> (bool, usize, i32) {
        (self.privileged, self.partitions.len(), id)
    }

    /// Adds or updates every partition `req` names.
    fn put_all(&mut self, req: &FetchRequest, by_id: bool) {
        for ft in &req.topics {
            for fp in &ft.partitions {
                self.put(
                    Key::of(by_id, &ft.topic, ft.topic_id, fp.partition),
                    &ft.topic,
                    fp,
                );
            }
        }
    }

    fn put(&mut self, key: Key, topic: &TopicName, fetch: &FetchPartition) {
        match self.partitions.get_mut(&key) {
            Some(c) => {
                c.fetch = fetch.clone();
                c.topic = topic.clone();
            }
            None => {
                self.order.push(key.clone());
                self.partitions.insert(
                    key,
                    Cached {
                        topic: topic.clone(),
                        fetch: fetch.clone(),
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                    },
                );
            }
        }
    }
}

/// How to serve one Fetch request.
#[derive(Debug)]
pub enum Begin {
    /// Read the request as it is; answer with session id 0.
    Sessionless,
    /// Read the request as it is; then [`FetchSessionCache::create`] may open a session.
    Full,
    /// Read `request` (every partition of the session); answer through
    /// [`FetchSessionCache::finish_incremental`].
    Incremental(Box<Incremental>),
    /// Answer this top-level error with no partitions.
    Error(ResponseError),
}

/// An incremental fetch being served.
#[derive(Debug)]
pub struct Incremental {
    pub session_id: i32,
    /// The session's partitions as a full request.
    pub request: FetchRequest,
    /// The keys of `request`'s partitions, in its order.
    keys: Vec<Key>,
}

/// The broker's fetch sessions. See the module documentation.
#[derive(Debug)]
pub struct FetchSessionCache {
    slots: usize,
    sessions: Mutex<HashMap<i32, Session>>,
    started: std::time::Instant,
}

impl FetchSessionCache {
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            sessions: Mutex::new(HashMap::new()),
            started: std::time::Instant::now(),
        }
    }

    /// Milliseconds since the cache was made (the clock of `begin` and `create`).
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides how to serve `req` (a request of v7+; `by_id` for v13+) at `now_ms`: closes a
    /// session the request ends, and for an incremental request takes its changes, moves the
    /// session to its next epoch and returns every partition of the session to read.
    pub fn begin(&self, req: &FetchRequest, by_id: bool, now_ms: u64) -> Begin {
        let (id, epoch) = (req.session_id, req.session_epoch);
        if epoch == -1 || epoch == 0 {
            if id != 0 {
                self.lock().remove(&id);
            }
            return if epoch == 0 {
                Begin::Full
            } else {
                Begin::Sessionless
            };
        }
        let mut sessions = self.lock();
        let Some(s) = sessions.get_mut(&id) else {
            return Begin::Error(ResponseError::FetchSessionIdNotFound);
        };
        if s.epoch != epoch {
            return Begin::Error(ResponseError::InvalidFetchSessionEpoch);
        }
        if s.by_id != by_id {
            return Begin::Error(ResponseError::FetchSessionTopicIdError);
        }
        s.put_all(req, by_id);
        for gone in &req.forgotten_topics_data {
            for p in &gone.partitions {
                let key = Key::of(by_id, &gone.topic, gone.topic_id, *p);
                if s.partitions.remove(&key).is_some() {
                    s.order.retain(|k| *k != key);
                }
            }
        }
        s.epoch = next_epoch(s.epoch);
        s.last_used_ms = now_ms;
        let mut topics: Vec<FetchTopic> = Vec::new();
        for key in &s.order {
            let Some(c) = s.partitions.get(key) else {
                continue;
            };
            let same = topics.last().is_some_and(|t| {
                if by_id {
                    t.topic_id == key.id
                } else {
                    t.topic == c.topic
                }
            });
            if !same {
                topics.push(
                    FetchTopic::default()
                        .with_topic(c.topic.clone())
                        .with_topic_id(key.id),
                );
            }
            if let Some(t) = topics.last_mut() {
                t.partitions.push(c.fetch.clone());
            }
        }
        let request = req
            .clone()
            .with_topics(topics)
            .with_forgotten_topics_data(Vec::new());
        Begin::Incremental(Box::new(Incremental {
            session_id: id,
            request,
            keys: s.order.clone(),
        }))
    }

    /// After a full fetch answered `resp`: opens a session holding `req`'s partitions and
    /// what `resp` said of them, if a slot is free or can be freed; returns its id, or 0.
    pub fn create(
        &self,
        req: &FetchRequest,
        resp: &FetchResponse,
        by_id: bool,
        now_ms: u64,
    ) -> i32 {
        if self.slots == 0 {
            return 0;
        }
        let privileged = req.replica_id.0 >= 0 || req.replica_state.replica_id.0 >= 0;
        let mut s = Session {
            epoch: 1,
            privileged,
            by_id,
            created_ms: now_ms,
            last_used_ms: now_ms,
            partitions: HashMap::new(),
            order: Vec::new(),
        };
        s.put_all(req, by_id);
        for (ft, rt) in req.topics.iter().zip(&resp.responses) {
            for (fp, pd) in ft.partitions.iter().zip(&rt.partitions) {
                let key = Key::of(by_id, &ft.topic, ft.topic_id, fp.partition);
                if let Some(c) = s.partitions.get_mut(&key) {
                    c.high_watermark = pd.high_watermark;
                    c.last_stable_offset = pd.last_stable_offset;
                    c.log_start_offset = pd.log_start_offset;
                }
            }
        }
        let mut sessions = self.lock();
        if sessions.len() >= self.slots && !evict(&mut sessions, &s, now_ms) {
            return 0;
        }
        let mut rng = rand::thread_rng();
        let id = loop {
            let id = rand::Rng::gen_range(&mut rng, 1..=i32::MAX);
            if !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(id, s);
        id
    }

    /// Turns the full answer to an incremental fetch into the incremental one: keeps the
    /// partitions with records, an error or changed offsets (and remembers those offsets),
    /// drops the rest, and moves partitions that returned records to the end of the order.
    pub fn finish_incremental(&self, inc: &Incremental, mut resp: FetchResponse) -> FetchResponse {
        let mut sessions = self.lock();
        // The session was closed or evicted meanwhile: the full answer is still correct.
        let Some(s) = sessions.get_mut(&inc.session_id) else {
            return resp.with_session_id(inc.session_id);
        };
        let mut keys = inc.keys.iter();
        let mut served = Vec::new();
        for rt in &mut resp.responses {
            rt.partitions.retain(|pd| {
                let Some(key) = keys.next() else {
                    return true;
                };
                let Some(c) = s.partitions.get_mut(key) else {
                    return true;
                };
                let has_records = pd.records.as_ref().is_some_and(|r| !r.is_empty());
                let changed = c.high_watermark != pd.high_watermark
                    || c.last_stable_offset != pd.last_stable_offset
                    || c.log_start_offset != pd.log_start_offset;
                c.high_watermark = pd.high_watermark;
                c.last_stable_offset = pd.last_stable_offset;
                c.log_start_offset = pd.log_start_offset;
                if has_records {
                    served.push(key.clone());
                }
                has_records || changed || pd.error_code != 0
            });
        }
        resp.responses.retain(|t| !t.partitions.is_empty());
        if !served.is_empty() {
            s.order.retain(|k| !served.contains(k));
            s.order.extend(served);
        }
        resp.with_session_id(inc.session_id)
    }
}

/// The epoch after `e` (wrapping to 1: 0 and -1 have their own meanings).
fn next_epoch(e: i32) -> i32 {
    if e == i32::MAX {
        1
    } else {
        e + 1
    }
}

/// Frees a slot for `new` if the policy allows (see the module documentation).
fn evict(sessions: &mut HashMap<i32, Session>, new: &Session, now_ms: u64) -> bool {
    let stale = sessions
        .iter()
        .filter(|(_, s)| now_ms.saturating_sub(s.last_used_ms) > EVICTION_MS)
        .min_by_key(|(id, s)| (s.last_used_ms, **id))
        .map(|(id, _)| *id);
    if let Some(id) = stale {
        sessions.remove(&id);
        return true;
    }
    let old_enough = |s: &Session| now_ms.saturating_sub(s.created_ms) > EVICTION_MS;
    let candidate = sessions
        .iter()
        .filter(|(_, s)| old_enough(s) || (new.privileged && !s.privileged))
        .min_by_key(|(id, s)| s.worth(**id))
        .map(|(id, s)| (*id, s.worth(*id)));
    match candidate {
        Some((id, worth)) if (new.privileged, new.partitions.len()) > (worth.0, worth.1) => {
            sessions.remove(&id);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::BrokerId;
    use kafka_protocol::protocol::StrBytes;

    fn name(s: &str) -> TopicName {
        TopicName(StrBytes::from_string(s.to_string()))
    }

    fn request(id: i32, epoch: i32, partitions: &[(i32, i64)]) -> FetchRequest {
        let t = FetchTopic::default().with_topic(name("t")).with_partitions(
            partitions
                .iter()
                .map(|(p, o)| {
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(*o)
                })
                .collect(),
        );
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(if partitions.is_empty() {
                Vec::new()
            } else {
                vec![t]
            })
    }

    /// The answer to `req` with high watermark `hw` and records for the partitions in `data`.
    fn answer(req: &FetchRequest, hw: i64, data: &[i32]) -> FetchResponse {
        FetchResponse::default().with_responses(
            req.topics
                .iter()
                .map(|t| {
                    FetchableTopicResponse::default()
                        .with_topic(t.topic.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    PartitionData::default()
                                        .with_partition_index(p.partition)
                                        .with_high_watermark(hw)
                                        .with_records(Some(if data.contains(&p.partition) {
                                            bytes::Bytes::from_static(b"x")
                                        } else {
                                            bytes::Bytes::new()
                                        }))
                                })
                                .collect(),
                        )
                })
                .collect(),
        )
    }

    fn served(resp: &FetchResponse) -> Vec<i32> {
        resp.responses
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect()
    }

    fn open(cache: &FetchSessionCache, partitions: &[(i32, i64)], now: u64) -> i32 {
        let req = request(0, 0, partitions);
        assert!(matches!(cache.begin(&req, false, now), Begin::Full));
        cache.create(&req, &answer(&req, 5, &[]), false, now)
    }

    #[test]
    fn incremental_answers_hold_only_changed_partitions() {
        let cache = FetchSessionCache::new(10);
        let id = open(&cache, &[(0, 0), (1, 0), (2, 0)], 0);
        assert_ne!(id, 0);
        // Nothing named, nothing changed: every partition is read, none answered.
        let Begin::Incremental(inc) = cache.begin(&request(id, 1, &[]), false, 1) else {
            panic!("incremental expected");
        };
        let full = answer(&inc.request, 5, &[]);
        assert_eq!(served(&full), vec![0, 1, 2]);
        assert!(served(&cache.finish_incremental(&inc, full)).is_empty());
        // Partition 1 has records; then the high watermark moves everywhere.
        let Begin::Incremental(inc) = cache.begin(&request(id, 2, &[(1, 3)]), false, 2) else {
            panic!("incremental expected");
        };
        assert_eq!(inc.request.topics[0].partitions[1].fetch_offset, 3);
        let resp = cache.finish_incremental(&inc, answer(&inc.request, 5, &[1]));
        assert_eq!(served(&resp), vec![1]);
        assert_eq!(resp.session_id, id);
        // Partition 1 returned records: it is read last from now on.
        let Begin::Incremental(inc) = cache.begin(&request(id, 3, &[]), false, 3) else {
            panic!("incremental expected");
        };
        assert_eq!(
            inc.request.topics[0]
                .partitions
                .iter()
                .map(|p| p.partition)
                .collect::<Vec<_>>(),
            vec![0, 2, 1]
        );
        let resp = cache.finish_incremental(&inc, answer(&inc.request, 6, &[]));
        assert_eq!(served(&resp), vec![0, 2, 1]);
    }

    #[test]
    fn wrong_epochs_unknown_ids_and_forgotten_partitions() {
        let cache = FetchSessionCache::new(10);
        let id = open(&cache, &[(0, 0), (1, 0)], 0);
        assert!(matches!(
            cache.begin(&request(id, 5, &[]), false, 1),
            Begin::Error(ResponseError::InvalidFetchSessionEpoch)
        ));
        assert!(matches!(
            cache.begin(&request(id.wrapping_add(1).max(1), 1, &[]), false, 1),
            Begin::Error(ResponseError::FetchSessionIdNotFound)
        ));
        assert!(matches!(
            cache.begin(&request(id, 1, &[]), true, 1),
            Begin::Error(ResponseError::FetchSessionTopicIdError)
        ));
        // An error leaves the epoch as it was.
        let forget = request(id, 1, &[])
            .with_forgotten_topics_data(vec![ForgottenTopic::default()
                .with_topic(name("t"))
                .with_partitions(vec![0])]);
        let Begin::Incremental(inc) = cache.begin(&forget, false, 1) else {
            panic!("incremental expected");
        };
        assert_eq!(inc.request.topics[0].partitions.len(), 1);
        // Epoch -1 closes the session.
        assert!(matches!(
            cache.begin(&request(id, -1, &[]), false, 2),
            Begin::Sessionless
        ));
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_evicts_only_by_kafkas_rules() {
        let cache = FetchSessionCache::new(2);
        let a = open(&cache, &[(0, 0)], 0);
        let b = open(&cache, &[(0, 0), (1, 0)], 0);
        assert!(a != 0 && b != 0);
        // Both young: a consumer's new session gets no slot, even a bigger one.
        assert_eq!(open(&cache, &[(0, 0), (1, 0), (2, 0)], 1_000), 0);
        assert_eq!(cache.len(), 2);
        // Old enough (but in use): the bigger new session evicts the smallest, not a smaller one.
        let _ = cache.begin(&request(a, 1, &[]), false, EVICTION_MS + 10);
        let _ = cache.begin(&request(b, 1, &[]), false, EVICTION_MS + 10);
        assert_eq!(open(&cache, &[(0, 0)], EVICTION_MS + 20), 0);
        let c = open(&cache, &[(0, 0), (1, 0), (2, 0)], EVICTION_MS + 20);
        assert_ne!(c, 0);
        assert!(matches!(
            cache.begin(&request(a, 2, &[]), false, EVICTION_MS + 30),
            Begin::Error(ResponseError::FetchSessionIdNotFound)
        ));
        // Unused for the eviction time: any new session takes its slot.
        let d = open(&cache, &[(0, 0)], 2 * EVICTION_MS + 100);
        assert_ne!(d, 0);
        assert_eq!(cache.len(), 2);
        // No slots: never a session.
        assert_eq!(open(&FetchSessionCache::new(0), &[(0, 0)], 0), 0);
    }
}
