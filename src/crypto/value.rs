//! The data tree every store parses into, shaped like sops's own tree.
//!
//! Invariants: mapping keys are strings; comments are items of the collection they belong
//! to (`Key::Comment` in a mapping, `Value::Comment` in a sequence), in document order.
//! Scalars carry the type sops gives them, which decides both their `type:` tag and the
//! bytes that are encrypted and hashed into the MAC.

/// A mapping key, or a comment standing between mapping entries.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    Name(String),
    Comment(String),
}

/// One node of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A timestamp, kept as its RFC 3339 text (what sops encrypts and prints).
    Time(String),
    /// A comment line inside a sequence (or the value slot of a `Key::Comment`).
    Comment(String),
    Map(Vec<(Key, Value)>),
    Seq(Vec<Value>),
}

impl Value {
    /// The sops `type:` tag of a leaf, or None for things that are never encrypted.
    pub fn type_tag(&self) -> Option<&'static str> {
        match self {
            Value::Str(_) => Some("str"),
            Value::Int(_) => Some("int"),
            Value::Float(_) => Some("float"),
            Value::Bool(_) => Some("bool"),
            Value::Time(_) => Some("time"),
            Value::Comment(_) => Some("comment"),
            _ => None,
        }
    }

    /// The bytes sops encrypts and hashes for a leaf (its `ToBytes`).
    pub fn leaf_bytes(&self) -> Option<Vec<u8>> {
        Some(match self {
            Value::Str(s) | Value::Time(s) | Value::Comment(s) => s.as_bytes().to_vec(),
            Value::Int(i) => i.to_string().into_bytes(),
            Value::Float(f) => format_float_f(*f).into_bytes(),
            Value::Bool(b) => (if *b { "True" } else { "False" }).as_bytes().to_vec(),
            _ => return None,
        })
    }

    /// Rebuild a leaf from decrypted bytes and its `type:` tag.
    pub fn from_leaf(tag: &str, bytes: &[u8]) -> Result<Value, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "value is not UTF-8".to_string())?;
        Ok(match tag {
            "str" | "bytes" => Value::Str(text.to_string()),
            "comment" => Value::Comment(text.to_string()),
            "time" => Value::Time(text.to_string()),
            "int" => Value::Int(
                text.parse()
                    .map_err(|_| format!("invalid int value {:?}", text.len()))?,
            ),
            "float" => Value::Float(parse_go_float(text).ok_or("invalid float value")?),
            "bool" => Value::Bool(parse_go_bool(text).ok_or("invalid bool value")?),
            other => return Err(format!("unknown value type {other:?}")),
        })
    }

    /// Number of nodes below and including this one (for size limits).
    pub fn node_count(&self) -> usize {
        match self {
            Value::Map(items) => 1 + items.iter().map(|(_, v)| v.node_count()).sum::<usize>(),
            Value::Seq(items) => 1 + items.iter().map(Value::node_count).sum::<usize>(),
            _ => 1,
        }
    }

    /// The same tree with every comment removed (data equality ignores comments).
    pub fn without_comments(&self) -> Value {
        match self {
            Value::Map(items) => Value::Map(
                items
                    .iter()
                    .filter(|(k, _)| matches!(k, Key::Name(_)))
                    .map(|(k, v)| (k.clone(), v.without_comments()))
                    .collect(),
            ),
            Value::Seq(items) => Value::Seq(
                items
                    .iter()
                    .filter(|v| !matches!(v, Value::Comment(_)))
                    .map(Value::without_comments)
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// Data equality as a reader of the printed file sees it: NaN equals NaN, and an
    /// integral float equals the int it prints as (go-yaml prints 1000.0 as `1000`).
    pub fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits() || a == b,
            (Value::Float(f), Value::Int(i)) | (Value::Int(i), Value::Float(f)) => *f == *i as f64,
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka == kb && va.same(vb))
            }
            (Value::Seq(a), Value::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
            }
            (a, b) => a == b,
        }
    }

    /// Look a key up in a mapping.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(items) => items.iter().find_map(|(k, v)| match k {
                Key::Name(n) if n == key => Some(v),
                _ => None,
            }),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Documents equal under `Value::same`.
pub fn same_docs(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest round-trip digits, no exponent.
pub fn format_float_f(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's Display is shortest round-trip and never uses an exponent.
        format!("{f}")
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 64)`, which go-yaml uses to print floats.
pub fn format_float_g(f: f64) -> String {
    if !f.is_finite() {
        return format_float_f(f);
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Shortest digits and decimal exponent via Rust's `{:e}` (also shortest round-trip).
    let e = format!("{f:e}");
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go switches to an exponent outside [-4, 6) when printing the shortest digits.
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{:02}", exp.abs())
    } else {
        format!("{f}")
    }
}

/// Go's encoding/json float text: plain decimal unless tiny or huge.
pub fn format_float_json(f: f64) -> String {
    let a = f.abs();
    if a != 0.0 && !(1e-6..1e21).contains(&a) {
        let e = format!("{f:e}");
        let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mant}e{sign}{}", exp.abs())
    } else {
        format_float_f(f)
    }
}

/// Go's `strconv.ParseFloat` for the texts sops writes (plus its Inf/NaN spellings).
pub fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_formats() {
        assert_eq!(format_float_f(2.5), "2.5");
        assert_eq!(format_float_f(1e20), "100000000000000000000");
        assert_eq!(format_float_f(8080.0), "8080");
        assert_eq!(format_float_g(1000.0), "1000");
        assert_eq!(
            format_float_g(1.2345678901234568e29),
            "1.2345678901234568e+29"
        );
        assert_eq!(format_float_g(0.00001), "1e-05");
        assert_eq!(format_float_g(2.5), "2.5");
        assert_eq!(format_float_g(1e6), "1e+06");
        assert_eq!(format_float_json(1e21), "1e+21");
        assert_eq!(format_float_json(12.5), "12.5");
    }
}
