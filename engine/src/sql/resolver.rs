//! The DataFusion schema in which every name resolves to a topic, lazily, when a statement
//! names it: declared streams first (CREATE STREAM, or `SqlEngine::declare`), then any topic,
//! read in the format guessed from a sample of it.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use brook_broker::access::TopicAccess;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};

use crate::catalog::Catalog;
use crate::error::Result;
use crate::format::{infer_schema, Format, FormatSpec};
use crate::table::{infer_format, sample_values, DeadLetterSink, ScanCounters, TopicTable};

/// A name declared for this engine only: which topic it reads and how.
#[derive(Debug, Clone)]
pub struct Declared {
    /// The topic.
    pub topic: String,
    /// Its values' format; a json or csv spec without a schema gets one inferred.
    pub spec: FormatSpec,
}

/// Resolves table names to topic tables.
pub struct TopicResolver {
    access: Arc<dyn TopicAccess>,
    catalog: RwLock<Option<Arc<Catalog>>>,
    declared: RwLock<HashMap<String, Declared>>,
    dead_letters: RwLock<Option<DeadLetterSink>>,
    counters: Arc<ScanCounters>,
}

impl fmt::Debug for TopicResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicResolver").finish_non_exhaustive()
    }
}

impl TopicResolver {
    /// A resolver over the topics `access` reaches.
    pub fn new(access: Arc<dyn TopicAccess>) -> TopicResolver {
        TopicResolver {
            access,
            catalog: RwLock::new(None),
            declared: RwLock::new(HashMap::new()),
            dead_letters: RwLock::new(None),
            counters: Arc::default(),
        }
    }

    /// Consults `catalog` for declared streams from now on.
    pub fn set_catalog(&self, catalog: Arc<Catalog>) {
        *self.catalog.write().expect("resolver lock") = Some(catalog);
    }

    /// Declares `name` as `topic` read in `spec`'s format, for this engine only.
    pub fn declare(&self, name: &str, declared: Declared) {
        self.declared
            .write()
            .expect("resolver lock")
            .insert(name.to_string(), declared);
    }

    /// Hands records that do not decode to `sink` from now on.
    pub fn set_dead_letters(&self, sink: Option<DeadLetterSink>) {
        *self.dead_letters.write().expect("resolver lock") = sink;
    }

    /// What the scans of every table resolved here have decoded and skipped so far.
    pub fn counters(&self) -> Arc<ScanCounters> {
        self.counters.clone()
    }

    /// The table `name` names, or None when it is neither declared nor a topic.
    pub async fn resolve(&self, name: &str) -> Result<Option<TopicTable>> {
        let declared = self.declared.read().expect("resolver lock").get(name).cloned();
        let catalog = self.catalog.read().expect("resolver lock").clone();
        // Streams declared with CREATE STREAM come first; then this engine's own declarations.
        let declared = match catalog.and_then(|c| c.get(name)) {
            Some(def) => Some(Declared {
                topic: def.topic,
                spec: def.format,
            }),
            None => declared,
        };
        let (topic, spec) = match declared {
            Some(Declared { topic, spec }) => {
                let spec = self.complete(&topic, spec).await?;
                (topic, spec)
            }
            None => {
                let topics = self.access.topics().await?;
                let Some(info) = topics.into_iter().find(|t| t.name == name) else {
                    return Ok(None);
                };
                let samples = sample_values(&self.access, &info.name).await?;
                (info.name, infer_format(&samples)?)
            }
        };
        let mut table = TopicTable::new(self.access.clone(), topic, spec)?.with_counters(self.counters.clone());
        if let Some(sink) = self.dead_letters.read().expect("resolver lock").clone() {
            table = table.with_dead_letters(sink);
        }
        Ok(Some(table))
    }

    /// `spec` with a schema inferred from the topic when its format needs one and has none.
    async fn complete(&self, topic: &str, spec: FormatSpec) -> Result<FormatSpec> {
        if spec.schema.is_some() || !matches!(spec.format, Format::Json | Format::Csv) {
            return Ok(spec);
        }
        let samples = sample_values(&self.access, topic).await?;
        let samples: Vec<&[u8]> = samples.iter().map(|s| s.as_ref()).collect();
        let schema = infer_schema(&spec, &samples)?;
        Ok(spec.with_schema(schema))
    }
}

#[async_trait]
impl SchemaProvider for TopicResolver {
    fn table_names(&self) -> Vec<String> {
        // Topics are listed with SHOW TOPICS; listing them here would need a blocking call.
        self.declared.read().expect("resolver lock").keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let table = self
            .resolve(name)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(table.map(|t| Arc::new(t) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.declared.read().expect("resolver lock").contains_key(name)
    }
}
