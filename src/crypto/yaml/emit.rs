//! The YAML writer: documents printed the way sops prints them (go-yaml v3's block
//! emitter with sops's settings: `SetIndent(n)`, no compact sequence indent), scalars
//! quoted exactly when go-yaml would quote them.

use super::{is_blank, resolve_plain};
use crate::crypto::value::{format_float_g, Key, Value};

/// sops's default YAML indentation (`stores.yaml.indent` unset or 0).
pub const DEFAULT_INDENT: usize = 4;

/// Print documents the way sops prints them (indent 4).
pub fn emit(docs: &[Value]) -> String {
    emit_indented(docs, DEFAULT_INDENT)
}

/// Print documents the way sops prints them with `stores.yaml.indent: step`.
pub fn emit_indented(docs: &[Value], step: usize) -> String {
    let mut out = String::new();
    // Comments alone before the first `---` are not a document: mark it explicitly.
    if docs.len() > 1
        && matches!(&docs[0], Value::Map(items)
            if !items.is_empty() && items.iter().all(|(k, _)| matches!(k, Key::Comment(_))))
    {
        out.push_str("---\n");
    }
    for (i, d) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&emit_doc_body(d, step));
        if matches!(d, Value::Map(items) if items.is_empty()) {
            out.push_str("{}\n");
        }
    }
    out
}

/// One document's entries (no `{}` for an empty mapping: the caller may append more).
pub fn emit_doc_body(d: &Value, step: usize) -> String {
    let mut e = Emitter::new(step);
    match d {
        Value::Map(items) => e.map(items, 0),
        other => e.item(other, 0, ""),
    }
    e.out
}

/// A mapping entry `key:` plus its value, with the key at column 0.
pub fn emit_entry(key: &str, v: &Value, step: usize) -> String {
    let mut e = Emitter::new(step);
    e.map(&[(Key::Name(key.to_string()), v.clone())], 0);
    e.out
}

/// go-yaml v3's block emitter as sops configures it (`SetIndent(step)`, no compact
/// sequence indent). Columns: a node directly inside `- ` starts on the dash's line at
/// dash + 2; any other child starts a new line at the next multiple of `step` above its
/// parent's column (so under a key at column 6, with step 4, children sit at 8).
struct Emitter {
    out: String,
    step: usize,
}

impl Emitter {
    fn new(step: usize) -> Emitter {
        Emitter {
            out: String::new(),
            step: step.max(1),
        }
    }

    /// Column of the children of a node at `col`.
    fn next(&self, col: usize) -> usize {
        (col + self.step) / self.step * self.step
    }

    fn pad(&mut self, n: usize) {
        self.out.extend(std::iter::repeat_n(' ', n));
    }

    fn comment(&mut self, col: usize, c: &str) {
        self.pad(col);
        self.out.push('#');
        self.out.push_str(c);
        self.out.push('\n');
    }

    /// Mapping entries with their keys at `col`.
    fn map(&mut self, items: &[(Key, Value)], col: usize) {
        for (k, v) in items {
            match k {
                Key::Comment(c) => self.comment(col, c),
                Key::Name(name) => {
                    self.pad(col);
                    self.out.push_str(&key_text(name));
                    self.out.push(':');
                    self.value_after(v, col);
                }
            }
        }
    }

    /// A value after `key:` (key at `col`): collections go below, scalars on the line.
    fn value_after(&mut self, v: &Value, col: usize) {
        let below = self.next(col);
        match v {
            // A collection holding only comments prints empty: comments need an entry.
            Value::Map(items) if items.iter().any(|(k, _)| matches!(k, Key::Name(_))) => {
                self.out.push('\n');
                self.map(items, below);
            }
            Value::Seq(items) if items.iter().any(|v| !matches!(v, Value::Comment(_))) => {
                self.out.push('\n');
                self.seq(items, below);
            }
            Value::Str(s) if literal_ok(s) => {
                self.out.push(' ');
                self.literal(s, below, col);
            }
            // Only comments (sops turns `k: [] # c` into a list holding the comment):
            // go-yaml prints `[]` and the comments after it, at the key's column. A
            // mapping's lone comments are not printed at all.
            Value::Seq(items) if !items.is_empty() => {
                self.out.push_str(" []\n");
                for c in items {
                    if let Value::Comment(c) = c {
                        self.comment(col, c);
                    }
                }
            }
            other => {
                self.out.push(' ');
                self.out.push_str(&scalar_text_at(other, below));
                self.out.push('\n');
            }
        }
    }

    /// Sequence items with their dashes at `col`.
    fn seq(&mut self, items: &[Value], col: usize) {
        for v in items {
            match v {
                Value::Comment(c) => self.comment(col, c),
                other => self.item(other, col, "- "),
            }
        }
    }

    /// One sequence item (`dash` at `col`); its content starts on the dash's line.
    fn item(&mut self, v: &Value, col: usize, dash: &str) {
        let inner_col = col + dash.len();
        match v {
            Value::Map(items) if items.iter().any(|(k, _)| matches!(k, Key::Name(_))) => {
                // Comments before the first key go above the dash.
                let lead = items
                    .iter()
                    .take_while(|(k, _)| matches!(k, Key::Comment(_)))
                    .count();
                self.map(&items[..lead], col);
                let mut inner = Emitter::new(self.step);
                inner.map(&items[lead..], inner_col);
                self.pad(col);
                self.out.push_str(dash);
                self.out.push_str(&inner.out[inner_col..]);
            }
            Value::Seq(items) if items.iter().any(|v| !matches!(v, Value::Comment(_))) => {
                let lead = items
                    .iter()
                    .take_while(|v| matches!(v, Value::Comment(_)))
                    .count();
                self.seq(&items[..lead], col);
                let mut inner = Emitter::new(self.step);
                inner.seq(&items[lead..], inner_col);
                self.pad(col);
                self.out.push_str(dash);
                self.out.push_str(&inner.out[inner_col..]);
            }
            Value::Str(s) if literal_ok(s) => {
                self.pad(col);
                self.out.push_str(dash.trim_end());
                self.out.push(' ');
                self.literal(s, inner_col, col);
            }
            other => {
                self.pad(col);
                self.out.push_str(dash);
                self.out.push_str(&scalar_text_at(other, inner_col));
                self.out.push('\n');
            }
        }
    }

    /// A literal block scalar with content at `col`; an indentation indicator, when the
    /// content starts with a space or a line break, counts from the parent's column.
    fn literal(&mut self, s: &str, col: usize, parent: usize) {
        self.out.push('|');
        if s.starts_with(' ') || s.starts_with('\n') {
            self.out.push_str(&(col - parent).to_string());
        }
        let trailing = s.len() - s.trim_end_matches('\n').len();
        match trailing {
            0 => self.out.push('-'),
            1 => {}
            _ => self.out.push('+'),
        }
        self.out.push('\n');
        let body = s.trim_end_matches('\n');
        for line in body.split('\n') {
            if !line.is_empty() {
                self.pad(col);
                self.out.push_str(line);
            }
            self.out.push('\n');
        }
        for _ in 1..trailing {
            self.out.push('\n');
        }
    }
}

/// A mapping key as go-yaml prints it: sops turns a `<<` key back into a merge key,
/// which go-yaml marks with its tag.
fn key_text(name: &str) -> String {
    if name == "<<" {
        return "!!merge <<".to_string();
    }
    scalar_str(name)
}

/// Can this multi-line string be printed as a literal block (as go-yaml would)?
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.trim_end_matches('\n').is_empty()
        && !s.chars().any(|c| !printable(c) && c != '\n' && c != '\t')
        && !s.split('\n').any(|l| l.ends_with(' ') || l.ends_with('\t'))
}

pub(super) fn is_special(c: char) -> bool {
    let u = c as u32;
    !(u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || u == 0x85
        || (0xA0..=0xD7FF).contains(&u)
        || (0xE000..=0xFFFD).contains(&u) && u != 0xFEFF
        || (0x10000..=0x10FFFF).contains(&u))
}

/// Characters go-yaml's emitter prints as they are (its `is_printable`): narrower than
/// what its reader accepts (`is_special`): no U+0085 and nothing beyond the BMP, which it
/// escapes (`"\U0001F41E"`).
fn printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || (0xE000..=0xFFFD).contains(&u) && u != 0xFEFF
}

/// A scalar's text as go-yaml prints it.
pub fn scalar_text(v: &Value) -> String {
    scalar_text_at(v, 0)
}

/// A scalar's text as go-yaml prints it where its block indentation is `indent`
/// (continuation lines of a single-quoted string are padded to it).
fn scalar_text_at(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Str(s) => scalar_str_at(s, indent),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => {
            if f.is_nan() {
                ".nan".into()
            } else if f.is_infinite() {
                if *f > 0.0 { ".inf" } else { "-.inf" }.into()
            } else {
                format_float_g(*f)
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Time(t) => t.clone(),
        Value::Comment(c) => format!("#{c}"),
        Value::Map(_) => "{}".into(),
        Value::Seq(_) => "[]".into(),
    }
}

/// A string scalar: plain when it reads back as the same string, else quoted.
pub fn scalar_str(s: &str) -> String {
    scalar_str_at(s, 0)
}

fn scalar_str_at(s: &str, indent: usize) -> String {
    if s.chars().any(|c| !printable(c) || c == '\n') {
        return double_quote(s);
    }
    if s.contains(['\u{2028}', '\u{2029}']) {
        return unicode_breaks(s, indent);
    }
    let resolves_to_string = matches!(resolve_plain(s), Value::Str(_)) && !is_old_yaml_special(s);
    if !resolves_to_string {
        return double_quote(s);
    }
    if plain_allowed(s) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// A string holding U+2028/U+2029, which go-yaml's emitter counts as line breaks: plain
/// style is out, single quotes when no break touches a space, else double quotes. In
/// single quotes it writes the break as is and pads the next line to `indent`, as sops
/// prints it (a YAML 1.2 reader then sees the padding as content: go-yaml's own quirk).
fn unicode_breaks(s: &str, indent: usize) -> String {
    let is_break = |c: char| matches!(c, '\u{2028}' | '\u{2029}');
    let chars: Vec<char> = s.chars().collect();
    let touches_space = chars
        .windows(2)
        .any(|w| is_break(w[0]) && w[1] == ' ' || w[0] == ' ' && is_break(w[1]));
    if touches_space {
        return double_quote(s);
    }
    let mut out = String::with_capacity(s.len() + 2 + indent);
    out.push('\'');
    let mut after_break = false;
    for c in chars {
        if is_break(c) {
            after_break = true;
        } else if after_break {
            out.extend(std::iter::repeat_n(' ', indent));
            after_break = false;
        }
        if c == '\'' {
            out.push_str("''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// YAML 1.1 booleans and base-60 floats that go-yaml quotes to stay readable by 1.1 parsers.
fn is_old_yaml_special(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) || is_base60(s)
}

/// YAML 1.1 base-60 floats (`1:30`), which go-yaml quotes for older parsers: its own
/// pattern, where every part after the first is `[0-5]?[0-9]` (so `80:80` is not one).
fn is_base60(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let first = s.bytes().next();
    if !matches!(first, Some(b'+' | b'-' | b'0'..=b'9')) || !s.contains(':') {
        return false;
    }
    RE.get_or_init(|| {
        regex::Regex::new(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
            .expect("a valid constant pattern")
    })
    .is_match(s)
}

fn plain_allowed(s: &str) -> bool {
    if s.is_empty() || s.starts_with(' ') || s.ends_with(' ') || s.starts_with('\t') {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    let b = s.as_bytes();
    let first = b[0];
    if matches!(
        first,
        b'#' | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    ) {
        return false;
    }
    if matches!(first, b'-' | b'?' | b':') && (b.len() == 1 || is_blank(b[1])) {
        return false;
    }
    for i in 0..b.len() {
        if b[i] == b':' && (i + 1 == b.len() || is_blank(b[i + 1])) {
            return false;
        }
        if b[i] == b'#' && i > 0 && is_blank(b[i - 1]) {
            return false;
        }
    }
    true
}

fn double_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if !printable(c) => {
                let u = c as u32;
                if u <= 0xFF {
                    out.push_str(&format!("\\x{u:02X}"));
                } else if u <= 0xFFFF {
                    out.push_str(&format!("\\u{u:04X}"));
                } else {
                    out.push_str(&format!("\\U{u:08X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
