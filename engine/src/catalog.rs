//! The catalog of streams and continuous queries, kept in the compacted topic `_brook_catalog`
//! so that definitions survive restarts and are shared by every `brook` process on a cluster.
//!
//! Each definition is one record: key `stream/<name>` or `query/<id>`, value the definition as
//! JSON, and a tombstone (no value) when it is removed. A catalog reads the topic from the start
//! when it opens and follows it afterwards ([`Catalog::refresh`], [`Catalog::wait_for_change`]),
//! so a definition written by any client (a `brook sql` against a remote cluster, another
//! worker) reaches every process. Name checks are read-then-write: two clients creating the same
//! name at once both succeed and the later record wins.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use brook_broker::access::{OutRecord, TopicAccess, TopicSpec};
use bytes::Bytes;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{Format, FormatSpec};

/// The compacted topic holding the catalog.
pub const CATALOG_TOPIC: &str = "_brook_catalog";
/// The most bytes one catalog fetch asks for.
const FETCH_MAX_BYTES: usize = 1 << 20;

/// A stream: a topic with a format, a schema and a key column.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(into = "StoredStream", try_from = "StoredStream")]
pub struct StreamDef {
    /// The stream's name, as SQL refers to it.
    pub name: String,
    /// The topic holding its records.
    pub topic: String,
    /// How its values are encoded, with the declared or derived schema.
    pub format: FormatSpec,
    /// The column whose value becomes each record's key, if any.
    pub key_column: Option<String>,
}

/// A continuous query: a SELECT over a source stream writing into a target stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryDef {
    /// The query's id (`csas_<target>` or `insert_<target>_<n>`), unique in the cluster.
    pub id: String,
    /// The statement as the user wrote it.
    pub statement: String,
    /// The SELECT the job runs over each micro-batch.
    pub select: String,
    /// The stream it reads, as it was when the query was created (so that the query keeps
    /// reading the same topic in the same format whatever later happens to the stream).
    pub source: StreamDef,
    /// The stream it writes.
    pub target: String,
    /// When it was created, in ms since the epoch.
    pub created_ms: i64,
    /// How often each input's output is written. Absent from records written before it existed
    /// (they run at least once), and left out when it is the default so that older processes
    /// still read the definition.
    #[serde(default, skip_serializing_if = "ProcessingGuarantee::is_default")]
    pub processing_guarantee: ProcessingGuarantee,
}

impl PartialEq for QueryDef {
    /// Two definitions are the same query when they have the same id and were created at the
    /// same time from the same statement.
    fn eq(&self, other: &Self) -> bool {
        (
            &self.id,
            &self.statement,
            &self.select,
            &self.target,
            self.created_ms,
            self.processing_guarantee,
        ) == (
            &other.id,
            &other.statement,
            &other.select,
            &other.target,
            other.created_ms,
            other.processing_guarantee,
        )
    }
}

/// A query's `processing_guarantee` (Kafka Streams' name for the same choice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    /// Outputs are acknowledged before input offsets are committed: after a crash, the inputs
    /// after the last commit are processed again and their outputs written twice.
    #[default]
    AtLeastOnce,
    /// Each micro-batch's outputs, dead letters and input offsets are written in one Kafka
    /// transaction and the input is read read_committed: read_committed readers of the output
    /// see each input's output once.
    ExactlyOnce,
}

impl ProcessingGuarantee {
    /// The values `WITH (processing_guarantee = ...)` accepts.
    pub const NAMES: [&'static str; 2] = ["at_least_once", "exactly_once"];

    fn is_default(&self) -> bool {
        *self == ProcessingGuarantee::AtLeastOnce
    }

    /// The option's value as written in SQL.
    pub fn name(self) -> &'static str {
        match self {
            ProcessingGuarantee::AtLeastOnce => "at_least_once",
            ProcessingGuarantee::ExactlyOnce => "exactly_once",
        }
    }
}

impl FromStr for ProcessingGuarantee {
    type Err = String;

    /// Parses an option value, ignoring case; the error names the accepted values.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "at_least_once" => Ok(ProcessingGuarantee::AtLeastOnce),
            "exactly_once" => Ok(ProcessingGuarantee::ExactlyOnce),
            _ => Err(format!(
                "unknown processing_guarantee {s:?}: expected {}",
                Self::NAMES.join(" or ")
            )),
        }
    }
}

impl Eq for QueryDef {}

impl From<StreamDef> for StoredStream {
    fn from(def: StreamDef) -> Self {
        StoredStream::from_def(&def)
    }
}

impl TryFrom<StoredStream> for StreamDef {
    type Error = Error;
    fn try_from(stored: StoredStream) -> Result<Self> {
        stored.into_def()
    }
}

/// A StreamDef as stored: FormatSpec spelled out in plain types.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredStream {
    name: String,
    topic: String,
    format: String,
    key_column: Option<String>,
    columns: Option<Vec<StoredColumn>>,
    avro_schema: Option<String>,
    csv_delimiter: u8,
    csv_header: bool,
}

/// One column as stored: its Arrow type in Arrow's own text form (`Int64`, `Utf8`, ...).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredColumn {
    name: String,
    data_type: String,
    nullable: bool,
}

impl StoredStream {
    fn from_def(def: &StreamDef) -> Self {
        StoredStream {
            name: def.name.clone(),
            topic: def.topic.clone(),
            format: def.format.format.name().to_string(),
            key_column: def.key_column.clone(),
            columns: def.format.schema.as_ref().map(|s| {
                s.fields()
                    .iter()
                    .map(|f| StoredColumn {
                        name: f.name().clone(),
                        data_type: f.data_type().to_string(),
                        nullable: f.is_nullable(),
                    })
                    .collect()
            }),
            avro_schema: def.format.avro_schema.clone(),
            csv_delimiter: def.format.csv_delimiter,
            csv_header: def.format.csv_header,
        }
    }

    fn into_def(self) -> Result<StreamDef> {
        let mut format = FormatSpec::new(Format::parse(&self.format)?);
        if let Some(columns) = self.columns {
            let mut fields = Vec::with_capacity(columns.len());
            for c in columns {
                let data_type = DataType::from_str(&c.data_type).map_err(|e| {
                    Error::Schema(format!(
                        "stream {} column {} has type {:?}: {e}",
                        self.name, c.name, c.data_type
                    ))
                })?;
                fields.push(Field::new(c.name, data_type, c.nullable));
            }
            format = format.with_schema(Arc::new(Schema::new(fields)));
        }
        format.avro_schema = self.avro_schema;
        format.csv_delimiter = self.csv_delimiter;
        format.csv_header = self.csv_header;
        Ok(StreamDef {
            name: self.name,
            topic: self.topic,
            format,
            key_column: self.key_column,
        })
    }
}

/// What the catalog holds in memory: the topic read up to `next_offset`.
#[derive(Default)]
struct State {
    streams: BTreeMap<String, StreamDef>,
    queries: BTreeMap<String, QueryDef>,
    next_offset: i64,
}

/// Stream and query definitions, read from and written to [`CATALOG_TOPIC`].
pub struct Catalog {
    access: Arc<dyn TopicAccess>,
    state: Mutex<State>,
    /// Held while reading the topic, so that records are applied once and in order.
    reading: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// Opens the catalog: creates the topic when missing and reads it to its end.
    pub async fn open(access: Arc<dyn TopicAccess>) -> Result<Arc<Catalog>> {
        let spec = TopicSpec {
            name: CATALOG_TOPIC.to_string(),
            partitions: 1,
            configs: vec![("cleanup.policy".to_string(), "compact".to_string())],
        };
        match access.create_topic(spec).await {
            Ok(()) | Err(brook_broker::Error::TopicAlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let catalog = Arc::new(Catalog {
            access,
            state: Mutex::new(State::default()),
            reading: Default::default(),
        });
        catalog.refresh().await?;
        Ok(catalog)
    }

    /// The stream named `name`.
    pub fn get(&self, name: &str) -> Option<StreamDef> {
        self.state.lock().expect("catalog lock").streams.get(name).cloned()
    }

    /// Every stream, by name.
    pub fn all(&self) -> Vec<StreamDef> {
        self.state
            .lock()
            .expect("catalog lock")
            .streams
            .values()
            .cloned()
            .collect()
    }

    /// The query with id `id`.
    pub fn query(&self, id: &str) -> Option<QueryDef> {
        self.state.lock().expect("catalog lock").queries.get(id).cloned()
    }

    /// Every query, by id.
    pub fn queries(&self) -> Vec<QueryDef> {
        self.state
            .lock()
            .expect("catalog lock")
            .queries
            .values()
            .cloned()
            .collect()
    }

    /// Stores a stream definition (replacing one of the same name) and waits until it is read back.
    pub async fn put(&self, def: &StreamDef) -> Result<()> {
        let value = serde_json::to_vec(def).expect("a stream definition serializes");
        self.write(format!("stream/{}", def.name), Some(value)).await
    }

    /// Removes a stream definition.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.write(format!("stream/{name}"), None).await
    }

    /// Stores a query definition and waits until it is read back.
    pub async fn put_query(&self, def: &QueryDef) -> Result<()> {
        let value = serde_json::to_vec(def).expect("a query definition serializes");
        self.write(format!("query/{}", def.id), Some(value)).await
    }

    /// Removes a query definition; every process running it stops it.
    pub async fn remove_query(&self, id: &str) -> Result<()> {
        self.write(format!("query/{id}"), None).await
    }

    /// Reads the records written since the last read, without waiting; true when any arrived.
    pub async fn refresh(&self) -> Result<bool> {
        self.read(0).await
    }

    /// Waits up to `wait_ms` for records written by anyone and applies them; true when any arrived.
    pub async fn wait_for_change(&self, wait_ms: u64) -> Result<bool> {
        self.read(wait_ms).await
    }

    async fn write(&self, key: String, value: Option<Vec<u8>>) -> Result<()> {
        let record = OutRecord {
            partition: Some(0),
            key: Some(Bytes::from(key)),
            value: value.map(Bytes::from),
            ..OutRecord::default()
        };
        let delivered = self.access.produce(CATALOG_TOPIC, vec![record]).await?;
        let offset = delivered.first().map(|d| d.offset).unwrap_or(0);
        while self.state.lock().expect("catalog lock").next_offset <= offset {
            self.read(0).await?;
        }
        Ok(())
    }

    /// Fetches from the current position to the end of the log, waiting up to `wait_ms` for the
    /// first records when there are none.
    async fn read(&self, wait_ms: u64) -> Result<bool> {
        let _reading = self.reading.lock().await;
        let mut changed = false;
        let mut wait_ms = wait_ms;
        loop {
            let from = self.state.lock().expect("catalog lock").next_offset;
            let fetched = match self
                .access
                .fetch(CATALOG_TOPIC, 0, from, FETCH_MAX_BYTES, wait_ms)
                .await
            {
                Ok(f) => f,
                Err(brook_broker::Error::OffsetOutOfRange { .. }) => {
                    // Compaction or retention moved the log start past us: read from its start.
                    let start = self
                        .access
                        .list_offsets(CATALOG_TOPIC, brook_broker::access::OffsetSpec::Earliest);
                    let start = start.await?.first().map(|(_, o)| *o).unwrap_or(0);
                    self.state.lock().expect("catalog lock").next_offset = start;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut state = self.state.lock().expect("catalog lock");
            for record in &fetched.records {
                if record.offset < state.next_offset {
                    continue;
                }
                state.next_offset = record.offset + 1;
                changed = true;
                apply(&mut state, record.key.as_deref(), record.value.as_deref());
            }
            if fetched.records.is_empty() || state.next_offset >= fetched.high_watermark {
                if state.next_offset < fetched.high_watermark && fetched.records.is_empty() {
                    // Only control records or compacted gaps were left: skip past them.
                    state.next_offset = fetched.high_watermark;
                }
                return Ok(changed);
            }
            wait_ms = 0;
        }
    }
}

/// Applies one catalog record; records that do not parse are logged and skipped, so that one
/// bad definition written by a newer or broken client cannot stop every server.
fn apply(state: &mut State, key: Option<&[u8]>, value: Option<&[u8]>) {
    let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
        tracing::warn!(topic = CATALOG_TOPIC, "skipping a catalog record without a UTF-8 key");
        return;
    };
    if let Some(name) = key.strip_prefix("stream/") {
        match value.map(serde_json::from_slice::<StreamDef>) {
            None => {
                state.streams.remove(name);
            }
            Some(Ok(def)) => {
                state.streams.insert(name.to_string(), def);
            }
            Some(Err(e)) => tracing::warn!(key, error = %e, "skipping a stream definition that does not parse"),
        }
    } else if let Some(id) = key.strip_prefix("query/") {
        match value.map(serde_json::from_slice::<QueryDef>) {
            None => {
                state.queries.remove(id);
            }
            Some(Ok(def)) => {
                state.queries.insert(id.to_string(), def);
            }
            Some(Err(e)) => tracing::warn!(key, error = %e, "skipping a query definition that does not parse"),
        }
    } else {
        tracing::warn!(key, "skipping a catalog record with an unknown key");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_definitions_round_trip_through_their_stored_form() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("url", DataType::Utf8, true),
            Field::new(
                "ts",
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None),
                true,
            ),
        ]));
        let def = StreamDef {
            name: "clicks".into(),
            topic: "clicks-topic".into(),
            format: FormatSpec::new(Format::Csv).with_schema(schema.clone()),
            key_column: Some("user_id".into()),
        };
        let json = serde_json::to_vec(&StoredStream::from_def(&def)).unwrap();
        let back = serde_json::from_slice::<StoredStream>(&json)
            .unwrap()
            .into_def()
            .unwrap();
        assert_eq!(back.name, "clicks");
        assert_eq!(back.topic, "clicks-topic");
        assert_eq!(back.format.format, Format::Csv);
        assert_eq!(back.format.schema.as_deref(), Some(schema.as_ref()));
        assert_eq!(back.key_column.as_deref(), Some("user_id"));
    }

    #[test]
    fn records_apply_in_order_and_tombstones_remove() {
        let mut state = State::default();
        let q = QueryDef {
            id: "csas_x".into(),
            statement: "CREATE STREAM x ...".into(),
            select: "SELECT * FROM y".into(),
            source: StreamDef {
                name: "y".into(),
                topic: "y".into(),
                format: FormatSpec::new(Format::Lines),
                key_column: None,
            },
            target: "x".into(),
            created_ms: 1,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
        };
        let json = serde_json::to_vec(&q).unwrap();
        assert!(String::from_utf8_lossy(&json).contains(r#""source":{"name":"y","topic":"y","format":"lines""#));
        assert!(
            !String::from_utf8_lossy(&json).contains("processing_guarantee"),
            "the default is left out, so that older processes read the record"
        );
        apply(&mut state, Some(b"query/csas_x"), Some(&json));
        apply(&mut state, Some(b"query/broken"), Some(b"{"));
        apply(&mut state, Some(b"what/ever"), Some(b"{}"));
        assert_eq!(state.queries.values().cloned().collect::<Vec<_>>(), vec![q]);
        apply(&mut state, Some(b"query/csas_x"), None);
        assert!(state.queries.is_empty());
    }

    #[test]
    fn the_processing_guarantee_round_trips_and_defaults_for_old_records() {
        let source = r#"{"name":"y","topic":"y","format":"lines","key_column":null,"columns":null,"avro_schema":null,"csv_delimiter":44,"csv_header":false}"#;
        let old = format!(
            r#"{{"id":"csas_x","statement":"s","select":"SELECT * FROM y","source":{source},"target":"x","created_ms":1}}"#
        );
        let def: QueryDef = serde_json::from_str(&old).expect("a record written before the field existed");
        assert_eq!(def.processing_guarantee, ProcessingGuarantee::AtLeastOnce);
        let exactly = QueryDef {
            processing_guarantee: ProcessingGuarantee::ExactlyOnce,
            ..def.clone()
        };
        let json = serde_json::to_string(&exactly).unwrap();
        assert!(json.contains(r#""processing_guarantee":"exactly_once""#), "{json}");
        let back: QueryDef = serde_json::from_str(&json).unwrap();
        assert_eq!(back.processing_guarantee, ProcessingGuarantee::ExactlyOnce);
        assert_ne!(back, def, "a changed guarantee is a changed query");
        assert_eq!("Exactly_Once".parse(), Ok(ProcessingGuarantee::ExactlyOnce));
        let unknown = "twice".parse::<ProcessingGuarantee>().unwrap_err();
        assert!(unknown.contains("at_least_once or exactly_once"), "{unknown}");
    }
}
