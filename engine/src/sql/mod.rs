//! SQL over topics: [`SqlEngine`] runs a statement against the topics one [`TopicAccess`]
//! reaches, every topic a table ([`crate::table::TopicTable`]) resolved when a statement names it.
//!
//! A statement goes, in order, to: the statements about topics (`SHOW TOPICS`, `DESCRIBE`,
//! in `meta.rs`), Brook's streaming statements (`CREATE STREAM`, `INSERT INTO`, `SHOW QUERIES`,
//! `DROP STREAM`, `TERMINATE`, `... EMIT CHANGES`, in `ddl.rs`), and DataFusion for the rest
//! (queries only: DataFusion's own DDL and DML are refused).

pub mod ddl;
mod meta;
mod position;
mod resolver;
pub mod udf;

use std::sync::Arc;

use brook_broker::access::TopicAccess;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::physical_plan::SendableRecordBatchStream;

pub use meta::{parse as parse_meta, MetaStatement};
pub use position::from_datafusion;
pub use resolver::{Declared, TopicResolver};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::FormatSpec;
use crate::table::{DeadLetterSink, TopicTable};

/// What a statement returns.
pub enum Output {
    /// Rows, all at hand.
    Batches(Vec<RecordBatch>),
    /// Rows as they are read; a bounded scan ends, `EMIT CHANGES` runs until dropped.
    Stream(SendableRecordBatchStream),
    /// A statement's acknowledgement, e.g. "stream created".
    Message(String),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Batches(b) => write!(f, "Batches({} batches)", b.len()),
            Output::Stream(_) => write!(f, "Stream"),
            Output::Message(m) => write!(f, "Message({m:?})"),
        }
    }
}

/// Runs SQL statements over topics.
pub struct SqlEngine {
    access: Arc<dyn TopicAccess>,
    ctx: SessionContext,
    resolver: Arc<TopicResolver>,
    /// The catalog and jobs streaming statements use: attached with `with_jobs`, else opened on
    /// the first streaming statement.
    jobs: tokio::sync::OnceCell<Arc<crate::jobs::JobManager>>,
}

/// The most memory one query's operators may reserve.
pub const MAX_QUERY_MEMORY_BYTES: usize = 1 << 30;

impl SqlEngine {
    /// An engine over the topics `access` reaches, with Brook's functions registered.
    pub fn new(access: Arc<dyn TopicAccess>) -> SqlEngine {
        let mut config = SessionConfig::new().with_information_schema(false);
        // Spans let planning errors (an unknown column, say) point at the statement.
        config.options_mut().sql_parser.collect_spans = true;
        // A bound on what one query may hold (sorts, aggregates, joins): past it the query fails
        // with a resources-exhausted error instead of taking the server (and its broker) down.
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(MAX_QUERY_MEMORY_BYTES, 1.0)
            .build_arc()
            .expect("a memory-limited runtime builds");
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        for f in udf::all() {
            ctx.register_udf(f);
        }
        let resolver = Arc::new(TopicResolver::new(access.clone()));
        let default_catalog = ctx
            .catalog("datafusion")
            .expect("DataFusion creates its default catalog");
        default_catalog
            .register_schema("public", resolver.clone())
            .expect("the default catalog takes schemas");
        SqlEngine {
            access,
            ctx,
            resolver,
            jobs: tokio::sync::OnceCell::new(),
        }
    }

    /// The same engine, resolving streams declared with CREATE STREAM through `catalog` first.
    pub fn with_catalog(self, catalog: Arc<Catalog>) -> SqlEngine {
        self.resolver.set_catalog(catalog);
        self
    }

    /// The same engine, running streaming statements against `jobs` (and its catalog).
    pub fn with_jobs(self, jobs: Arc<crate::jobs::JobManager>) -> SqlEngine {
        self.resolver.set_catalog(jobs.catalog().clone());
        let _ = self.jobs.set(jobs);
        self
    }

    /// The job manager streaming statements use, opening the catalog on first use.
    pub async fn jobs(&self) -> Result<&Arc<crate::jobs::JobManager>> {
        self.jobs
            .get_or_try_init(|| async {
                let catalog = Catalog::open(self.access.clone()).await?;
                self.resolver.set_catalog(catalog.clone());
                let settings = crate::jobs::JobSettings::default();
                Ok::<_, Error>(crate::jobs::JobManager::new(self.access.clone(), catalog, settings))
            })
            .await
    }

    /// Runs one of Brook's streaming statements (see `ddl.rs` and `crate::jobs::statements`).
    async fn run_ddl(&self, statement: ddl::DdlStatement, sql: &str) -> Result<Output> {
        crate::jobs::statements::execute(self.jobs().await?, statement, sql).await
    }

    /// Hands records that do not decode to `sink` (a dead-letter writer) from now on.
    pub fn set_dead_letters(&self, sink: Option<DeadLetterSink>) {
        self.resolver.set_dead_letters(sink);
    }

    /// Declares `name` as `topic` read in `spec`'s format, for this engine only (a json or csv
    /// spec without a schema gets one inferred when a statement names it).
    pub fn declare(&self, name: &str, topic: &str, spec: FormatSpec) {
        self.resolver.declare(
            name,
            Declared {
                topic: topic.to_string(),
                spec,
            },
        );
    }

    /// What this engine's scans have decoded and skipped (records that did not decode) so far.
    pub fn counters(&self) -> Arc<crate::table::ScanCounters> {
        self.resolver.counters()
    }

    /// The topics this engine reads.
    pub fn access(&self) -> &Arc<dyn TopicAccess> {
        &self.access
    }

    /// The DataFusion session statements are planned in.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The table `name` resolves to now, or None when it is neither a stream nor a topic.
    pub async fn table(&self, name: &str) -> Result<Option<TopicTable>> {
        self.resolver.resolve(name).await
    }

    /// Runs one statement. Queries return a stream of their rows.
    pub async fn execute(&self, sql: &str) -> Result<Output> {
        if let Some(statement) = meta::parse(sql) {
            return Ok(Output::Batches(vec![
                meta::run(&statement, &self.access, &self.resolver).await?,
            ]));
        }
        if let Some(statement) = ddl::parse(sql)? {
            return self.run_ddl(statement, sql).await;
        }
        self.query(sql).await
    }

    /// Plans and starts a query with DataFusion.
    pub async fn query(&self, sql: &str) -> Result<Output> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let frame = self
            .ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|e| position::at_end_if_truncated(from_datafusion(e), sql))?;
        let stream = frame.execute_stream().await.map_err(from_datafusion)?;
        Ok(Output::Stream(stream))
    }

    /// Runs `sql` and collects every row (for tests and small results).
    pub async fn collect(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        match self.execute(sql).await? {
            Output::Batches(batches) => Ok(batches),
            Output::Stream(stream) => datafusion::physical_plan::common::collect(stream)
                .await
                .map_err(from_datafusion),
            Output::Message(m) => Err(Error::InvalidStatement {
                message: format!("the statement returns no rows ({m})"),
                line: None,
                column: None,
            }),
        }
    }
}
