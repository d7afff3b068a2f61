//! SQL functions DataFusion lacks that topic data needs: JSON field access on text columns
//! (`json_get`, `json_get_int`, `json_get_float`) and regex group extraction (`regexp_extract`).
//!
//! - `json_get(text, 'a.b.0')`: the value at a dot path (object fields, array indexes) as text:
//!   strings without quotes, anything else as JSON; NULL when the text is not JSON or the path
//!   is missing or null.
//! - `json_get_int(text, path)` / `json_get_float(text, path)`: the value as Int64 / Float64 when it
//!   is a number (or a string holding one), else NULL. Floats are not truncated into integers.
//! - `regexp_extract(text, pattern, group)`: the text of capture group `group` (0 for the whole
//!   match) of the first match, NULL when nothing matches or the group did not take part.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, Int64Builder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::types::{logical_int64, logical_string, NativeType};
use datafusion::common::{exec_err, Result as DfResult};
use datafusion::logical_expr::{
    Coercion, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    TypeSignatureClass, Volatility,
};
use regex::Regex;
use serde_json::Value;

/// The longest compiled regex accepted, in bytes of program (a bound on user patterns).
const MAX_REGEX_BYTES: usize = 1 << 20;

/// Every function of this file, to register on a session.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::new_from_impl(JsonGet::new("json_get", DataType::Utf8)),
        ScalarUDF::new_from_impl(JsonGet::new("json_get_int", DataType::Int64)),
        ScalarUDF::new_from_impl(JsonGet::new("json_get_float", DataType::Float64)),
        ScalarUDF::new_from_impl(RegexpExtract::new()),
    ]
}

fn string() -> Coercion {
    Coercion::new_exact(TypeSignatureClass::Native(logical_string()))
}

/// The rows of `args` as Utf8 arrays of `rows` values (scalars repeated).
fn utf8_args(args: &[ColumnarValue]) -> DfResult<Vec<ArrayRef>> {
    ColumnarValue::values_to_arrays(args)?
        .iter()
        .map(|a| Ok(cast(a, &DataType::Utf8)?))
        .collect()
}

/// `json_get`, `json_get_int` and `json_get_float`: one implementation, three return types.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonGet {
    name: &'static str,
    returns: DataType,
    signature: Signature,
}

impl JsonGet {
    fn new(name: &'static str, returns: DataType) -> JsonGet {
        let signature = Signature::new(
            TypeSignature::Coercible(vec![string(), string()]),
            Volatility::Immutable,
        );
        JsonGet {
            name,
            returns,
            signature,
        }
    }
}

impl ScalarUDFImpl for JsonGet {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = utf8_args(&args.args)?;
        let (texts, paths) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let found = (0..texts.len()).map(|i| {
            if texts.is_null(i) || paths.is_null(i) {
                return None;
            }
            let doc: Value = serde_json::from_str(texts.value(i)).ok()?;
            lookup(&doc, paths.value(i)).filter(|v| !v.is_null()).cloned()
        });
        let out: ArrayRef = match self.returns {
            DataType::Int64 => {
                let mut b = Int64Builder::with_capacity(texts.len());
                found.for_each(|v| b.append_option(v.as_ref().and_then(as_i64)));
                Arc::new(b.finish())
            }
            DataType::Float64 => {
                let mut b = Float64Builder::with_capacity(texts.len());
                found.for_each(|v| b.append_option(v.as_ref().and_then(as_f64)));
                Arc::new(b.finish())
            }
            _ => {
                let mut b = StringBuilder::with_capacity(texts.len(), texts.len() * 8);
                found.for_each(|v| match v {
                    Some(Value::String(s)) => b.append_value(s),
                    Some(other) => b.append_value(other.to_string()),
                    None => b.append_null(),
                });
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The value at a dot path: `a.b` walks object fields, a number walks an array index.
fn lookup<'v>(doc: &'v Value, path: &str) -> Option<&'v Value> {
    let path = path
        .strip_prefix("$.")
        .or_else(|| path.strip_prefix('$'))
        .unwrap_or(path);
    if path.is_empty() {
        return Some(doc);
    }
    path.split('.').try_fold(doc, |v, step| match v {
        Value::Object(map) => map.get(step),
        Value::Array(items) => items.get(step.parse::<usize>().ok()?),
        _ => None,
    })
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `regexp_extract(text, pattern, group)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegexpExtract {
    signature: Signature,
}

impl RegexpExtract {
    fn new() -> RegexpExtract {
        let int64 = Coercion::new_implicit(
            TypeSignatureClass::Native(logical_int64()),
            vec![TypeSignatureClass::Integer],
            NativeType::Int64,
        );
        let signature = Signature::one_of(
            vec![
                TypeSignature::Coercible(vec![string(), string(), int64]),
                TypeSignature::Coercible(vec![string(), string()]),
            ],
            Volatility::Immutable,
        );
        RegexpExtract { signature }
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "regexp_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = cast(&arrays[0], &DataType::Utf8)?;
        let patterns = cast(&arrays[1], &DataType::Utf8)?;
        let groups = match arrays.get(2) {
            Some(g) => Some(cast(g, &DataType::Int64)?),
            None => None,
        };
        let (texts, patterns) = (texts.as_string::<i32>(), patterns.as_string::<i32>());
        let groups = groups
            .as_ref()
            .map(|g| g.as_primitive::<datafusion::arrow::datatypes::Int64Type>());
        let mut compiled: Option<(String, Regex)> = None;
        let mut b = StringBuilder::with_capacity(texts.len(), texts.len() * 8);
        for i in 0..texts.len() {
            let group = match groups {
                Some(g) if g.is_null(i) => None,
                Some(g) => Some(g.value(i)),
                None => Some(1),
            };
            if texts.is_null(i) || patterns.is_null(i) || group.is_none() {
                b.append_null();
                continue;
            }
            let pattern = patterns.value(i);
            if compiled.as_ref().is_none_or(|(p, _)| p != pattern) {
                let re = regex::RegexBuilder::new(pattern).size_limit(MAX_REGEX_BYTES).build();
                match re {
                    Ok(re) => compiled = Some((pattern.to_string(), re)),
                    Err(e) => return exec_err!("regexp_extract: the pattern {pattern:?} is not a valid regex: {e}"),
                }
            }
            let re = &compiled.as_ref().expect("compiled above").1;
            let group = group.expect("checked above");
            let Ok(index) = usize::try_from(group) else {
                return exec_err!("regexp_extract: group {group} is negative");
            };
            if index >= re.captures_len() {
                return exec_err!("regexp_extract: the pattern {pattern:?} has no group {index}");
            }
            let text = re
                .captures(texts.value(i))
                .and_then(|c| c.get(index))
                .map(|m| m.as_str());
            b.append_option(text);
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_walk_objects_and_arrays() {
        let doc: Value = serde_json::from_str(r#"{"a": {"b": [10, {"c": "x"}]}, "n": null}"#).unwrap();
        assert_eq!(lookup(&doc, "a.b.0"), Some(&Value::from(10)));
        assert_eq!(lookup(&doc, "$.a.b.1.c"), Some(&Value::from("x")));
        assert_eq!(lookup(&doc, "a.missing"), None);
        assert_eq!(lookup(&doc, "a.b.x"), None);
        assert_eq!(as_i64(&Value::from("42")), Some(42));
        assert_eq!(as_i64(&Value::from(1.5)), None);
    }
}
