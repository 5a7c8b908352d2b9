//! Topic ids (KIP-516) at the API edge: the metadata's `u128` ids as the codec's `Uuid`, and
//! lookups of topics by id in an image.

use uuid::Uuid;

use crate::metadata::{ClusterImage, TopicMeta};

/// The wire form of a topic's id.
pub fn of(topic: &TopicMeta) -> Uuid {
    Uuid::from_u128(topic.topic_id())
}

/// The topic with id `id`, if any (the zero id names no topic).
pub fn find<'a>(image: &'a ClusterImage, id: &Uuid) -> Option<&'a TopicMeta> {
    let id = id.as_u128();
    if id == 0 {
        return None;
    }
    image.topics.values().find(|t| t.topic_id() == id)
}
