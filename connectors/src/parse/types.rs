//! Field conversions of csv and regex records: the declared `types`, and sniffing for csv.

use datafusion::arrow::datatypes::TimeUnit;
use serde::Deserialize;
use serde_json::Value;

use crate::dates::{days_from_civil, format_timestamp};

/// The type a field of a csv or regex record is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// A 64-bit signed integer.
    Int,
    /// A 64-bit float.
    Float,
    /// `true`/`false` (any case), `1`/`0`.
    Bool,
    /// The text as is.
    String,
    /// A date and time (RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]`, a bare date, or the common log
    /// format `10/Oct/2000:13:55:36 -0700`; UTC when no offset is given), emitted as RFC 3339 in
    /// UTC with milliseconds, which the engine reads into timestamp columns.
    Timestamp,
}

/// Converts `text` to `ty`; an empty text is null for every type but string.
pub fn convert(text: &str, ty: FieldType) -> Result<Value, String> {
    if text.is_empty() && ty != FieldType::String {
        return Ok(Value::Null);
    }
    let trimmed = text.trim();
    match ty {
        FieldType::String => Ok(Value::String(text.to_string())),
        FieldType::Int => trimmed
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| format!("{text:?} is not an integer")),
        FieldType::Float => trimmed
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{text:?} is not a finite number")),
        FieldType::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("{text:?} is not a boolean")),
        },
        FieldType::Timestamp => parse_timestamp_ms(trimmed)
            .map(|ms| Value::String(format_timestamp(ms, TimeUnit::Millisecond)))
            .ok_or_else(|| format!("{text:?} is not a timestamp")),
    }
}

/// Types a csv field by its look: integer, float, boolean, else text; empty is null.
pub fn sniff(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::from(i);
    }
    if looks_numeric(text) {
        if let Some(n) = text.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
            return Value::Number(n);
        }
    }
    match text {
        "true" | "TRUE" | "True" => Value::Bool(true),
        "false" | "FALSE" | "False" => Value::Bool(false),
        _ => Value::String(text.to_string()),
    }
}

/// Whether `text` is made of digits, signs, a point and an exponent only, so that words Rust
/// parses as floats ("inf", "NaN") stay text.
fn looks_numeric(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_digit())
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
}

/// Milliseconds since the epoch of a timestamp in one of the accepted forms.
fn parse_timestamp_ms(text: &str) -> Option<i64> {
    if let Some(ms) = parse_common_log(text) {
        return Some(ms);
    }
    let b = text.as_bytes();
    let (days, mut i) = parse_date(b)?;
    let mut ms = days * 86_400_000;
    if i == b.len() {
        return Some(ms);
    }
    if !matches!(b[i], b'T' | b't' | b' ') {
        return None;
    }
    i += 1;
    let (time_ms, next) = parse_time(b, i)?;
    ms += time_ms;
    let offset_ms = parse_offset(&b[next..])?;
    Some(ms - offset_ms)
}

/// `YYYY-MM-DD` at the start of `b`: days since the epoch and the index after it.
fn parse_date(b: &[u8]) -> Option<(i64, usize)> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    Some((days_from_civil(year, month, day)?, 10))
}

/// `HH:MM:SS[.fraction]` at `i`: ms into the day and the index after it.
fn parse_time(b: &[u8], i: usize) -> Option<(i64, usize)> {
    if b.len() < i + 8 || b[i + 2] != b':' || b[i + 5] != b':' {
        return None;
    }
    let (h, m, s) = (
        digits(&b[i..i + 2])?,
        digits(&b[i + 3..i + 5])?,
        digits(&b[i + 6..i + 8])?,
    );
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut next = i + 8;
    let mut frac_ms = 0;
    if next < b.len() && (b[next] == b'.' || b[next] == b',') {
        next += 1;
        let start = next;
        while next < b.len() && b[next].is_ascii_digit() {
            next += 1;
        }
        if next == start {
            return None;
        }
        let kept = &b[start..(start + 3).min(next)];
        frac_ms = digits(kept)? * 10_i64.pow(3 - kept.len() as u32);
    }
    Some((((h * 60 + m) * 60 + s) * 1000 + frac_ms, next))
}

/// A UTC offset (`Z`, `+HH:MM`, `+HHMM`, `+HH`, or nothing for UTC), in ms.
fn parse_offset(b: &[u8]) -> Option<i64> {
    let b = match b.first() {
        Some(b' ') => &b[1..],
        _ => b,
    };
    match b {
        [] | [b'Z'] | [b'z'] => Some(0),
        [sign @ (b'+' | b'-'), rest @ ..] => {
            let (h, m) = match rest {
                [h1, h2] => (digits(&[*h1, *h2])?, 0),
                [h1, h2, m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
                [h1, h2, b':', m1, m2] => (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?),
                _ => return None,
            };
            let ms = (h * 60 + m) * 60_000;
            Some(if *sign == b'-' { -ms } else { ms })
        }
        _ => None,
    }
}

/// The common log format's `10/Oct/2000:13:55:36 -0700`.
fn parse_common_log(text: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = text.as_bytes();
    if b.len() < 20 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' {
        return None;
    }
    let day = digits(&b[0..2])?;
    let month = MONTHS.iter().position(|m| m.as_bytes() == &b[3..6])? as i64 + 1;
    let year = digits(&b[7..11])?;
    let (time_ms, next) = parse_time(b, 12)?;
    let offset_ms = parse_offset(&b[next..])?;
    Some(days_from_civil(year, month, day)? * 86_400_000 + time_ms - offset_ms)
}

/// The number written by ASCII digits `b`.
fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ts(text: &str) -> Value {
        convert(text, FieldType::Timestamp).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn timestamps_in_the_usual_forms_become_utc_rfc3339() {
        assert_eq!(ts("2024-02-29T12:34:56Z"), json!("2024-02-29T12:34:56.000Z"));
        assert_eq!(ts("2024-02-29T12:34:56.5+01:00"), json!("2024-02-29T11:34:56.500Z"));
        assert_eq!(ts("2024-02-29 12:34:56,123456"), json!("2024-02-29T12:34:56.123Z"));
        assert_eq!(ts("1970-01-01"), json!("1970-01-01T00:00:00.000Z"));
        assert_eq!(ts("1969-12-31T23:59:59.999-0000"), json!("1969-12-31T23:59:59.999Z"));
        assert_eq!(ts("10/Oct/2000:13:55:36 -0700"), json!("2000-10-10T20:55:36.000Z"));
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "yesterday",
            "2024-01-01T25:00:00",
            "2024-01-01T10:00:00+5",
        ] {
            assert!(convert(bad, FieldType::Timestamp).is_err(), "{bad}");
        }
    }

    #[test]
    fn declared_types_convert_or_say_why_not() {
        assert_eq!(convert("42", FieldType::Int).unwrap(), json!(42));
        assert_eq!(convert("", FieldType::Int).unwrap(), Value::Null);
        assert_eq!(convert("", FieldType::String).unwrap(), json!(""));
        assert_eq!(convert("1.5", FieldType::Float).unwrap(), json!(1.5));
        assert_eq!(convert("TRUE", FieldType::Bool).unwrap(), json!(true));
        assert_eq!(convert("0", FieldType::Bool).unwrap(), json!(false));
        let err = convert("4x", FieldType::Int).unwrap_err();
        assert_eq!(err, "\"4x\" is not an integer");
        assert!(convert("NaN", FieldType::Float).is_err());
    }

    #[test]
    fn sniffing_keeps_words_that_look_like_floats_as_text() {
        assert_eq!(sniff("7"), json!(7));
        assert_eq!(sniff("-7.25e1"), json!(-72.5));
        assert_eq!(sniff("true"), json!(true));
        assert_eq!(sniff("inf"), json!("inf"));
        assert_eq!(sniff("NaN"), json!("NaN"));
        assert_eq!(sniff(""), Value::Null);
        assert_eq!(sniff("12 apples"), json!("12 apples"));
    }
}
