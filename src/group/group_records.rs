//! The group-metadata records of `__consumer_offsets` in Kafka's binary layout
//! ([`encode_group_record`], [`decode_group_record`]): what a new coordinator needs to take
//! over a group without a rebalance ([`GroupSnapshot`]).
//!
//! - key (key version 2, Kafka's GroupMetadataKey): version (i16 BE = 2), group (i16 BE
//!   length + UTF-8);
//! - value (value version 3, Kafka's GroupMetadataValue v3): protocol type (string),
//!   generation (i32), protocol (nullable string), leader (nullable string), current state
//!   timestamp (i64, ms), members (i32 count), each: member id, group instance id (nullable),
//!   client id, client host (strings), rebalance timeout, session timeout (i32 ms),
//!   subscription and assignment (i32 length + bytes). Strings are i16 BE length + UTF-8
//!   (length -1: null). Versions 0-2 (fewer member fields) are read too; version 4 (flexible)
//!   is skipped;
//! - a record without a value (a tombstone) says the group was deleted.
//!
//! A group's records share one key, so compaction keeps exactly its latest record.
//!
//! May depend on: `group` (errors), `bytes`.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::GroupError;

/// Key version of a group-metadata record.
pub const GROUP_KEY_VERSION: i16 = 2;
/// Value version written (GroupMetadataValue v3: group instance ids, rebalance timeouts).
const GROUP_VALUE_VERSION: i16 = 3;

/// One member of a persisted group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's protocol (for consumers, the subscription).
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group as its coordinator persists it after each completed rebalance and when it empties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state (ms since the epoch; -1 unknown).
    pub state_timestamp: i64,
    pub members: Vec<MemberSnapshot>,
}

fn too_long(len: usize) -> GroupError {
    GroupError::Storage(format!(
        "a field of {len} bytes is too long for a group record"
    ))
}

fn put_str(b: &mut BytesMut, s: &str) -> Result<(), GroupError> {
    let len = i16::try_from(s.len()).map_err(|_| too_long(s.len()))?;
    b.put_i16(len);
    b.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_opt_str(b: &mut BytesMut, s: Option<&str>) -> Result<(), GroupError> {
    match s {
        Some(s) => put_str(b, s),
        None => {
            b.put_i16(-1);
            Ok(())
        }
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) -> Result<(), GroupError> {
    let len = i32::try_from(v.len()).map_err(|_| too_long(v.len()))?;
    b.put_i32(len);
    b.extend_from_slice(v);
    Ok(())
}

fn get_opt_str(b: &mut &[u8]) -> Option<Option<String>> {
    if b.remaining() < 2 {
        return None;
    }
    let len = b.get_i16();
    if len == -1 {
        return Some(None);
    }
    let len = usize::try_from(len).ok()?;
    if b.remaining() < len {
        return None;
    }
    let s = String::from_utf8(b[..len].to_vec()).ok()?;
    b.advance(len);
    Some(Some(s))
}

fn get_str(b: &mut &[u8]) -> Option<String> {
    get_opt_str(b)?
}

fn get_bytes(b: &mut &[u8]) -> Option<Bytes> {
    if b.remaining() < 4 {
        return None;
    }
    let len = b.get_i32();
    if len == -1 {
        return Some(Bytes::new());
    }
    let len = usize::try_from(len).ok()?;
    if b.remaining() < len {
        return None;
    }
    let v = Bytes::copy_from_slice(&b[..len]);
    b.advance(len);
    Some(v)
}

fn get_i32(b: &mut &[u8]) -> Option<i32> {
    (b.remaining() >= 4).then(|| b.get_i32())
}

/// The key of `group`'s metadata record.
pub fn group_key(group: &str) -> Result<Vec<u8>, GroupError> {
    let mut k = BytesMut::with_capacity(4 + group.len());
    k.put_i16(GROUP_KEY_VERSION);
    put_str(&mut k, group)?;
    Ok(k.to_vec())
}

/// The record that stores `group`'s metadata (`Some`) or deletes it (`None`, a tombstone):
/// (key, value).
pub fn encode_group_record(
    group: &str,
    snapshot: Option<&GroupSnapshot>,
) -> Result<(Vec<u8>, Option<Vec<u8>>), GroupError> {
    let key = group_key(group)?;
    let Some(s) = snapshot else {
        return Ok((key, None));
    };
    let mut v = BytesMut::with_capacity(64);
    v.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut v, &s.protocol_type)?;
    v.put_i32(s.generation);
    put_opt_str(&mut v, s.protocol.as_deref())?;
    put_opt_str(&mut v, s.leader.as_deref())?;
    v.put_i64(s.state_timestamp);
    let count = i32::try_from(s.members.len()).map_err(|_| too_long(s.members.len()))?;
    v.put_i32(count);
    for m in &s.members {
        put_str(&mut v, &m.member_id)?;
        put_opt_str(&mut v, m.group_instance_id.as_deref())?;
        put_str(&mut v, &m.client_id)?;
        put_str(&mut v, &m.client_host)?;
        v.put_i32(m.rebalance_timeout_ms);
        v.put_i32(m.session_timeout_ms);
        put_bytes(&mut v, &m.subscription)?;
        put_bytes(&mut v, &m.assignment)?;
    }
    Ok((key, Some(v.to_vec())))
}

/// Reads a group-metadata record: (group, `None` for a tombstone). `None` for records of
/// another kind, an unsupported version or a damaged value (skipped when loading).
pub fn decode_group_record(
    key: &[u8],
    value: Option<&[u8]>,
) -> Option<(String, Option<GroupSnapshot>)> {
    let mut k = key;
    if k.remaining() < 2 || k.get_i16() != GROUP_KEY_VERSION {
        return None;
    }
    let group = get_str(&mut k)?;
    if k.has_remaining() {
        return None;
    }
    let Some(mut v) = value else {
        return Some((group, None));
    };
    if v.remaining() < 2 {
        return None;
    }
    let version = v.get_i16();
    if !(0..=GROUP_VALUE_VERSION).contains(&version) {
        return None;
    }
    let protocol_type = get_str(&mut v)?;
    let generation = get_i32(&mut v)?;
    let protocol = get_opt_str(&mut v)?;
    let leader = get_opt_str(&mut v)?;
    let state_timestamp = if version >= 2 {
        if v.remaining() < 8 {
            return None;
        }
        v.get_i64()
    } else {
        -1
    };
    let count = usize::try_from(get_i32(&mut v)?).ok()?;
    // Every member takes at least 12 bytes: a damaged count cannot make us allocate much.
    if count > v.remaining() / 12 {
        return None;
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = get_str(&mut v)?;
        let group_instance_id = if version >= 3 {
            get_opt_str(&mut v)?
        } else {
            None
        };
        let client_id = get_str(&mut v)?;
        let client_host = get_str(&mut v)?;
        let session_or_rebalance = get_i32(&mut v)?;
        let (rebalance_timeout_ms, session_timeout_ms) = if version >= 1 {
            (session_or_rebalance, get_i32(&mut v)?)
        } else {
            (session_or_rebalance, session_or_rebalance)
        };
        members.push(MemberSnapshot {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription: get_bytes(&mut v)?,
            assignment: get_bytes(&mut v)?,
        });
    }
    if v.has_remaining() {
        return None;
    }
    Some((
        group,
        Some(GroupSnapshot {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp,
            members,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> GroupSnapshot {
        GroupSnapshot {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 1_700_000_000_000,
            members: vec![
                MemberSnapshot {
                    member_id: "m1".into(),
                    group_instance_id: None,
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                },
                MemberSnapshot {
                    member_id: "m2".into(),
                    group_instance_id: Some("i2".into()),
                    client_id: "d".into(),
                    client_host: "/10.0.0.2".into(),
                    rebalance_timeout_ms: 60_000,
                    session_timeout_ms: 6_000,
                    subscription: Bytes::new(),
                    assignment: Bytes::from_static(b"x"),
                },
            ],
        }
    }

    #[test]
    fn group_record_round_trips_in_kafkas_layout() {
        let s = snapshot();
        let (k, v) = encode_group_record("g", Some(&s)).unwrap();
        assert_eq!(k, vec![0, 2, 0, 1, b'g']);
        let v = v.unwrap();
        // Value version 3, then protocol type "consumer", generation 7.
        assert_eq!(
            &v[..12],
            &[0, 3, 0, 8, b'c', b'o', b'n', b's', b'u', b'm', b'e', b'r']
        );
        assert_eq!(&v[12..16], &[0, 0, 0, 7]);
        assert_eq!(
            decode_group_record(&k, Some(&v)),
            Some(("g".to_string(), Some(s)))
        );
        let (k2, none) = encode_group_record("g", None).unwrap();
        assert_eq!((k2.as_slice(), none), (k.as_slice(), None));
        assert_eq!(decode_group_record(&k, None), Some(("g".to_string(), None)));
    }

    #[test]
    fn other_records_and_damage_are_skipped_not_misread() {
        let (k, v) = encode_group_record("g", Some(&snapshot())).unwrap();
        let v = v.unwrap();
        // An offset-commit key (version 1) is not a group record.
        assert_eq!(
            decode_group_record(&[0, 1, 0, 1, b'g', 0, 1, b't'], None),
            None
        );
        // Truncated, or with trailing bytes.
        for cut in 1..v.len() {
            assert_eq!(decode_group_record(&k, Some(&v[..cut])), None, "cut {cut}");
        }
        let mut long = v.clone();
        long.push(0);
        assert_eq!(decode_group_record(&k, Some(&long)), None);
        // An absurd member count is refused without allocating.
        let mut absurd = v[..v.len()].to_vec();
        let at = 2 + 10 + 4 + 7 + 4 + 8;
        absurd[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_group_record(&k, Some(&absurd)), None);
        // A flexible version-4 value is skipped.
        let mut v4 = v.clone();
        v4[1] = 4;
        assert_eq!(decode_group_record(&k, Some(&v4)), None);
    }

    #[test]
    fn version_0_values_are_read() {
        // GroupMetadataValue v0: no state timestamp, no instance id, one timeout.
        let mut v = BytesMut::new();
        v.put_i16(0);
        put_str(&mut v, "consumer").unwrap();
        v.put_i32(2);
        put_opt_str(&mut v, Some("range")).unwrap();
        put_opt_str(&mut v, None).unwrap();
        v.put_i32(1);
        put_str(&mut v, "m").unwrap();
        put_str(&mut v, "c").unwrap();
        put_str(&mut v, "h").unwrap();
        v.put_i32(5000);
        put_bytes(&mut v, b"s").unwrap();
        put_bytes(&mut v, b"a").unwrap();
        let (_, s) = decode_group_record(&group_key("g").unwrap(), Some(&v)).unwrap();
        let s = s.unwrap();
        assert_eq!((s.generation, s.leader, s.state_timestamp), (2, None, -1));
        assert_eq!(s.members[0].session_timeout_ms, 5000);
        assert_eq!(s.members[0].assignment, Bytes::from_static(b"a"));
    }
}
