//! Hot reload: watch the plugin folder, wait for a file to settle (editors and `cp` write in
//! pieces), compile and validate it off the data path, then hand it to the pipeline, which
//! swaps it in between batches.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::engine::Runtime;
use super::loader::{is_plugin_file, prepare};
use super::set::Prepared;
use crate::metrics::Metrics;

/// How long a file must stay unchanged before it is loaded.
pub const SETTLE: Duration = Duration::from_millis(150);

/// File events waiting for the watcher loop.
const PATH_QUEUE: usize = 256;

/// A change for the pipeline to apply between batches.
#[derive(Debug)]
pub enum Control {
    /// Add or swap in this plugin.
    Install(Box<Prepared>),
    /// The file was deleted: unload whatever it provided.
    Remove(PathBuf),
}

/// Could not start watching.
#[derive(Debug, thiserror::Error)]
#[error("cannot watch plugin folder {}: {source}", dir.display())]
pub struct WatchError {
    /// The folder.
    pub dir: PathBuf,
    /// Why.
    pub source: notify::Error,
}

pub(crate) fn content_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Watches `dir` until `stop`, sending [`Control`]s. `known` holds content hashes of files
/// already loaded, so touching a file without changing it does not reload it.
pub async fn watch_folder(
    dir: PathBuf,
    runtime: Runtime,
    settings_for: Arc<dyn Fn(&str) -> String + Send + Sync>,
    mut known: HashMap<PathBuf, u64>,
    control: mpsc::Sender<Control>,
    mut stop: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
) -> Result<(), WatchError> {
    // Bounded like every channel: the loop below drains it into `pending` at once, and when
    // it is full notify's own thread waits (it is not an async worker).
    let (tx, mut rx) = mpsc::channel::<PathBuf>(PATH_QUEUE);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only changes count: our own reads of a file raise access events, which would
        // otherwise make every load trigger another.
        if let Ok(event) = event
            && matches!(
                event.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
            )
        {
            for path in event.paths {
                let _ = tx.blocking_send(path);
            }
        }
    })
    .map_err(|source| WatchError {
        dir: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|source| WatchError {
            dir: dir.clone(),
            source,
        })?;
    tracing::info!(dir = %dir.display(), "watching plugin folder");

    let mut pending: HashMap<PathBuf, tokio::time::Instant> = HashMap::new();
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            Some(path) = rx.recv() => {
                if is_plugin_file(&path) {
                    pending.insert(path, tokio::time::Instant::now());
                }
            }
            _ = poll.tick() => {}
            _ = stop.changed() => return Ok(()),
        }
        let settled: Vec<PathBuf> = pending
            .iter()
            .filter(|(_, t)| t.elapsed() >= SETTLE)
            .map(|(p, _)| p.clone())
            .collect();
        for path in settled {
            pending.remove(&path);
            if let Some(msg) = settle(&path, &runtime, &settings_for, &mut known, &metrics).await
                && control.send(msg).await.is_err()
            {
                return Ok(());
            }
        }
    }
}

async fn settle(
    path: &Path,
    runtime: &Runtime,
    settings_for: &Arc<dyn Fn(&str) -> String + Send + Sync>,
    known: &mut HashMap<PathBuf, u64>,
    metrics: &Metrics,
) -> Option<Control> {
    let Ok(bytes) = tokio::fs::read(path).await else {
        known.remove(path)?;
        tracing::info!(file = %path.display(), "plugin file removed; unloading");
        return Some(Control::Remove(path.to_owned()));
    };
    let hash = content_hash(&bytes);
    if known.get(path) == Some(&hash) {
        return None;
    }
    let (rt, p, settings) = (runtime.clone(), path.to_owned(), settings_for.clone());
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || prepare(&rt, &p, &*settings)).await;
    match result {
        Ok(Ok(prepared)) => {
            known.insert(path.to_owned(), hash);
            tracing::info!(file = %path.display(), plugin = %prepared.module.info.name, version = %prepared.module.info.version,
                compile_ms = started.elapsed().as_millis() as u64, "plugin compiled and validated; installing");
            Some(Control::Install(Box::new(prepared)))
        }
        Ok(Err(error)) => {
            // Remember refused bytes too: the same broken file is not re-validated until it
            // changes.
            known.insert(path.to_owned(), hash);
            Metrics::add(&metrics.plugin_rejections, 1);
            let file = path.display().to_string();
            metrics.plugin_event(crate::metrics::Reload::refused(&file, error.to_string()));
            tracing::error!(file = %path.display(), %error, "plugin file refused; whatever version is live keeps running");
            None
        }
        Err(join) => {
            Metrics::add(&metrics.plugin_rejections, 1);
            tracing::error!(file = %path.display(), error = %join, "plugin loading crashed; the previous version keeps running");
            None
        }
    }
}
