//! Argument validation against the tool schemas of [`crate::catalogue`] (the subset of JSON
//! Schema they use: type, properties, required, additionalProperties, enum, min/max,
//! minLength/maxLength, minItems/maxItems, items, format uuid), so a wrong type or a missing
//! field is an `INVALID_ARGUMENT` tool error before any call — never a panic.

use serde_json::{Map, Value};

/// Why the arguments are invalid: the JSON path of the argument and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub path: String,
    pub message: String,
    /// True when the violated rule is the UUID format of a session id.
    pub session_id: bool,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.path, self.message)
    }
}

/// True for a UUID in the canonical 8-4-4-4-12 hex form (any case).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// An integral JSON number (also `5.0`) as i64.
fn as_integer(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn fail(path: &str, message: String) -> Invalid {
    Invalid {
        path: path.to_owned(),
        message,
        session_id: false,
    }
}

/// Validate `value` against `schema`; `path` names it in messages.
pub fn check(schema: &Value, value: &Value, path: &str) -> Result<(), Invalid> {
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let ok = match t {
            "integer" => as_integer(value).is_some(),
            "number" => value.is_number(),
            other => type_name(value) == other,
        };
        if !ok {
            return Err(fail(
                path,
                format!("must be of type {t}, got {}", type_name(value)),
            ));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return Err(fail(path, format!("must be one of {}", list.join(", "))));
        }
    }
    match value {
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if n < min {
                    return Err(fail(
                        path,
                        if min == 1 {
                            "must not be empty".to_owned()
                        } else {
                            format!("must be at least {min} characters long")
                        },
                    ));
                }
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if n > max {
                    return Err(fail(
                        path,
                        format!("must be at most {max} characters long (got {n})"),
                    ));
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("uuid") && !is_uuid(s) {
                let mut e = fail(
                    path,
                    "must be a full UUID (8-4-4-4-12 hex digits)".to_owned(),
                );
                e.session_id = path == "sessionId";
                return Err(e);
            }
        }
        Value::Number(_) => {
            let x = value.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if x < min {
                    return Err(fail(path, format!("must be ≥ {min}")));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if x > max {
                    return Err(fail(path, format!("must be ≤ {max}")));
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    return Err(fail(path, format!("must have at least {min} item(s)")));
                }
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    return Err(fail(path, format!("must have at most {max} items")));
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::Object(map) => check_object(schema, map, path)?,
        _ => {}
    }
    Ok(())
}

fn check_object(schema: &Value, map: &Map<String, Value>, path: &str) -> Result<(), Invalid> {
    let empty = Map::new();
    let props = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for k in req.iter().filter_map(Value::as_str) {
            if !map.contains_key(k) {
                let t = props
                    .get(k)
                    .and_then(|p| p.get("type"))
                    .and_then(Value::as_str)
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default();
                return Err(fail(&join(k), format!("is required{t}")));
            }
        }
    }
    for (k, v) in map {
        match props.get(k) {
            Some(p) => {
                // An explicit null for an optional argument means "not given".
                let required = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .is_some_and(|r| r.iter().any(|x| x == k));
                if v.is_null() && !required && p.get("type").is_some() {
                    continue;
                }
                check(p, v, &join(k))?;
            }
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                let known: Vec<&str> = props.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    "this tool takes no arguments".to_owned()
                } else {
                    format!("known: {}", known.join(", "))
                };
                return Err(fail(&join(k), format!("is not a known argument ({hint})")));
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules() {
        let s = json!({"type":"object","properties":{
            "sessionId":{"type":"string","format":"uuid"},
            "limit":{"type":"integer","minimum":1,"maximum":200},
            "items":{"type":"array","minItems":1,"items":{"type":"object","properties":{"a":{"type":"string","minLength":1}},"required":["a"],"additionalProperties":false}}
        },"required":["sessionId"],"additionalProperties":false});
        let id = "0b6f1b7e-1c1a-4c55-9d2e-7f1b9b0f3a11";
        assert!(check(&s, &json!({"sessionId": id}), "").is_ok());
        assert!(check(&s, &json!({"sessionId": id, "limit": 5.0}), "").is_ok());
        assert!(check(&s, &json!({"sessionId": id, "limit": null}), "").is_ok());
        let e = check(&s, &json!({}), "").unwrap_err();
        assert_eq!(e.path, "sessionId");
        let e = check(&s, &json!({"sessionId": "abc"}), "").unwrap_err();
        assert!(e.session_id);
        let e = check(&s, &json!({"sessionId": id, "limit": "5"}), "").unwrap_err();
        assert_eq!(e.to_string(), "`limit` must be of type integer, got string");
        let e = check(&s, &json!({"sessionId": id, "limit": 0}), "").unwrap_err();
        assert_eq!(e.path, "limit");
        let e = check(&s, &json!({"sessionId": id, "x": 1}), "").unwrap_err();
        assert!(e.message.contains("not a known argument"), "{e}");
        let e = check(&s, &json!({"sessionId": id, "items": [{"a": ""}]}), "").unwrap_err();
        assert_eq!(e.path, "items[0].a");
        let e = check(&s, &json!([1]), "").unwrap_err();
        assert!(e.message.contains("type object"));
    }
}
