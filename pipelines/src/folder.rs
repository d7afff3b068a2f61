//! `brook serve --pipelines DIR`: runs every pipeline file (`*.yaml`, `*.yml`) in a folder,
//! starts files that appear, restarts a file's pipeline when its content changes, and stops
//! it when the file goes. A file that does not validate is reported with its diagnostics and,
//! if an earlier version of it runs, that version keeps running.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use brook_broker::access::TopicAccess;
use brook_connectors::runtime::{RunnerSettings, Stop};

use crate::run::{self, Parts, RunningPipeline};

/// How often the folder is scanned for changes, in ms.
pub const SCAN_INTERVAL_MS: u64 = 2000;

/// The most pipeline files one folder runs.
pub const MAX_FILES: usize = 256;

/// A file the folder has seen: its content hash, and its pipeline when running.
struct Known {
    hash: u64,
    running: Option<RunningPipeline>,
}

/// Runs the folder's pipelines until `stop`, then stops them all.
pub async fn watch(dir: PathBuf, access: Arc<dyn TopicAccess>, settings: RunnerSettings, stop: Stop) {
    let mut known: BTreeMap<PathBuf, Known> = BTreeMap::new();
    tracing::info!(dir = %dir.display(), "watching the pipelines folder");
    loop {
        scan(&dir, &access, &settings, &mut known).await;
        tokio::select! {
            _ = stop.wait() => break,
            _ = tokio::time::sleep(std::time::Duration::from_millis(SCAN_INTERVAL_MS)) => {}
        }
    }
    for (path, k) in known {
        if let Some(running) = k.running {
            if let Err(e) = running.stop().await {
                tracing::warn!(file = %path.display(), error = %e, "pipeline stopped with an error");
            }
        }
    }
}

/// The pipeline files of `dir`, sorted, at most [`MAX_FILES`].
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    if files.len() > MAX_FILES {
        tracing::warn!(dir = %dir.display(), files = files.len(), max = MAX_FILES, "too many pipeline files; running the first ones");
        files.truncate(MAX_FILES);
    }
    files
}

async fn scan(
    dir: &Path,
    access: &Arc<dyn TopicAccess>,
    settings: &RunnerSettings,
    known: &mut BTreeMap<PathBuf, Known>,
) {
    let present = files(dir);
    let gone: Vec<PathBuf> = known.keys().filter(|p| !present.contains(p)).cloned().collect();
    for path in gone {
        if let Some(Known {
            running: Some(running), ..
        }) = known.remove(&path)
        {
            tracing::info!(file = %path.display(), pipeline = %running.name, "pipeline file removed; stopping it");
            if let Err(e) = running.stop().await {
                tracing::warn!(file = %path.display(), error = %e, "pipeline stopped with an error");
            }
        }
    }
    for path in present {
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        text.hash(&mut hasher);
        let hash = hasher.finish();
        if known.get(&path).is_some_and(|k| k.hash == hash) {
            continue;
        }
        let pipeline = match crate::load(&path) {
            Ok(p) => p,
            Err(diagnostics) => {
                tracing::error!(file = %path.display(), "pipeline file is invalid; an earlier version keeps running if there is one:\n{diagnostics}");
                let running = known.remove(&path).and_then(|k| k.running);
                known.insert(path, Known { hash, running });
                continue;
            }
        };
        let names: BTreeSet<&str> = known
            .iter()
            .filter(|(p, _)| **p != path)
            .filter_map(|(_, k)| k.running.as_ref().map(|r| r.name.as_str()))
            .collect();
        if names.contains(pipeline.name.as_str()) {
            tracing::error!(file = %path.display(), pipeline = %pipeline.name, "another file in the folder runs a pipeline of this name; not starting it");
            known.insert(path, Known { hash, running: None });
            continue;
        }
        if let Some(Known { running: Some(old), .. }) = known.remove(&path) {
            tracing::info!(file = %path.display(), pipeline = %old.name, "pipeline file changed; restarting it");
            if let Err(e) = old.stop().await {
                tracing::warn!(file = %path.display(), error = %e, "pipeline stopped with an error");
            }
        }
        let running = match run::start(&pipeline, access.clone(), settings.clone(), Parts::ALL).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(file = %path.display(), pipeline = %pipeline.name, error = %e, "pipeline did not start");
                None
            }
        };
        known.insert(path, Known { hash, running });
    }
}
