//! Reading the topics out of a consumer's JoinGroup metadata (the consumer protocol's
//! `ConsumerProtocolSubscription`: an int16 version, then the versioned body). The
//! coordinator otherwise treats member metadata as opaque bytes; only OffsetDelete needs to
//! know which topics a group uses.
//!
//! May depend on: the codec's consumer-protocol message types.

use std::collections::BTreeSet;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;

/// The highest subscription version the codec knows; newer versions only append fields, so
/// they are read as this one (as Kafka's own ConsumerProtocol does).
const MAX_SUBSCRIPTION_VERSION: i16 = 3;

/// The topics a consumer subscribes to, or `None` if the bytes are not a subscription.
pub fn subscribed_topics(metadata: &Bytes) -> Option<BTreeSet<String>> {
    let mut buf = metadata.clone();
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version < 0 {
        return None;
    }
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version.min(MAX_SUBSCRIPTION_VERSION))
        .ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encoded(version: i16, topics: &[&str]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(version);
        ConsumerProtocolSubscription::default()
            .with_topics(
                topics
                    .iter()
                    .map(|t| StrBytes::from_string(t.to_string()))
                    .collect(),
            )
            .encode(&mut b, version.min(MAX_SUBSCRIPTION_VERSION))
            .unwrap();
        b.freeze()
    }

    #[test]
    fn reads_topics_of_every_version() {
        for v in 0..=3 {
            let got = subscribed_topics(&encoded(v, &["a", "b"])).unwrap();
            assert_eq!(got, BTreeSet::from(["a".to_string(), "b".to_string()]));
        }
    }

    #[test]
    fn garbage_is_not_a_subscription() {
        assert_eq!(subscribed_topics(&Bytes::from_static(b"\x00")), None);
        assert_eq!(
            subscribed_topics(&Bytes::from_static(b"\xff\xff\x00")),
            None
        );
        assert_eq!(
            subscribed_topics(&Bytes::from_static(b"\x00\x00\x00\x00\x00\x05ab")),
            None
        );
    }
}
