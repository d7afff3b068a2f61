//! `brook sql`: runs SQL over the topics of any Kafka cluster, one statement from the command
//! line or an interactive shell (history, multi-line statements ending with `;`), printing rows
//! as a table, JSON lines or CSV.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use brook_broker::access::{RemoteAccess, TopicAccess};
use brook_broker::client::ClientConfig;
use brook_engine::sql::{Output, SqlEngine};
use brook_engine::Error as EngineError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

/// The most rows a table holds before it is printed and a new one started.
const MAX_TABLE_ROWS: usize = 10_000;
/// How long rows wait for more before they are printed as a table (for streams that pause).
const TABLE_FLUSH_AFTER: Duration = Duration::from_millis(500);
/// The most lines kept in the shell's history file.
const MAX_HISTORY_LINES: usize = 1000;
/// The longest statement the shell gathers, in bytes.
const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// Run SQL over topics.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// How rows are printed.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// The statement to run; without one, an interactive shell starts.
    pub statement: Option<String>,
    /// Run the statement in a `brook serve` through its HTTP API (e.g. http://127.0.0.1:8080),
    /// so that continuous queries start inside that server.
    #[arg(long)]
    pub server: Option<String>,
}

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Boxed tables.
    Table,
    /// One JSON object per row.
    Json,
    /// CSV with a header line.
    Csv,
}

/// Connects, then runs the statement or the shell.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if let Some(server) = &args.server {
        let statement = args
            .statement
            .as_deref()
            .context("--server runs one statement given on the command line")?;
        let format = match args.format {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
        };
        return super::sql_remote::run(server, statement, format).await;
    }
    let config = ClientConfig::new(args.bootstrap_server.split(',').map(str::trim));
    let access = RemoteAccess::connect(config)
        .await
        .with_context(|| format!("connecting to {}", args.bootstrap_server))?;
    let access: Arc<dyn TopicAccess> = Arc::new(access);
    let engine = SqlEngine::new(access);
    match args.statement {
        Some(statement) => {
            let result = match engine.execute(&statement).await {
                Ok(output) => print(output, args.format).await,
                Err(e) => Err(anyhow::anyhow!(describe_error(&statement, &e))),
            };
            report_skipped(&engine, 0);
            result
        }
        None => shell(engine, args.format).await,
    }
}

/// Prints `e`, and under a positioned error the statement's line with a caret at the column.
fn describe_error(statement: &str, e: &EngineError) -> String {
    if let EngineError::InvalidStatement {
        line: Some(line),
        column: Some(column),
        ..
    } = e
    {
        if let Some(text) = statement.lines().nth((*line as usize).saturating_sub(1)) {
            let pad = " ".repeat((*column as usize).saturating_sub(1));
            return format!("{e}\n  {text}\n  {pad}^");
        }
    }
    e.to_string()
}

/// Says on stderr how many records did not decode since `before` (they were skipped).
fn report_skipped(engine: &SqlEngine, before: u64) {
    let skipped = engine.counters().skipped().saturating_sub(before);
    if skipped > 0 {
        eprintln!("note: {skipped} record(s) did not decode in their topic's format and were skipped");
    }
}

/// Prints what a statement returned, in `format`.
async fn print(output: Output, format: Format) -> anyhow::Result<()> {
    match output {
        Output::Message(m) => {
            println!("{m}");
            Ok(())
        }
        Output::Batches(batches) => {
            let schema = batches.first().map(|b| b.schema());
            let stream = futures::stream::iter(batches.into_iter().map(Ok));
            match schema {
                Some(schema) => {
                    let adapter = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream);
                    print_stream(Box::pin(adapter), format).await
                }
                None => {
                    println!("0 rows");
                    Ok(())
                }
            }
        }
        Output::Stream(stream) => print_stream(stream, format).await,
    }
}

/// Prints rows as they arrive; tables are printed when the rows end, when one is full, or when
/// no row has come for a moment (a stream that follows a topic).
async fn print_stream(mut stream: SendableRecordBatchStream, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0usize;
    let mut total = 0usize;
    let mut csv = (format == Format::Csv).then(|| datafusion::arrow::csv::WriterBuilder::new().with_header(true));
    let mut csv_writer = None;
    loop {
        let next = if format == Format::Table && pending_rows > 0 {
            match tokio::time::timeout(TABLE_FLUSH_AFTER, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    flush_table(&mut pending, &mut pending_rows)?;
                    continue;
                }
            }
        } else {
            stream.next().await
        };
        let Some(batch) = next else { break };
        let batch = batch.map_err(brook_engine::sql::from_datafusion)?;
        total += batch.num_rows();
        match format {
            Format::Table => {
                pending_rows += batch.num_rows();
                pending.push(batch);
                if pending_rows >= MAX_TABLE_ROWS {
                    flush_table(&mut pending, &mut pending_rows)?;
                }
            }
            Format::Json => {
                let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
                writer.write(&batch)?;
                writer.finish()?;
                out.flush()?;
            }
            Format::Csv => {
                let writer =
                    csv_writer.get_or_insert_with(|| csv.take().expect("one builder").build(std::io::stdout()));
                writer.write(&nested_as_text(&batch)?)?;
                out.flush()?;
            }
        }
    }
    if format == Format::Table {
        if pending.is_empty() && total == 0 {
            let schema = stream.schema();
            pending.push(RecordBatch::new_empty(schema));
        }
        flush_table(&mut pending, &mut pending_rows)?;
        println!("{total} row{}", if total == 1 { "" } else { "s" });
    }
    Ok(())
}

/// `batch` with its nested columns (lists, structs, maps), which CSV cannot hold, as text.
fn nested_as_text(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use datafusion::arrow::array::{ArrayRef, StringBuilder};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    if !batch.schema().fields().iter().any(|f| f.data_type().is_nested()) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if !field.data_type().is_nested() {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
            continue;
        }
        let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())?;
        let mut text = StringBuilder::new();
        for i in 0..column.len() {
            if column.is_null(i) {
                text.append_null();
            } else {
                text.append_value(formatter.value(i).to_string());
            }
        }
        fields.push(Field::new(
            field.name(),
            datafusion::arrow::datatypes::DataType::Utf8,
            true,
        ));
        columns.push(std::sync::Arc::new(text.finish()));
    }
    Ok(RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)?)
}

fn flush_table(pending: &mut Vec<RecordBatch>, rows: &mut usize) -> anyhow::Result<()> {
    if !pending.is_empty() {
        println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(pending)?);
    }
    pending.clear();
    *rows = 0;
    Ok(())
}

/// The interactive shell: reads statements ending with `;` (SHOW TOPICS and DESCRIBE need none),
/// runs each, and stops at `\q`, `exit`, `quit` or end of input. Ctrl-C stops a running query.
async fn shell(engine: SqlEngine, format: Format) -> anyhow::Result<()> {
    let config = rustyline::Config::builder()
        .max_history_size(MAX_HISTORY_LINES)?
        .build();
    let mut editor = DefaultEditor::with_config(config)?;
    let history = std::env::var_os("HOME").map(|home| std::path::Path::new(&home).join(".brook_sql_history"));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!("Brook SQL. Statements end with ';'. SHOW TOPICS; DESCRIBE topic; \\q to quit.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "brook> " } else { "   ..> " };
        let (back, line) = tokio::task::spawn_blocking(move || {
            let line = editor.readline(prompt);
            (editor, line)
        })
        .await?;
        editor = back;
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && matches!(trimmed, "\\q" | "exit" | "quit") {
            break;
        }
        if trimmed.is_empty() && buffer.is_empty() {
            continue;
        }
        if !buffer.is_empty() {
            buffer.push('\n');
        }
        buffer.push_str(&line);
        if buffer.len() > MAX_STATEMENT_BYTES {
            eprintln!("error: the statement is longer than {MAX_STATEMENT_BYTES} bytes; discarded");
            buffer.clear();
            continue;
        }
        let complete = trimmed.ends_with(';') || brook_engine::sql::parse_meta(&buffer).is_some();
        if !complete {
            continue;
        }
        let statement = std::mem::take(&mut buffer);
        let _ = editor.add_history_entry(statement.as_str());
        let run = async {
            let output = engine
                .execute(&statement)
                .await
                .map_err(|e| anyhow::anyhow!(describe_error(&statement, &e)))?;
            print(output, format).await
        };
        let skipped_before = engine.counters().skipped();
        tokio::select! {
            result = run => {
                if let Err(e) = result {
                    eprintln!("error: {e:#}");
                }
            }
            _ = tokio::signal::ctrl_c() => eprintln!("cancelled"),
        }
        report_skipped(&engine, skipped_before);
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}
