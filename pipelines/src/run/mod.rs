//! Running a validated pipeline: its topics created, one runner per source, transform and sink,
//! all stopped together. The same code runs against the embedded broker and any Kafka cluster,
//! because every runner reaches topics only through `TopicAccess`.

mod transform;

use std::sync::Arc;
use std::time::Duration;

use brook_broker::access::TopicAccess;
use brook_connectors::runtime::produce::ensure_topic;
use brook_connectors::runtime::{
    CheckpointStore, RunnerSettings, SinkRunner, SourceRunner, StepState, StepStatus, Stop,
};
use brook_connectors::{build_sink, build_source, Context, Error, Result};
use brook_engine::format::{Format, FormatSpec};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use transform::TransformRunner;

use crate::model::Pipeline;

/// Which kinds of steps to run; `brook pipeline test` runs transforms only, feeding the source
/// topics itself and reading what sinks would receive.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    /// Run the sources' connectors.
    pub sources: bool,
    /// Run the sinks' connectors.
    pub sinks: bool,
}

impl Parts {
    /// Every step.
    pub const ALL: Parts = Parts {
        sources: true,
        sinks: true,
    };
}

/// How long stopping waits for a step to finish its last write and checkpoint.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// One step as reported by `brook pipeline run` and `serve`.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// "source", "transform" or "sink".
    pub kind: &'static str,
    /// Its state.
    pub state: StepState,
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// Records sent to the dead-letter topic.
    pub records_dead: u64,
}

/// A pipeline whose steps are running.
pub struct RunningPipeline {
    /// The pipeline's name.
    pub name: String,
    stop: watch::Sender<bool>,
    steps: Vec<Step>,
}

struct Step {
    name: String,
    kind: &'static str,
    status: Arc<StepStatus>,
    task: JoinHandle<Result<()>>,
}

/// The step name connectors, checkpoints and groups know a step by: `<pipeline>.<step>`.
pub fn step_id(pipeline: &str, step: &str) -> String {
    format!("{pipeline}.{step}")
}

/// Creates the pipeline's topics and starts its steps.
pub async fn start(
    pipeline: &Pipeline,
    access: Arc<dyn TopicAccess>,
    settings: RunnerSettings,
    parts: Parts,
) -> Result<RunningPipeline> {
    for s in &pipeline.sources {
        ensure_topic(access.as_ref(), &s.topic, s.partitions).await?;
    }
    for t in &pipeline.transforms {
        ensure_topic(access.as_ref(), &t.topic, t.partitions).await?;
    }
    let checkpoints = Arc::new(CheckpointStore::new(access.clone()));
    let (stop_tx, stop) = Stop::new();
    let mut running = RunningPipeline {
        name: pipeline.name.clone(),
        stop: stop_tx,
        steps: Vec::new(),
    };
    let ctx = |step: &str| Context {
        name: step_id(&pipeline.name, step),
        base_dir: pipeline.base_dir.clone(),
    };
    // Build every connector before starting any, so that a bad configuration starts nothing.
    let mut sources = Vec::new();
    for s in &pipeline.sources {
        let connector = build_source(&s.connector, &ctx(&s.name), s.config.clone())?;
        sources.push((s, connector));
    }
    let mut sinks = Vec::new();
    if parts.sinks {
        for s in &pipeline.sinks {
            sinks.push((s, build_sink(&s.connector, &ctx(&s.name), s.config.clone())?));
        }
    }
    let formats: Vec<(String, FormatSpec)> = sources
        .iter()
        .map(|(s, c)| {
            let mut format = c.format();
            if let Some(schema) = &s.schema {
                format.schema = Some(schema.clone());
            }
            (s.name.clone(), format)
        })
        .collect();
    let format_of = |step: &str| -> FormatSpec {
        let declared = formats.iter().find(|(n, _)| n == step).map(|(_, f)| f.clone());
        let mut format = declared.unwrap_or_else(|| FormatSpec::new(Format::Json));
        if format.schema.is_none() {
            format.schema = pipeline.schema_of(step);
        }
        format
    };
    if parts.sources {
        for (s, source) in sources {
            let status = Arc::new(StepStatus::default());
            let runner = SourceRunner {
                name: step_id(&pipeline.name, &s.name),
                source,
                access: access.clone(),
                checkpoints: checkpoints.clone(),
                topic: s.topic.clone(),
                on_error: s.on_error.clone(),
                settings: settings.clone(),
                stop: stop.clone(),
                status: status.clone(),
            };
            running.push(&s.name, "source", status, tokio::spawn(runner.run()));
        }
    }
    for t in &pipeline.transforms {
        let status = Arc::new(StepStatus::default());
        let runner = TransformRunner {
            name: step_id(&pipeline.name, &t.name),
            input: t.input.clone(),
            input_topic: t.input_topic.clone(),
            input_format: format_of(&t.input),
            sql: t.sql.clone(),
            topic: t.topic.clone(),
            on_error: t.on_error.clone(),
            access: access.clone(),
            checkpoints: checkpoints.clone(),
            settings: settings.clone(),
            stop: stop.clone(),
            status: status.clone(),
        };
        running.push(&t.name, "transform", status, tokio::spawn(runner.run()));
    }
    for (s, sink) in sinks {
        let status = Arc::new(StepStatus::default());
        let runner = SinkRunner {
            name: step_id(&pipeline.name, &s.name),
            sink: tokio::sync::Mutex::new(sink),
            access: access.clone(),
            topic: s.input_topic.clone(),
            format: format_of(&s.input),
            on_error: s.on_error.clone(),
            settings: settings.clone(),
            stop: stop.clone(),
            status: status.clone(),
        };
        running.push(&s.name, "sink", status, tokio::spawn(runner.run()));
    }
    tracing::info!(pipeline = %pipeline.name, steps = running.steps.len(), "pipeline started");
    Ok(running)
}

impl RunningPipeline {
    fn push(&mut self, name: &str, kind: &'static str, status: Arc<StepStatus>, task: JoinHandle<Result<()>>) {
        self.steps.push(Step {
            name: name.to_string(),
            kind,
            status,
            task,
        });
    }

    /// Every step's state and counters.
    pub fn report(&self) -> Vec<StepReport> {
        self.steps
            .iter()
            .map(|s| {
                let (records_in, records_out, records_dead) = s.status.counters();
                StepReport {
                    name: s.name.clone(),
                    kind: s.kind,
                    state: s.status.state(),
                    records_in,
                    records_out,
                    records_dead,
                }
            })
            .collect()
    }

    /// The status of step `name`.
    pub fn status(&self, name: &str) -> Option<Arc<StepStatus>> {
        self.steps.iter().find(|s| s.name == name).map(|s| s.status.clone())
    }

    /// The first step that failed, with its error, if any has.
    pub fn failure(&self) -> Option<(String, String)> {
        self.steps.iter().find_map(|s| match s.status.state() {
            StepState::Failed(why) => Some((s.name.clone(), why)),
            _ => None,
        })
    }

    /// Resolves once every step has opened its connector and recovered its position (or has
    /// already ended or failed), so that, for instance, an `http` source takes requests.
    pub async fn started(&self) {
        while self.steps.iter().any(|s| s.status.state() == StepState::Starting) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Resolves when a step fails (with its name and error); runs forever otherwise.
    pub async fn failed(&self) -> (String, String) {
        loop {
            if let Some(f) = self.failure() {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Resolves once every source has ended (stdin at its end, a generator's count) and every
    /// transform and sink has read all there is; never while a source can still produce.
    pub async fn drained(&self) {
        let sources: Vec<&Step> = self.steps.iter().filter(|s| s.kind == "source").collect();
        let others: Vec<&Step> = self.steps.iter().filter(|s| s.kind != "source").collect();
        loop {
            if !sources.is_empty() && sources.iter().all(|s| s.status.state() == StepState::Finished) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A step that found nothing new after everything upstream of it was complete has read
        // everything; one round per level of the pipeline (at most the number of steps) covers
        // every chain of transforms.
        for _ in 0..=others.len() {
            let before: Vec<u64> = others.iter().map(|s| s.status.empty_rounds()).collect();
            loop {
                let advanced = others
                    .iter()
                    .zip(&before)
                    .all(|(s, b)| s.status.empty_rounds() > *b || matches!(s.status.state(), StepState::Failed(_)));
                if advanced {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Stops every step, letting each finish its current write and save its checkpoint, and
    /// returns the first error a step ended with.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        let mut first: Option<Error> = None;
        for step in self.steps {
            let abort = step.task.abort_handle();
            match tokio::time::timeout(STOP_GRACE, step.task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    first.get_or_insert(e);
                }
                Ok(Err(join)) => {
                    first.get_or_insert(Error::Internal(format!("step {} panicked: {join}", step.name)));
                }
                Err(_) => {
                    abort.abort();
                    tracing::warn!(step = %step.name, "step did not stop in time; aborted");
                }
            }
        }
        tracing::info!(pipeline = %self.name, "pipeline stopped");
        first.map_or(Ok(()), Err)
    }
}
