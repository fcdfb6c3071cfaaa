//! JSON reading and writing as sops does it: ordered objects, numbers as int or float,
//! tab-indented output with Go's string escaping. The reader also reports where the
//! top-level `"sops"` member sits, so its text can be kept byte for byte.

use super::error::{Error, Result};
use super::value::{format_float_json, Key, Value};

/// A parsed top-level object, with the byte span of the value of its `"sops"` member.
pub struct Parsed {
    pub root: Value,
    pub sops_value_span: Option<(usize, usize)>,
}

pub fn parse(input: &str, max_depth: usize) -> Result<Parsed> {
    let mut p = P {
        b: input.as_bytes(),
        s: input,
        pos: 0,
        depth: 0,
        max_depth,
        sops_span: None,
    };
    p.ws();
    if p.peek() != Some(b'{') {
        return Err(Error::Json(
            "sops supports JSON files with a top-level object only".into(),
        ));
    }
    let root = p.value(true)?;
    p.ws();
    if p.pos != p.b.len() {
        return Err(p.err("trailing characters after the top-level object"));
    }
    Ok(Parsed {
        root,
        sops_value_span: p.sops_span,
    })
}

struct P<'a> {
    b: &'a [u8],
    s: &'a str,
    pos: usize,
    depth: usize,
    max_depth: usize,
    sops_span: Option<(usize, usize)>,
}

impl P<'_> {
    fn err(&self, m: &str) -> Error {
        let line = self.b[..self.pos.min(self.b.len())]
            .iter()
            .filter(|&&c| c == b'\n')
            .count()
            + 1;
        Error::Json(format!("line {line}: {m}"))
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }
    fn expect(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.err("nesting too deep"));
        }
        Ok(())
    }

    /// After a member or element: `,` (more follow) or `close` (true: closed).
    fn separator(&mut self, close: u8) -> Result<bool> {
        self.ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(self.err(&format!("expected ',' or '{}'", close as char))),
        }
    }

    fn value(&mut self, top: bool) -> Result<Value> {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.enter()?;
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        if self.peek() != Some(b'"') {
                            return Err(self.err("expected a string key"));
                        }
                        let k = self.string()?;
                        self.expect(b':')?;
                        self.ws();
                        let start = self.pos;
                        let v = self.value(false)?;
                        if top && k == "sops" {
                            self.sops_span = Some((start, self.pos));
                        }
                        items.push((Key::Name(k), v));
                        if self.separator(b'}')? {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Ok(Value::Map(items))
            }
            Some(b'[') => {
                self.enter()?;
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value(false)?);
                        if self.separator(b']')? {
                            break;
                        }
                    }
                }
                self.depth -= 1;
                Ok(Value::Seq(items))
            }
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') if self.b[self.pos..].starts_with(b"true") => {
                self.pos += 4;
                Ok(Value::Bool(true))
            }
            Some(b'f') if self.b[self.pos..].starts_with(b"false") => {
                self.pos += 5;
                Ok(Value::Bool(false))
            }
            Some(b'n') if self.b[self.pos..].starts_with(b"null") => {
                self.pos += 4;
                Ok(Value::Null)
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expected a value")),
        }
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = |p: &mut Self| {
            let s = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos - s
        };
        if digits(self) == 0 {
            return Err(self.err("invalid number"));
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            float = true;
            if digits(self) == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            float = true;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("invalid number"));
            }
        }
        let text = &self.s[start..self.pos];
        // sops decodes every JSON number as a float64: `-0` keeps its sign, and integers
        // beyond 2^53 round (what it hashes into the MAC and prints); others stay ints.
        if !float {
            if let Ok(i) = text.parse::<i64>() {
                let exact = i.unsigned_abs() <= 1 << 53;
                if exact && !(i == 0 && text.starts_with('-')) {
                    return Ok(Value::Int(i));
                }
            }
        }
        // Go's encoding/json (and so sops) refuses a number beyond float64's range.
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::Float(f)),
            Ok(_) => Err(self.err("number out of range")),
            Err(_) => Err(self.err("invalid number")),
        }
    }

    fn string(&mut self) -> Result<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(c) = self.peek() {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.s[start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\x08'),
                        b'f' => out.push('\x0c'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi)
                                && self.b[self.pos..].starts_with(b"\\u")
                            {
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    0xFFFD
                                }
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }
}

/// One level of indentation: a tab (`None`, sops's default) or `n` spaces.
fn push_indent(out: &mut String, level: usize, unit: Option<usize>) {
    match unit {
        None => out.extend(std::iter::repeat_n('\t', level)),
        Some(n) => out.extend(std::iter::repeat_n(' ', level * n)),
    }
}

/// Print a top-level object as sops does (`"key": value`, one level of `unit` per depth),
/// without a final newline. `tail` is raw text appended as the last member
/// (`"sops": ...`), already formatted.
pub fn emit(root: &Value, tail: Option<&str>, unit: Option<usize>) -> String {
    let mut out = String::new();
    match root {
        Value::Map(items) => {
            let names: Vec<&(Key, Value)> = items
                .iter()
                .filter(|(k, _)| matches!(k, Key::Name(_)))
                .collect();
            if names.is_empty() && tail.is_none() {
                return "{}".into();
            }
            out.push('{');
            let mut first = true;
            for (k, v) in names {
                if let Key::Name(k) = k {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push('\n');
                    push_indent(&mut out, 1, unit);
                    out.push_str(&quote(k));
                    out.push_str(": ");
                    emit_value(&mut out, v, 1, unit);
                }
            }
            if let Some(t) = tail {
                if !first {
                    out.push(',');
                }
                out.push('\n');
                push_indent(&mut out, 1, unit);
                out.push_str("\"sops\": ");
                out.push_str(t);
            }
            out.push_str("\n}");
        }
        other => emit_value(&mut out, other, 0, unit),
    }
    out
}

pub fn emit_value(out: &mut String, v: &Value, level: usize, unit: Option<usize>) {
    let nl = |out: &mut String, l: usize| {
        out.push('\n');
        push_indent(out, l, unit);
    };
    match v {
        Value::Map(items) => {
            let names: Vec<_> = items
                .iter()
                .filter_map(|(k, v)| match k {
                    Key::Name(n) => Some((n, v)),
                    Key::Comment(_) => None,
                })
                .collect();
            if names.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, v)) in names.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, level + 1);
                out.push_str(&quote(k));
                out.push_str(": ");
                emit_value(out, v, level + 1, unit);
            }
            nl(out, level);
            out.push('}');
        }
        Value::Seq(items) => {
            let vals: Vec<_> = items
                .iter()
                .filter(|v| !matches!(v, Value::Comment(_)))
                .collect();
            if vals.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, v) in vals.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, level + 1);
                emit_value(out, v, level + 1, unit);
            }
            nl(out, level);
            out.push(']');
        }
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&format_float_json(*f)),
        Value::Str(s) | Value::Time(s) | Value::Comment(s) => out.push_str(&quote(s)),
    }
}

/// Go's encoding/json string escaping (HTML-safe, as json.Marshal does by default).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_beyond_float64_is_refused_as_sops_refuses_it() {
        let huge_int = format!("1{}", "0".repeat(400));
        for n in ["1e400", "-1E+999", huge_int.as_str()] {
            let e = parse(&format!("{{\"a\": {n}}}"), 64)
                .err()
                .expect("refused");
            assert!(e.to_string().contains("out of range"), "{n}: {e}");
        }
        assert!(
            parse("{\"a\": 1e-400}", 64).is_ok(),
            "underflow is 0, as in Go"
        );
    }

    #[test]
    fn round_trip_sops_layout() {
        let src = "{\n\t\"a\": {\n\t\t\"b\": 1,\n\t\t\"c\": [\n\t\t\t\"x\",\n\t\t\t2.5\n\t\t]\n\t},\n\t\"e\": {},\n\t\"f\": \"<&>\"\n}";
        let p = parse(src, 64).expect("parses");
        assert_eq!(
            emit(&p.root, None, None),
            src.replace("<&>", "\\u003c\\u0026\\u003e")
        );
    }

    #[test]
    fn finds_sops_span() {
        let src = "{\"a\": 1, \"sops\": {\"x\": [1]}}";
        let p = parse(src, 64).expect("parses");
        let (s, e) = p.sops_value_span.expect("span");
        assert_eq!(&src[s..e], "{\"x\": [1]}");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "[1]",
            "{",
            "{\"a\" 1}",
            "{\"a\": tru}",
            "{} x",
            "{\"a\":\"\\q\"}",
        ] {
            assert!(parse(bad, 64).is_err(), "{bad:?}");
        }
    }
}
