//! Splitting one CSV line into fields (RFC 4180 quoting within the line).
//!
//! Records are lines, so a quoted field cannot hold a newline here; such a row is reported as
//! having an unterminated quote.

/// The fields of `line`, split on `delimiter`. A field that starts with `"` is quoted: it ends at
/// the next lone `"`, and `""` inside it is one `"`. Fields are not trimmed.
pub fn split(line: &str, delimiter: u8) -> Result<Vec<String>, String> {
    let bytes = line.as_bytes();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'"') {
            let mut field = Vec::new();
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(format!("field {} has an unterminated quote", fields.len() + 1)),
                    Some(b'"') if bytes.get(i + 1) == Some(&b'"') => {
                        field.push(b'"');
                        i += 2;
                    }
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b) => {
                        field.push(*b);
                        i += 1;
                    }
                }
            }
            // Splitting happened at ASCII bytes only, so the field is still valid UTF-8.
            fields.push(String::from_utf8_lossy(&field).into_owned());
            match bytes.get(i) {
                None => return Ok(fields),
                Some(b) if *b == delimiter => i += 1,
                Some(_) => return Err(format!("field {} has text after its closing quote", fields.len())),
            }
        } else {
            let end = bytes[i..]
                .iter()
                .position(|b| *b == delimiter)
                .map_or(bytes.len(), |p| i + p);
            fields.push(line[i..end].to_string());
            if end == bytes.len() {
                return Ok(fields);
            }
            i = end + 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_hold_delimiters_and_doubled_quotes() {
        assert_eq!(split("a,b,c", b',').unwrap(), ["a", "b", "c"]);
        assert_eq!(split("a,,", b',').unwrap(), ["a", "", ""]);
        assert_eq!(split("", b',').unwrap(), [""]);
        assert_eq!(
            split(r#""x,y","say ""hi""",z"#, b',').unwrap(),
            ["x,y", r#"say "hi""#, "z"]
        );
        assert_eq!(split("é;\"ü\"", b';').unwrap(), ["é", "ü"]);
        assert_eq!(split(r#"a,"b"#, b',').unwrap_err(), "field 2 has an unterminated quote");
        assert_eq!(
            split(r#""a"b,c"#, b',').unwrap_err(),
            "field 1 has text after its closing quote"
        );
    }
}
