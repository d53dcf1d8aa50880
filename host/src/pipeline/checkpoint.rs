//! Checkpoints in band: the processor puts a [`Barrier`] into the sink queue behind the work
//! it covers, and the sink stage, once every sink holds everything before it, hands it to a
//! [`Checkpointer`]. So a stored checkpoint never runs ahead of the outputs: after a crash the
//! input resumes at the checkpoint's position, and what was written after it is written again
//! with the same keys (rows upserted, raw events by id, alerts by `alert_id`).
//!
//! The embedded sources checkpoint into a local folder ([`LocalCheckpoints`]); a Kafka input
//! stores its partitions' states in its state topic and then commits their offsets
//! (`source/kafka/checkpoints.rs`).

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::source::PartitionState;

/// A checkpoint travelling with the work: the task states as of the work before it.
#[derive(Debug)]
pub struct Barrier {
    /// The source the states belong to (a checkpoint of another source is never applied).
    pub source: String,
    /// One state per task.
    pub states: Vec<PartitionState>,
    /// Dropped once the checkpoint is stored or given up: a revoke waits until every clone of
    /// its sender is gone before the partitions move to another member.
    pub done: Vec<std::sync::mpsc::SyncSender<()>>,
}

impl Barrier {
    /// A barrier of `states` with no one waiting for it.
    pub fn new(source: impl Into<String>, states: Vec<PartitionState>) -> Self {
        Barrier {
            source: source.into(),
            states,
            done: Vec::new(),
        }
    }

    /// Folds in a `later` barrier: its states replace this one's for the same tasks, the
    /// other tasks keep theirs (a revoke's barrier covers only the revoked partitions), and
    /// everyone waiting on either is told.
    pub fn merge(&mut self, later: Barrier) {
        for state in later.states {
            let same =
                |s: &PartitionState| s.topic == state.topic && s.partition == state.partition;
            match self.states.iter_mut().find(|s| same(s)) {
                Some(old) => *old = state,
                None => self.states.push(state),
            }
        }
        self.done.extend(later.done);
        self.source = later.source;
    }

    /// Tells whoever waits on this barrier that it is settled (by letting go of their
    /// senders).
    pub fn settle(self) {
        drop(self.done);
    }
}

/// A checkpoint could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file system refused.
    #[error("checkpoint {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The checkpoint could not be encoded.
    #[error("checkpoint of {source_id}: {message}")]
    Encode {
        /// The source.
        source_id: String,
        /// Why.
        message: String,
    },
}

/// Where barriers' states are stored once the sinks confirmed the work before them.
#[async_trait]
pub trait Checkpointer: Send {
    /// Stores the barrier's states durably, replacing the previous checkpoint.
    async fn store(&mut self, barrier: &Barrier) -> Result<(), CheckpointError>;
}

/// The file in the state folder holding the embedded sources' checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint.jsonl";

/// Checkpoints of an embedded source in a local folder (`plugins.state_dir`): one file, written
/// to a temporary name, synced and renamed, so a crash leaves the previous checkpoint or the
/// new one, never a torn one.
#[derive(Debug, Clone)]
pub struct LocalCheckpoints {
    dir: PathBuf,
}

impl LocalCheckpoints {
    /// Checkpoints in `dir` (created on the first store).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LocalCheckpoints { dir: dir.into() }
    }

    /// The checkpoint file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_FILE)
    }

    /// The last checkpoint of `source`, if there is one. A checkpoint of another source, or
    /// an unreadable one, is logged and ignored: the run starts from the beginning.
    pub fn load(&self, source: &str) -> Option<PartitionState> {
        let path = self.path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "cannot read the checkpoint; starting from the beginning");
                return None;
            }
        };
        match decode(&bytes) {
            Ok((saved, _)) if saved != source => {
                tracing::warn!(file = %path.display(), saved = %saved, now = %source, "the checkpoint belongs to another source; it is ignored");
                None
            }
            Ok((_, state)) => Some(state),
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "unreadable checkpoint; starting from the beginning");
                None
            }
        }
    }
}

/// The file's form, two JSON lines: the source (a string), then the task's state in the
/// stored form every store uses (which has no line break), taken as is.
fn decode(bytes: &[u8]) -> Result<(String, PartitionState), String> {
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or("no line break after the source")?;
    let (source, state) = (&bytes[..line_end], &bytes[line_end + 1..]);
    let source: String = serde_json::from_slice(source).map_err(|e| e.to_string())?;
    let state = PartitionState::decode(state.trim_ascii_end(), &"embedded".into())?;
    Ok((source, state))
}

#[async_trait]
impl Checkpointer for LocalCheckpoints {
    async fn store(&mut self, barrier: &Barrier) -> Result<(), CheckpointError> {
        // An embedded source has one task.
        let Some(state) = barrier.states.last() else {
            return Ok(());
        };
        let encode_error = |message: String| CheckpointError::Encode {
            source_id: barrier.source.clone(),
            message,
        };
        let mut bytes =
            serde_json::to_vec(&barrier.source).map_err(|e| encode_error(e.to_string()))?;
        bytes.push(b'\n');
        bytes.extend(state.encode().map_err(encode_error)?);
        bytes.push(b'\n');
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &bytes))
            .await
            .map_err(|e| CheckpointError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
    }
}

/// Writes the checkpoint file durably: temporary file, fsync, rename, fsync of the folder.
fn write_atomically(dir: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    use std::io::Write;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!(".{CHECKPOINT_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    // The rename itself is durable only once the folder is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(next_offset: i64) -> PartitionState {
        PartitionState {
            topic: "embedded".into(),
            partition: 0,
            next_offset,
            watermark: 5_000,
            max_event_ms: 10_000,
            plugins: vec![("counter".into(), vec![1, 2, 3])],
            origins: None,
        }
    }

    #[tokio::test]
    async fn the_latest_checkpoint_of_the_same_source_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LocalCheckpoints::new(dir.path().join("state"));
        assert!(store.load("file a").is_none(), "nothing stored yet");
        for offset in [10, 20] {
            store
                .store(&Barrier::new("file a", vec![state(offset)]))
                .await
                .unwrap();
        }
        assert_eq!(store.load("file a"), Some(state(20)));
        assert_eq!(store.load("file b"), None, "another source's checkpoint");
        std::fs::write(store.path(), b"{torn").unwrap();
        assert_eq!(store.load("file a"), None, "an unreadable checkpoint");
    }

    #[test]
    fn a_merged_barrier_keeps_every_task_and_the_latest_state_of_each() {
        let at = |partition: i32, next_offset: i64| PartitionState {
            partition,
            ..state(next_offset)
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let mut first = Barrier::new("kafka", vec![at(0, 10), at(1, 10)]);
        let mut revoke = Barrier::new("kafka", vec![at(1, 15), at(2, 3)]);
        revoke.done.push(tx);
        first.merge(revoke);
        assert_eq!(first.states, vec![at(0, 10), at(1, 15), at(2, 3)]);
        first.settle();
        assert_eq!(
            rx.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Disconnected),
            "the revoke's waiter is told"
        );
    }
}
