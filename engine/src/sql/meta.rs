//! The statements about topics themselves, answered before DataFusion sees the text:
//! `SHOW TOPICS` (or `SHOW TABLES`) and `DESCRIBE name` (or `DESC name`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::resolver::TopicResolver;
use crate::error::{Error, Result};
use brook_broker::access::TopicAccess;

/// A statement about topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaStatement {
    /// `SHOW TOPICS`: every topic but Kafka's and Brook's internal ones, with its partition count.
    ShowTopics,
    /// `DESCRIBE name`: the columns of a table, with their types and nullability.
    Describe(String),
}

/// The statement `sql` is, if it is one of these; names are lowercased unless double-quoted,
/// as DataFusion does.
pub fn parse(sql: &str) -> Option<MetaStatement> {
    let sql = sql.trim().trim_end_matches(';').trim();
    let mut words = sql.split_whitespace();
    let first = words.next()?.to_ascii_lowercase();
    let second = words.next();
    let rest = words.next();
    match (first.as_str(), second, rest) {
        ("show", Some(w), None) if w.eq_ignore_ascii_case("topics") || w.eq_ignore_ascii_case("tables") => {
            Some(MetaStatement::ShowTopics)
        }
        ("describe" | "desc", Some(name), None) => Some(MetaStatement::Describe(ident(name))),
        _ => None,
    }
}

fn ident(name: &str) -> String {
    match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(quoted) => quoted.replace("\"\"", "\""),
        None => name.to_lowercase(),
    }
}

/// Runs `statement`, answering with one batch.
pub async fn run(
    statement: &MetaStatement,
    access: &Arc<dyn TopicAccess>,
    resolver: &TopicResolver,
) -> Result<RecordBatch> {
    match statement {
        MetaStatement::ShowTopics => {
            let mut topics = access.topics().await?;
            topics.retain(|t| !t.internal && t.name != crate::catalog::CATALOG_TOPIC);
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            let names: ArrayRef = Arc::new(StringArray::from_iter_values(topics.iter().map(|t| t.name.as_str())));
            let partitions: ArrayRef = Arc::new(Int32Array::from_iter_values(topics.iter().map(|t| t.partitions)));
            let schema = Schema::new(vec![
                Field::new("topic", DataType::Utf8, false),
                Field::new("partitions", DataType::Int32, false),
            ]);
            Ok(RecordBatch::try_new(Arc::new(schema), vec![names, partitions])?)
        }
        MetaStatement::Describe(name) => {
            let table = resolver
                .resolve(name)
                .await?
                .ok_or_else(|| Error::Catalog(format!("no topic or stream is named {name:?}")))?;
            let schema = datafusion::catalog::TableProvider::schema(&table);
            let fields = schema.fields();
            let column = |f: &dyn Fn(&Field) -> String| -> ArrayRef {
                Arc::new(StringArray::from_iter_values(fields.iter().map(|field| f(field))))
            };
            let columns = vec![
                column(&|f| f.name().clone()),
                column(&|f| f.data_type().to_string()),
                column(&|f| if f.is_nullable() { "YES" } else { "NO" }.to_string()),
                column(&|_| table.format().format.name().to_string()),
            ];
            let schema = Schema::new(vec![
                Field::new("column_name", DataType::Utf8, false),
                Field::new("data_type", DataType::Utf8, false),
                Field::new("is_nullable", DataType::Utf8, false),
                Field::new("format", DataType::Utf8, false),
            ]);
            Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_show_and_describe_only() {
        assert_eq!(parse(" show Topics ;"), Some(MetaStatement::ShowTopics));
        assert_eq!(parse("SHOW TABLES"), Some(MetaStatement::ShowTopics));
        assert_eq!(parse("DESCRIBE Access"), Some(MetaStatement::Describe("access".into())));
        assert_eq!(
            parse("desc \"My-Topic\";"),
            Some(MetaStatement::Describe("My-Topic".into()))
        );
        assert_eq!(parse("SELECT 1"), None);
        assert_eq!(parse("DESCRIBE SELECT 1"), None);
    }
}
