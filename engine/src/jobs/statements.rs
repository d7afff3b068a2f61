//! What Brook's streaming statements do: `CREATE STREAM` records a stream in the catalog (and
//! with `AS SELECT` starts a query into it), `INSERT INTO` starts a query into an existing
//! stream, `SHOW QUERIES` lists them, `DROP STREAM` and `TERMINATE` remove them, and
//! `SELECT ... EMIT CHANGES` tails a stream. Parsing is in `crate::sql::ddl`.

use std::sync::Arc;

use brook_broker::access::TopicSpec;
use datafusion::arrow::array::{ArrayRef, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::Dialect;
use datafusion::logical_expr::{DdlStatement as DfDdl, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::ColumnDef;

use super::{emit_changes, stream_schema, JobManager, OutputWriter, QueryPlan, KEY_COLUMN};
use crate::catalog::{ProcessingGuarantee, QueryDef, StreamDef};
use crate::error::{Error, Result};
use crate::format::{decoder, infer_schema, Format, FormatSpec};
use crate::sql::ddl::{self, CreateStream, DdlStatement, WithOption, PROCESSING_GUARANTEE};
use crate::sql::Output;
use crate::table::{infer_format, sample_values};

/// Runs `statement`, parsed from `sql`, against the catalog and jobs of `jobs`: a message saying
/// what was done, rows (SHOW QUERIES), or rows as they arrive (EMIT CHANGES) until dropped.
pub async fn execute(jobs: &Arc<JobManager>, statement: DdlStatement, sql: &str) -> Result<Output> {
    jobs.catalog().refresh().await?;
    match statement {
        DdlStatement::CreateStream(c) => create_stream(jobs, c, sql).await,
        DdlStatement::DropStream { name, if_exists } => drop_stream(jobs, &name, if_exists).await,
        DdlStatement::EmitChanges { select } => {
            let source = resolve_source(jobs, &select).await?;
            let settings = super::JobSettings::default();
            Ok(Output::Stream(
                emit_changes(jobs.access().clone(), source, &select, settings).await?,
            ))
        }
        DdlStatement::InsertInto {
            target,
            options,
            select,
        } => insert_into(jobs, &target, &options, &select, sql).await,
        DdlStatement::ShowQueries => Ok(Output::Batches(vec![show_queries(jobs)?])),
        DdlStatement::Terminate { query_id } => {
            jobs.stop(&query_id).await?;
            Ok(Output::Message(format!("Terminated query {query_id}")))
        }
    }
}

async fn create_stream(jobs: &Arc<JobManager>, c: CreateStream, sql: &str) -> Result<Output> {
    let catalog = jobs.catalog();
    if catalog.get(&c.name).is_some() {
        if c.if_not_exists {
            return Ok(Output::Message(format!("Stream {} already exists", c.name)));
        }
        return Err(Error::Catalog(format!(
            "stream {} already exists; DROP STREAM {} first",
            c.name, c.name
        )));
    }
    let mut spec = format_spec(&c)?;
    let partitions = match c.option("partitions") {
        None => -1,
        Some(p) => match p.parse::<i32>() {
            Ok(n) if n > 0 => n,
            _ => return Err(c.option_error("partitions", format!("partitions must be a positive number, not {p:?}"))),
        },
    };
    let topic = c.option("topic").unwrap_or(&c.name).to_string();
    let key_column = c.option("key").map(String::from);
    let guarantee = processing_guarantee(&c.options)?;
    let Some(select) = c.select.clone() else {
        if c.option(PROCESSING_GUARANTEE).is_some() {
            return Err(c.option_error(
                PROCESSING_GUARANTEE,
                "processing_guarantee applies to a continuous query: CREATE STREAM ... AS SELECT or INSERT INTO"
                    .to_string(),
            ));
        }
        if !c.columns.is_empty() {
            spec = spec.with_schema(columns_schema(&c.columns).await?);
        }
        ensure_topic(jobs, &topic, partitions).await?;
        let spec = complete(jobs, &topic, spec).await?;
        let schema = decoder(&spec)?.schema();
        if let Some(key) = &key_column {
            if schema.field_with_name(key).is_err() {
                return Err(c.option_error("key", format!("the key column {key} is not a column of the stream")));
            }
        }
        let def = StreamDef {
            name: c.name.clone(),
            topic: topic.clone(),
            format: spec,
            key_column,
        };
        catalog.put(&def).await?;
        return Ok(Output::Message(format!("Created stream {} over topic {topic}", c.name)));
    };
    let source = resolve_source(jobs, &select).await?;
    let plan = QueryPlan::new(&select, &source).await?;
    let result = plan.output_schema();
    spec = spec.with_schema(stream_schema(&result));
    let target = StreamDef {
        name: c.name.clone(),
        topic: topic.clone(),
        format: spec,
        key_column,
    };
    OutputWriter::new(&target, &result)?;
    ensure_topic(jobs, &topic, partitions).await?;
    catalog.put(&target).await?;
    let id = fresh_id(jobs, &format!("csas_{}", c.name), false).await?;
    let def = query_def(id.clone(), sql, select, source, c.name.clone(), guarantee);
    jobs.create(def).await?;
    Ok(Output::Message(format!(
        "Created stream {} over topic {topic} and started query {id}{}",
        c.name,
        guarantee_note(guarantee)
    )))
}

async fn insert_into(
    jobs: &Arc<JobManager>,
    target: &str,
    options: &[WithOption],
    select: &str,
    sql: &str,
) -> Result<Output> {
    let guarantee = processing_guarantee(options)?;
    let catalog = jobs.catalog();
    let stream = catalog.get(target).ok_or_else(|| {
        Error::Catalog(format!(
            "there is no stream {target}; create it with CREATE STREAM {target} ... first"
        ))
    })?;
    let source = resolve_source(jobs, select).await?;
    let plan = QueryPlan::new(select, &source).await?;
    let result = plan.output_schema();
    if let Some(declared) = &stream.format.schema {
        let extra: Vec<&str> = result
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|n| *n != KEY_COLUMN && declared.field_with_name(n).is_err())
            .collect();
        if !extra.is_empty() {
            return Err(Error::Catalog(format!(
                "stream {target} has no column {}; its columns are {}",
                extra.join(", "),
                declared
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    OutputWriter::new(&stream, &result)?;
    let id = fresh_id(jobs, &format!("insert_{target}"), true).await?;
    jobs.create(query_def(
        id.clone(),
        sql,
        select.to_string(),
        source,
        target.to_string(),
        guarantee,
    ))
    .await?;
    Ok(Output::Message(format!(
        "Started query {id} into stream {target}{}",
        guarantee_note(guarantee)
    )))
}

async fn drop_stream(jobs: &Arc<JobManager>, name: &str, if_exists: bool) -> Result<Output> {
    let catalog = jobs.catalog();
    let Some(def) = catalog.get(name) else {
        if if_exists {
            return Ok(Output::Message(format!("Stream {name} does not exist")));
        }
        return Err(Error::Catalog(format!("there is no stream {name}")));
    };
    let queries = catalog.queries();
    if let Some(reader) = queries.iter().find(|q| q.source.name == name && q.target != name) {
        return Err(Error::Catalog(format!(
            "query {} reads stream {name}; TERMINATE {} first",
            reader.id, reader.id
        )));
    }
    let mut terminated = Vec::new();
    for q in queries.iter().filter(|q| q.target == name) {
        jobs.stop(&q.id).await?;
        terminated.push(q.id.clone());
    }
    catalog.remove(name).await?;
    let also = if terminated.is_empty() {
        String::new()
    } else {
        format!(", terminated {}", terminated.join(", "))
    };
    Ok(Output::Message(format!(
        "Dropped stream {name} (topic {} is kept){also}",
        def.topic
    )))
}

fn show_queries(jobs: &JobManager) -> Result<RecordBatch> {
    let list = jobs.list();
    let text = |f: &dyn Fn(&super::JobInfo) -> String| -> ArrayRef {
        Arc::new(StringArray::from(list.iter().map(f).collect::<Vec<_>>()))
    };
    let count = |f: &dyn Fn(&super::JobInfo) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from(list.iter().map(f).collect::<Vec<_>>()))
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("query_id", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("state", DataType::Utf8, false),
        Field::new("records_in", DataType::UInt64, false),
        Field::new("records_out", DataType::UInt64, false),
        Field::new("records_dead", DataType::UInt64, false),
        Field::new("sql", DataType::Utf8, false),
    ]));
    let columns = vec![
        text(&|j| j.id.clone()),
        text(&|j| j.name.clone()),
        text(&|j| j.state.to_string()),
        count(&|j| j.records_in),
        count(&|j| j.records_out),
        count(&|j| j.records_dead),
        text(&|j| j.sql.clone()),
    ];
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// A query id starting with `base` that no query has and whose consumer group has no committed
/// offsets (so that a query created again does not resume where its predecessor stopped):
/// `base` itself unless `numbered`, else `base_1`, `base_2`, ...
async fn fresh_id(jobs: &JobManager, base: &str, numbered: bool) -> Result<String> {
    let taken: Vec<String> = jobs.catalog().queries().into_iter().map(|q| q.id).collect();
    for n in 1..=MAX_ID_ATTEMPTS {
        let id = if n == 1 && !numbered {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        if taken.contains(&id) {
            continue;
        }
        if jobs.access().committed(&super::group_id(&id)).await?.is_empty() {
            return Ok(id);
        }
    }
    Err(Error::Catalog(format!(
        "no free query id after {base}_{MAX_ID_ATTEMPTS}: delete old brook-query-{base}* groups"
    )))
}

/// How many query ids `fresh_id` tries.
const MAX_ID_ATTEMPTS: usize = 1000;

/// What a started query's message adds about its guarantee: nothing for the default.
fn guarantee_note(guarantee: ProcessingGuarantee) -> &'static str {
    match guarantee {
        ProcessingGuarantee::AtLeastOnce => "",
        ProcessingGuarantee::ExactlyOnce => " (exactly once)",
    }
}

/// The `processing_guarantee` option, at least once when absent.
fn processing_guarantee(options: &[WithOption]) -> Result<ProcessingGuarantee> {
    match ddl::option(options, PROCESSING_GUARANTEE) {
        None => Ok(ProcessingGuarantee::default()),
        Some(value) => value
            .parse()
            .map_err(|message| ddl::option_error(options, PROCESSING_GUARANTEE, message)),
    }
}

fn query_def(
    id: String,
    sql: &str,
    select: String,
    source: StreamDef,
    target: String,
    processing_guarantee: ProcessingGuarantee,
) -> QueryDef {
    let created_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    QueryDef {
        id,
        statement: sql.trim().trim_end_matches(';').trim().to_string(),
        select,
        source,
        target,
        created_ms,
        processing_guarantee,
    }
}

/// The format options of a `CREATE STREAM` as a spec (without the schema).
fn format_spec(c: &CreateStream) -> Result<FormatSpec> {
    let format =
        Format::parse(c.option("format").unwrap_or("json")).map_err(|e| c.option_error("format", e.to_string()))?;
    let mut spec = FormatSpec::new(format);
    if let Some(schema) = c.option("avro_schema") {
        spec = spec.with_avro_schema(schema);
    }
    if let Some(path) = c.option("avro_schema_file") {
        let text = std::fs::read_to_string(path).map_err(|e| {
            c.option_error(
                "avro_schema_file",
                format!("cannot read the Avro schema file {path}: {e}"),
            )
        })?;
        spec = spec.with_avro_schema(text);
    }
    if let Some(d) = c.option("delimiter") {
        match d.as_bytes() {
            [b] => spec.csv_delimiter = *b,
            _ => return Err(c.option_error("delimiter", format!("the delimiter must be one byte, not {d:?}"))),
        }
    }
    if let Some(h) = c.option("header") {
        spec.csv_header = match h.to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => return Err(c.option_error("header", format!("header must be true or false, not {h:?}"))),
        };
    }
    Ok(spec)
}

/// The Arrow schema of declared columns, with DataFusion's own mapping of SQL types.
async fn columns_schema(columns: &[ColumnDef]) -> Result<SchemaRef> {
    let list: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let sql = format!("CREATE TABLE brook_declared_columns ({})", list.join(", "));
    match SessionContext::new().state().create_logical_plan(&sql).await? {
        LogicalPlan::Ddl(DfDdl::CreateMemoryTable(t)) => Ok(Arc::new(t.input.schema().as_arrow().clone())),
        other => Err(Error::Schema(format!("the columns planned as {}", other.display()))),
    }
}

/// The stream a query reads: a stream of the catalog, else a topic of that name read in the
/// format a sample of it suggests. Its schema is fixed now, so the job's never changes.
pub(super) async fn resolve_source(jobs: &JobManager, select: &str) -> Result<StreamDef> {
    let state = SessionContext::new().state();
    let statement = state.sql_to_statement(select, &Dialect::Generic)?;
    let tables = state.resolve_table_references(&statement)?;
    let [table] = tables.as_slice() else {
        return Err(Error::Catalog(format!(
            "a continuous query reads exactly one stream, this one reads {}",
            if tables.is_empty() {
                "none".to_string()
            } else {
                tables.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            }
        )));
    };
    let name = table.table().to_string();
    if let Some(mut def) = jobs.catalog().get(&name) {
        def.format = complete(jobs, &def.topic, def.format).await?;
        return Ok(def);
    }
    let topics = jobs.access().topics().await?;
    if !topics.iter().any(|t| t.name == name) {
        return Err(Error::Catalog(format!("there is no stream or topic named {name}")));
    }
    let samples = sample_values(jobs.access(), &name).await?;
    if samples.is_empty() {
        return Err(Error::Schema(format!(
            "topic {name} is empty, so its format cannot be inferred: declare it with \
             CREATE STREAM {name} (columns) WITH (topic = '{name}', format = 'json')"
        )));
    }
    Ok(StreamDef {
        name: name.clone(),
        topic: name,
        format: infer_format(&samples)?,
        key_column: None,
    })
}

/// `spec` with a schema inferred from `topic` when its format needs one and has none.
async fn complete(jobs: &JobManager, topic: &str, spec: FormatSpec) -> Result<FormatSpec> {
    if spec.schema.is_some() || !matches!(spec.format, Format::Json | Format::Csv) {
        return Ok(spec);
    }
    let samples = sample_values(jobs.access(), topic).await?;
    if samples.is_empty() {
        return Err(Error::Schema(format!(
            "topic {topic} is empty, so its columns cannot be inferred: declare them, e.g. (id BIGINT, name TEXT)"
        )));
    }
    let samples: Vec<&[u8]> = samples.iter().map(|s| s.as_ref()).collect();
    let schema = infer_schema(&spec, &samples)?;
    Ok(spec.with_schema(schema))
}

/// Creates `topic` when it does not exist.
async fn ensure_topic(jobs: &JobManager, topic: &str, partitions: i32) -> Result<()> {
    let spec = TopicSpec {
        name: topic.to_string(),
        partitions,
        configs: Vec::new(),
    };
    match jobs.access().create_topic(spec).await {
        Ok(()) | Err(brook_broker::Error::TopicAlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
