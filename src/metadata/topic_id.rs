//! Topic ids (KIP-516): a random 128-bit id per topic, chosen when the topic is created and
//! kept in the metadata image, so a topic deleted and re-created under the same name is a
//! different topic to clients (Fetch v13+, DeleteTopics by id).
//!
//! Topics created before ids existed (an image or Raft log entry without one) get an id
//! derived from their name by a fixed hash, identical on every broker and across restarts;
//! a topic re-created later gets a random one.
//!
//! May depend on: `rand`. Ids are plain `u128`s here (Kafka's `Uuid`, most significant bits
//! first); the API layer converts them.

/// Kafka's reserved ids: `Uuid.ZERO` (no id) and `Uuid.METADATA_TOPIC_ID` (1).
const RESERVED: [u128; 2] = [0, 1];

/// Whether Kafka would accept `id` as a topic id: not reserved, and its base64 form does not
/// start with '-' (Kafka's `Uuid.randomUuid` draws again in both cases, so command-line tools
/// never see an id that looks like an option).
pub fn is_valid(id: u128) -> bool {
    // The first base64 character encodes the top 6 bits; '-' is 62 in the URL-safe alphabet.
    !RESERVED.contains(&id) && (id >> 122) != 62
}

/// A new random topic id, shaped as a version-4 UUID like Kafka's.
pub fn random() -> u128 {
    loop {
        let id = as_v4(rand::random::<u128>());
        if is_valid(id) {
            return id;
        }
    }
}

/// The id of a topic that was created before raftka stored topic ids: a hash of its name.
pub fn legacy(name: &str) -> u128 {
    let mut salt = 0u8;
    loop {
        let id = as_v4(fnv1a_128(name.as_bytes(), salt));
        if is_valid(id) {
            return id;
        }
        salt = salt.wrapping_add(1);
    }
}

/// Sets the version (4) and variant (RFC 4122) bits.
fn as_v4(x: u128) -> u128 {
    (x & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
}

/// FNV-1a, 128-bit, over `salt` and the bytes.
fn fnv1a_128(bytes: &[u8], salt: u8) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut h = OFFSET;
    for b in std::iter::once(salt).chain(bytes.iter().copied()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_random_and_legacy_ids_stable() {
        let a = random();
        assert!(is_valid(a) && a != random());
        assert_eq!(legacy("orders"), legacy("orders"));
        assert_ne!(legacy("orders"), legacy("orders2"));
        assert!(is_valid(legacy("orders")));
        // Version 4, RFC 4122 variant.
        assert_eq!((a >> 76) & 0xf, 4);
        assert_eq!((a >> 62) & 0x3, 2);
        assert!(!is_valid(0) && !is_valid(1) && !is_valid(62u128 << 122));
    }

    #[test]
    fn ids_survive_the_json_of_commands_and_images() {
        // Commands and images travel and are stored as JSON: 128-bit ids must round-trip.
        let id = u128::MAX - 12345;
        let cmd = crate::metadata::MetadataCommand::CreateTopic {
            name: "t".into(),
            assignments: vec![vec![1]],
            configs: Default::default(),
            id,
        };
        let json = serde_json::to_vec(&cmd).unwrap();
        let back: crate::metadata::MetadataCommand = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, cmd);
        // An image stored before ids existed loads with id 0, i.e. the name-derived id.
        let old = r#"{"name":"t","partitions":[],"configs":{}}"#;
        let t: crate::metadata::TopicMeta = serde_json::from_str(old).unwrap();
        assert_eq!((t.id, t.topic_id()), (0, legacy("t")));
    }
}
