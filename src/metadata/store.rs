//! Durable home of the metadata image on a single broker: commands are applied one at a
//! time and the resulting image is written to sled's `meta` tree before the caller sees it.
//! The Raft state machine replaces this store in the cluster.

use std::sync::{Arc, Mutex, RwLock};

use rand::Rng;

use super::{BrokerMeta, ClusterImage, MetadataCommand, MetadataError};

const IMAGE_KEY: &[u8] = b"image";

/// The single-broker metadata store could not read or write its image.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed on the `meta` tree.
    #[error(
        "cannot read or write the metadata image (sled tree `meta`): {0}; check the data \
         directory's disk (full, read-only or failing)"
    )]
    Sled(#[from] sled::Error),
    /// The stored image does not parse.
    #[error(
        "the stored metadata image (sled tree `meta`) is corrupt: {0}; restore the data \
         directory from a backup"
    )]
    Corrupt(#[source] serde_json::Error),
    /// The image could not be serialised (a bug: every image type serialises).
    #[error("cannot serialise the metadata image: {0}")]
    Serialise(#[source] serde_json::Error),
    /// The command was refused by the image (nothing was written).
    #[error(transparent)]
    Rejected(#[from] MetadataError),
}

/// Commands answer with [`MetadataError`], which travels between brokers (serialisable, no
/// source): a storage failure becomes [`MetadataError::Storage`] with its whole cause chain
/// in the text (Kafka's KAFKA_STORAGE_ERROR to the client).
impl From<StoreError> for MetadataError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(e) => e,
            other => MetadataError::Storage(other.to_string()),
        }
    }
}

pub struct MetadataStore {
    tree: sled::Tree,
    /// The current image; readers clone the `Arc` and never block writers for long.
    image: RwLock<Arc<ClusterImage>>,
    /// Serialises commands so each one sees the result of the previous one.
    write: Mutex<()>,
}

impl MetadataStore {
    /// Opens the store and registers this broker (its advertised address may have changed).
    pub fn open(db: &sled::Db, node_id: i32, me: BrokerMeta) -> Result<Self, StoreError> {
        let tree = db.open_tree("meta")?;
        let image = match tree.get(IMAGE_KEY)? {
            Some(v) => serde_json::from_slice(&v).map_err(StoreError::Corrupt)?,
            None => ClusterImage {
                cluster_id: new_cluster_id(),
                controller_id: node_id,
                ..Default::default()
            },
        };
        let store = Self {
            tree,
            image: RwLock::new(Arc::new(image)),
            write: Mutex::new(()),
        };
        store.apply(&MetadataCommand::RegisterBroker(me))?;
        Ok(store)
    }

    /// The current image (a local read; see the module docs of `metadata`).
    pub fn image(&self) -> Arc<ClusterImage> {
        self.image.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Applies a command and persists the result.
    pub fn submit(&self, cmd: &MetadataCommand) -> Result<Arc<ClusterImage>, MetadataError> {
        Ok(self.apply(cmd)?)
    }

    fn apply(&self, cmd: &MetadataCommand) -> Result<Arc<ClusterImage>, StoreError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.image()).clone();
        next.apply(cmd)?;
        let bytes = serde_json::to_vec(&next).map_err(StoreError::Serialise)?;
        self.tree.insert(IMAGE_KEY, bytes)?;
        self.tree.flush()?;
        let next = Arc::new(next);
        *self.image.write().unwrap_or_else(|p| p.into_inner()) = next.clone();
        Ok(next)
    }
}

/// A random 22-character cluster id in the URL-safe base64 alphabet, like Kafka's.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    (0..22)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> BrokerMeta {
        BrokerMeta {
            id: 1,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            fenced: false,
            incarnation: 0,
            endpoints: Vec::new(),
        }
    }

    #[test]
    fn image_survives_reopen_with_same_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let id;
        {
            let db = sled::open(dir.path()).unwrap();
            let s = MetadataStore::open(&db, 1, me()).unwrap();
            id = s.image().cluster_id.clone();
            assert_eq!(id.len(), 22);
            let a = s.image().place_replicas(2, 1, 0).unwrap();
            s.submit(&MetadataCommand::CreateTopic {
                name: "t".into(),
                assignments: a,
                configs: Default::default(),
                id: 0,
            })
            .unwrap();
        }
        let db = crate::log::reopen::sled_when_unlocked(dir.path());
        let s = MetadataStore::open(&db, 1, me()).unwrap();
        assert_eq!(s.image().cluster_id, id);
        assert_eq!(s.image().topics["t"].partitions.len(), 2);
    }

    #[test]
    fn a_corrupt_image_is_a_typed_error_that_keeps_its_cause() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert(IMAGE_KEY, &b"{not json"[..])
            .unwrap();
        let Err(e) = MetadataStore::open(&db, 1, me()) else {
            panic!("a corrupt image opened");
        };
        assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
        assert!(e.to_string().contains("restore the data directory"), "{e}");
        let cause = std::error::Error::source(&e).expect("the JSON error is kept");
        assert!(cause.is::<serde_json::Error>());
    }

    #[test]
    fn a_refused_command_stays_the_same_metadata_error() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let s = MetadataStore::open(&db, 1, me()).unwrap();
        let e = s
            .submit(&MetadataCommand::DeleteTopic {
                name: "nope".into(),
            })
            .unwrap_err();
        assert!(matches!(e, MetadataError::UnknownTopic(_)), "{e:?}");
    }
}
