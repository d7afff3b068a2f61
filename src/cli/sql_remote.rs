//! `brook sql --server URL`: sends statements to a running `brook serve` over its HTTP API,
//! so that continuous queries start inside that server. A minimal HTTP/1.1 client over a tokio
//! TcpStream is enough for local JSON requests and adds no dependency.

use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest response read, in bytes (the server bounds rows per response).
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An HTTP response: the status code and the body.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Splits `http://host:port[/prefix]` into the address and the path prefix.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = match url.strip_prefix("http://") {
        Some(rest) => rest,
        None if url.contains("://") => bail!("--server {url:?}: only http:// URLs are supported"),
        None => url,
    };
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        bail!("--server {url:?} has no host");
    }
    let authority = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, prefix.to_string()))
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub async fn request(server: &str, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<HttpResponse> {
    let (authority, prefix) = split_url(server)?;
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
        .await
        .with_context(|| format!("connecting to {authority}: timed out"))?
        .with_context(|| format!("connecting to {authority}"))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {prefix}{path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut raw)
        .await
        .with_context(|| format!("reading the response from {authority}"))?;
    if raw.len() as u64 > MAX_RESPONSE_BYTES {
        bail!("the response from {authority} is larger than {MAX_RESPONSE_BYTES} bytes");
    }
    parse_response(&raw)
}

/// Parses a whole HTTP/1.1 response: status line, headers, and a plain or chunked body.
pub fn parse_response(raw: &[u8]) -> anyhow::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the server's response has no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).context("the response headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if name == "content-length" {
                length = value.parse::<usize>().ok();
            }
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)
            .context("the response body is shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("truncated chunked body")?;
        let size_text = std::str::from_utf8(&rest[..eol])?
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        let size = usize::from_str_radix(size_text, 16).with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(rest.get(..size).context("truncated chunk")?);
        rest = rest.get(size + 2..).context("truncated chunk")?;
    }
}

/// Sends a request and returns its JSON body; a non-2xx answer becomes an error with the
/// server's message (and the statement position, when the server gave one).
pub async fn call(server: &str, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let response = request(server, method, path, body).await?;
    let value: Value = serde_json::from_slice(&response.body).with_context(|| {
        format!(
            "the server answered {} with a body that is not JSON: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )
    })?;
    if !(200..300).contains(&response.status) {
        let message = value["error"].as_str().unwrap_or("no message").to_string();
        bail!("server answered {}: {message}", response.status);
    }
    Ok(value)
}

/// Runs one statement on the server and returns its JSON answer.
pub async fn execute(server: &str, sql: &str) -> anyhow::Result<Value> {
    call(server, "POST", "/v1/statements", Some(&json!({ "sql": sql }))).await
}

/// Runs one statement on the server and prints its answer as `table`, `json` or `csv`.
pub async fn run(server: &str, sql: &str, format: &str) -> anyhow::Result<()> {
    let answer = execute(server, sql).await?;
    print!("{}", render(&answer, format)?);
    if answer["truncated"] == json!(true) {
        eprintln!("(output truncated by the server's row limit)");
    }
    Ok(())
}

/// A statement's answer as text in `format`.
pub fn render(answer: &Value, format: &str) -> anyhow::Result<String> {
    if let Some(message) = answer["message"].as_str() {
        return Ok(format!("{message}\n"));
    }
    let columns: Vec<String> = answer["columns"]
        .as_array()
        .map(|c| c.iter().map(|v| v.as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default();
    let rows: &[Value] = answer["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let cells = |row: &Value| -> Vec<Value> { row.as_array().cloned().unwrap_or_default() };
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::new();
    match format {
        "json" => {
            for row in rows {
                // Written by hand so that keys keep the column order.
                let pairs: Vec<String> = columns
                    .iter()
                    .zip(cells(row))
                    .map(|(c, v)| format!("{}:{v}", Value::String(c.clone())))
                    .collect();
                out.push_str(&format!("{{{}}}", pairs.join(",")));
                out.push('\n');
            }
        }
        "csv" => {
            let quote = |s: String| {
                if s.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s
                }
            };
            out.push_str(&columns.iter().cloned().map(quote).collect::<Vec<_>>().join(","));
            out.push('\n');
            for row in rows {
                out.push_str(&cells(row).iter().map(|v| quote(text(v))).collect::<Vec<_>>().join(","));
                out.push('\n');
            }
        }
        "table" => {
            let body: Vec<Vec<String>> = rows.iter().map(|r| cells(r).iter().map(text).collect()).collect();
            let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
            for row in &body {
                for (i, cell) in row.iter().enumerate() {
                    if let Some(w) = widths.get_mut(i) {
                        *w = (*w).max(cell.chars().count());
                    }
                }
            }
            let line = |cells: &[String]| -> String {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}", w = *w))
                    .collect();
                format!("| {} |\n", padded.join(" | "))
            };
            let rule = format!(
                "+{}+\n",
                widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("+")
            );
            out.push_str(&rule);
            out.push_str(&line(&columns));
            out.push_str(&rule);
            for row in &body {
                out.push_str(&line(row));
            }
            out.push_str(&rule);
            out.push_str(&format!(
                "{} row{}\n",
                body.len(),
                if body.len() == 1 { "" } else { "s" }
            ));
        }
        other => bail!("unknown output format {other:?}: use table, json or csv"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_prefix() {
        assert_eq!(
            split_url("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080".into(), "".into())
        );
        assert_eq!(
            split_url("localhost/api/").unwrap(),
            ("localhost:80".into(), "/api".into())
        );
        assert!(split_url("https://x").is_err());
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let plain = parse_response(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((plain.status, plain.body.as_slice()), (400, b"{}".as_slice()));
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, b"{\"a\":1}");
    }

    #[test]
    fn answers_render_as_table_json_and_csv() {
        let answer = json!({"columns": ["status", "n"], "rows": [[500, 3], [200, null]]});
        assert_eq!(
            render(&answer, "json").unwrap(),
            "{\"status\":500,\"n\":3}\n{\"status\":200,\"n\":null}\n"
        );
        assert_eq!(render(&answer, "csv").unwrap(), "status,n\n500,3\n200,\n");
        assert!(render(&answer, "table").unwrap().contains("| 500    | 3 |"));
        assert_eq!(render(&json!({"message": "ok"}), "table").unwrap(), "ok\n");
    }
}
