//! A YAML reader and writer for the subset values files use, shaped after what sops sees.
//!
//! The reader turns a stream into one `Value::Map` per document, with comments as items of
//! the collection they stand in (the innermost open collection whose column is at most the
//! comment's column) and inline comments placed before the entry they follow, as sops does.
//! Scalars resolve like go-yaml v3 decoding into `interface{}`. Aliases are expanded under a
//! node budget, nesting is bounded: hostile input fails fast with a typed error.
//!
//! The writer (`emit`) prints a tree the way sops (go-yaml v3, indent 4 or the store's
//! setting) prints it. It is not lossless by itself: the codec keeps the user's bytes
//! separately (see docs/SEMANTICS.md).

use std::collections::HashMap;

mod emit;
mod emitter;
mod events;
mod nodes;
mod scan;

use emit::is_special;
pub use emit::{
    emit, emit_doc_before_meta, emit_doc_body, emit_entry, emit_indented, scalar_str, scalar_text,
    DEFAULT_INDENT,
};
pub use nodes::{comment_list, keep_comment_layout, transplant};

use super::value::{format_float_g, Key, Value};

/// Bounds on what a document may cost to read.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_depth: usize,
    pub max_nodes: usize,
    pub max_documents: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 128,
            max_nodes: 2_000_000,
            max_documents: 10_000,
        }
    }
}

/// A YAML syntax or limit error, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {msg}")]
pub struct YamlError {
    pub line: usize,
    pub msg: String,
}

/// Parse a YAML stream into its documents (each a `Value::Map`, or `Value::Null` if empty).
pub fn parse(input: &str, limits: Limits) -> Result<Vec<Value>, YamlError> {
    parse_with(input, limits, input.len() >= PARALLEL_MODEL_BYTES)
}

fn parse_with(input: &str, limits: Limits, parallel: bool) -> Result<Vec<Value>, YamlError> {
    if !input.contains('#') {
        // No comment to place: the model (a second, slower reader) has nothing to do.
        return parser(input, limits, false).stream();
    }
    // Comments go where sops 3.11 puts them (go-yaml's reader, then sops's tree); the
    // column rule above is kept for what that model does not read the same way. A large
    // text is read by both readers at once, on two threads: neither needs the other.
    let (docs, model) = if parallel {
        std::thread::scope(|s| {
            // No thread to be had (a process at its limit): build the model here, after.
            let model = std::thread::Builder::new().spawn_scoped(s, || nodes::model(input));
            let docs = parser(input, limits, false).stream();
            let model = match model {
                Ok(m) => m.join().ok().flatten(),
                Err(_) if docs.is_ok() => nodes::model(input),
                Err(_) => None,
            };
            (docs, model)
        })
    } else {
        let docs = parser(input, limits, false).stream();
        let model = if docs.is_ok() {
            nodes::model(input)
        } else {
            None
        };
        (docs, model)
    };
    let docs = docs?;
    Ok(model.and_then(|m| nodes::place(&m, &docs)).unwrap_or(docs))
}

/// From this size up, the comment model is built on its own thread (a thread costs tens
/// of microseconds; the model of 64 KiB takes milliseconds).
const PARALLEL_MODEL_BYTES: usize = 64 * 1024;

/// Parse a YAML stream as kubectl reads it (sigs.k8s.io/yaml over go-yaml v2, YAML 1.1):
/// plain `yes`/`no`/`on`/`off`/`y`/`n` are booleans, timestamps stay their text, and keys
/// are the text of what they resolve to (`yes:` is the key `"true"`, `0x10:` is `"16"`).
/// Comments are not placed (manifests are not written back).
pub fn parse_kubectl(input: &str, limits: Limits) -> Result<Vec<Value>, YamlError> {
    parser(input, limits, true).stream()
}

fn parser(input: &str, limits: Limits, yaml11: bool) -> Parser<'_> {
    Parser {
        b: input.as_bytes(),
        s: input,
        pos: 0,
        line_start: 0,
        line_no: 1,
        pending: Vec::new(),
        anchors: HashMap::new(),
        anchor_started: HashMap::new(),
        anchor_seq: 0,
        nodes: 0,
        depth: 0,
        limits,
        yaml11,
    }
}

/// Parse a stream whose documents must all be mappings at the top (what sops accepts).
pub fn parse_mappings(input: &str, limits: Limits) -> Result<Vec<Value>, YamlError> {
    let docs = parse(input, limits)?;
    let mut out = Vec::with_capacity(docs.len());
    for d in docs {
        match d {
            Value::Map(_) => out.push(d),
            Value::Null => out.push(Value::Map(Vec::new())),
            _ => {
                return Err(YamlError {
                    line: 1,
                    msg: "a document must be a mapping at the top level".into(),
                })
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    b: &'a [u8],
    s: &'a str,
    pos: usize,
    line_start: usize,
    line_no: usize,
    /// Comments read but not yet given to a collection: (column, text after '#').
    pending: Vec<(usize, String)>,
    anchors: HashMap<String, Value>,
    /// The latest definition of each anchor name to start, by start order: go-yaml
    /// registers an anchor when its node starts, so one redefined inside its own node
    /// is the inner one once both end.
    anchor_started: HashMap<String, u64>,
    anchor_seq: u64,
    nodes: usize,
    depth: usize,
    limits: Limits,
    /// Resolve plain scalars as kubectl does (YAML 1.1), not as go-yaml v3 and sops.
    yaml11: bool,
}

const BLANKS: [char; 2] = [' ', '\t'];

/// U+2028 and U+2029: line breaks to go-yaml (its `is_break`), kept in the text.
fn is_ls_ps(c: char) -> bool {
    c == '\u{2028}' || c == '\u{2029}'
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

impl<'a> Parser<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, YamlError> {
        Err(YamlError {
            line: self.line_no,
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn peek_at(&self, off: usize) -> Option<u8> {
        self.b.get(self.pos + off).copied()
    }

    fn col(&self) -> usize {
        self.pos - self.line_start
    }

    fn at_eol(&self) -> bool {
        match self.peek() {
            None | Some(b'\n') => true,
            Some(b'\r') => matches!(self.peek_at(1), None | Some(b'\n')),
            _ => false,
        }
    }

    fn at_eof(&self) -> bool {
        self.pos >= self.b.len()
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(c) if is_blank(c)) {
            self.pos += 1;
        }
    }

    /// Move past the end of the current line.
    fn next_line(&mut self) {
        while let Some(c) = self.peek() {
            self.pos += 1;
            if c == b'\n' {
                self.line_start = self.pos;
                self.line_no += 1;
                return;
            }
        }
    }

    /// A line of a block scalar: its text and the break that ends it (`None` at the
    /// end of the input). With `ls_ps`, U+2028 and U+2029 end lines too.
    fn block_line(&self, ls_ps: bool) -> (&'a str, Option<char>) {
        let rest = &self.s[self.pos..];
        let end = rest.find(|c| c == '\n' || (ls_ps && is_ls_ps(c)));
        match end {
            None => (rest.trim_end_matches('\r'), None),
            Some(i) => {
                let c = rest[i..].chars().next().unwrap_or('\n');
                let text = &rest[..i];
                (
                    if c == '\n' {
                        text.trim_end_matches('\r')
                    } else {
                        text
                    },
                    Some(c),
                )
            }
        }
    }

    /// Move past a line [`Self::block_line`] returned: after a U+2028 or U+2029 the
    /// next line starts at once (column 0) on the same physical line.
    fn past_block_line(&mut self, text: &str, end: Option<char>) {
        match end {
            Some(c) if is_ls_ps(c) => {
                self.pos += text.len() + c.len_utf8();
                self.line_start = self.pos;
            }
            _ => self.next_line(),
        }
    }

    /// The text from here to the end of the line (without the line break).
    fn rest_of_line(&self) -> &'a str {
        let end = memchr::memchr(b'\n', &self.b[self.pos..]).map_or(self.b.len(), |i| self.pos + i);
        self.s[self.pos..end].trim_end_matches('\r')
    }

    fn take_comment(&mut self) -> String {
        let col = self.col();
        let text = self.rest_of_line();
        let text = text.strip_prefix('#').unwrap_or(text).to_string();
        self.pending.push((col, text.clone()));
        self.pos += 1 + text.len();
        text
    }

    /// Skip blank and comment lines (comments go to `pending`); stop at content or EOF.
    fn skip_to_content(&mut self) {
        loop {
            self.skip_blanks();
            if self.at_eof() {
                return;
            }
            if self.peek() == Some(b'#') {
                self.take_comment();
                self.next_line();
            } else if self.at_eol() {
                self.next_line();
            } else {
                return;
            }
        }
    }

    fn at_doc_marker(&self) -> bool {
        if self.col() != 0 {
            return false;
        }
        let rest = &self.b[self.pos..];
        (rest.starts_with(b"---") || rest.starts_with(b"..."))
            && matches!(rest.get(3), None | Some(b' ' | b'\t' | b'\n' | b'\r'))
    }

    fn count_node(&mut self, n: usize) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return self.err(format!(
                "document too large: more than {} nodes (alias expansion?)",
                self.limits.max_nodes
            ));
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), YamlError> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            return self.err(format!(
                "nesting deeper than {} levels",
                self.limits.max_depth
            ));
        }
        Ok(())
    }

    fn stream(&mut self) -> Result<Vec<Value>, YamlError> {
        // YAML streams hold printable characters only (as go-yaml enforces).
        if let Some((i, c)) = first_special(self.s) {
            let line = self.s[..i].matches('\n').count() + 1;
            return Err(YamlError {
                line,
                msg: format!(
                    "control character U+{:04X} is not allowed in YAML",
                    c as u32
                ),
            });
        }
        let mut docs = Vec::new();
        if self.b.starts_with(b"\xEF\xBB\xBF") {
            self.pos = 3;
            self.line_start = 3;
        }
        loop {
            self.skip_to_content();
            while !self.at_eof() && self.col() == 0 && self.peek() == Some(b'%') {
                self.next_line();
                self.skip_to_content();
            }
            if self.at_eof() {
                if docs.is_empty() || !self.pending.is_empty() {
                    let comments = std::mem::take(&mut self.pending);
                    if !comments.is_empty() || docs.is_empty() && !self.b.is_empty() {
                        docs.push(comment_map(comments));
                    }
                }
                break;
            }
            if self.at_doc_marker() && self.b[self.pos] == b'.' {
                self.next_line();
                continue;
            }
            if self.at_doc_marker() {
                self.pos += 3;
                self.skip_blanks();
                if self.peek() == Some(b'#') {
                    self.take_comment();
                }
                if self.at_eol() {
                    self.next_line();
                    self.skip_to_content();
                }
            }
            if docs.len() >= self.limits.max_documents {
                return self.err("too many documents");
            }
            self.anchors.clear();
            self.anchor_started.clear();
            let doc = if self.at_eof() || self.at_doc_marker() {
                comment_map(std::mem::take(&mut self.pending))
            } else {
                let v = self.block_node(-1)?;
                self.skip_to_content();
                if !self.at_eof() && !self.at_doc_marker() {
                    return self.err("unexpected content after the document (bad indentation?)");
                }
                let trailing = std::mem::take(&mut self.pending);
                match v {
                    Value::Map(mut items) => {
                        items.extend(
                            trailing
                                .into_iter()
                                .map(|(_, t)| (Key::Comment(t), Value::Null)),
                        );
                        Value::Map(items)
                    }
                    Value::Null => comment_map(trailing),
                    other => other,
                }
            };
            docs.push(doc);
        }
        Ok(docs)
    }

    /// A node starting at the current content position, in block context.
    fn block_node(&mut self, parent_indent: isize) -> Result<Value, YamlError> {
        let col = self.col();
        if self.is_seq_entry() {
            return self.block_seq(col);
        }
        if self.looks_like_key() {
            return self.block_map(col);
        }
        let (v, _inline) = self.inline_value(parent_indent)?;
        Ok(v)
    }

    fn is_seq_entry(&self) -> bool {
        self.peek() == Some(b'-')
            && matches!(self.peek_at(1), None | Some(b' ' | b'\t' | b'\n' | b'\r'))
    }

    /// Does a mapping key (`key:` followed by a blank or the end of line) start here?
    fn looks_like_key(&self) -> bool {
        let rest = &self.b[self.pos..];
        let line_end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let line = &rest[..line_end];
        // A key may carry a tag or an anchor (`!!merge <<:`, `!!str 1:`).
        let props = properties_len(line);
        if props > 0 && props < line.len() {
            return key_starts(&line[props..]);
        }
        key_starts(line)
    }

    fn block_map(&mut self, indent: usize) -> Result<Value, YamlError> {
        self.enter()?;
        let mut items: Vec<(Key, Value)> = Vec::new();
        loop {
            items.extend(
                std::mem::take(&mut self.pending)
                    .into_iter()
                    .map(|(_, t)| (Key::Comment(t), Value::Null)),
            );
            if !self.looks_like_key() {
                return self.err("expected a `key: value` entry");
            }
            let key = self.map_key()?;
            self.skip_blanks();
            if self.peek() != Some(b':') {
                return self.err("expected ':' after a mapping key");
            }
            self.pos += 1;
            let (value, inline) = self.value_after_indicator(indent, false)?;
            for c in inline {
                items.push((Key::Comment(c), Value::Null));
            }
            self.count_node(1)?;
            items.push((Key::Name(key), value));
            self.skip_to_content();
            if self.at_eof() || self.at_doc_marker() {
                break;
            }
            let c = self.col();
            if c < indent {
                break;
            }
            if c > indent {
                return self.err("bad indentation of a mapping entry");
            }
            if self.is_seq_entry() {
                return self.err("a sequence entry where a mapping key was expected");
            }
        }
        self.take_trailing_comments(indent, |t| items.push((Key::Comment(t), Value::Null)));
        self.depth -= 1;
        Ok(Value::Map(items))
    }

    fn block_seq(&mut self, indent: usize) -> Result<Value, YamlError> {
        self.enter()?;
        let mut items: Vec<Value> = Vec::new();
        loop {
            items.extend(
                std::mem::take(&mut self.pending)
                    .into_iter()
                    .map(|(_, t)| Value::Comment(t)),
            );
            // at '-'
            self.pos += 1;
            self.skip_blanks();
            let (value, inline) = if self.is_seq_entry() {
                let c = self.col();
                (self.block_seq(c)?, Vec::new())
            } else if !self.at_eol() && self.peek() != Some(b'#') && self.looks_like_key() {
                let c = self.col();
                (self.block_map(c)?, Vec::new())
            } else {
                self.value_after_indicator(indent, true)?
            };
            for c in inline {
                items.push(Value::Comment(c));
            }
            // Comments before the first entry of a nested collection belong to this
            // sequence: a writer can only put them above the dash.
            let value = match value {
                Value::Map(mut m) => {
                    let lead = m
                        .iter()
                        .take_while(|(k, _)| matches!(k, Key::Comment(_)))
                        .count();
                    if lead < m.len() {
                        for (k, _) in m.drain(..lead) {
                            if let Key::Comment(c) = k {
                                items.push(Value::Comment(c));
                            }
                        }
                    }
                    Value::Map(m)
                }
                Value::Seq(mut v) => {
                    let lead = v
                        .iter()
                        .take_while(|x| matches!(x, Value::Comment(_)))
                        .count();
                    if lead < v.len() {
                        items.extend(v.drain(..lead));
                    }
                    Value::Seq(v)
                }
                other => other,
            };
            self.count_node(1)?;
            items.push(value);
            self.skip_to_content();
            if self.at_eof() || self.at_doc_marker() {
                break;
            }
            let c = self.col();
            if c < indent || (c == indent && !self.is_seq_entry()) {
                break;
            }
            if c > indent || !self.is_seq_entry() {
                return self.err("bad indentation of a sequence entry");
            }
        }
        self.take_trailing_comments(indent, |t| items.push(Value::Comment(t)));
        self.depth -= 1;
        Ok(Value::Seq(items))
    }

    /// Pending comments at or right of `indent` end this collection; others stay pending.
    fn take_trailing_comments(&mut self, indent: usize, mut push: impl FnMut(String)) {
        let pending = std::mem::take(&mut self.pending);
        let mut rest = Vec::new();
        let mut taking = true;
        for (col, text) in pending {
            if taking && col >= indent {
                push(text);
            } else {
                taking = false;
                rest.push((col, text));
            }
        }
        self.pending = rest;
    }

    fn map_key(&mut self) -> Result<String, YamlError> {
        let (_anchor, tag) = self.properties()?;
        if let Some(t) = tag {
            // `!!merge <<` is the key `<<` (sops keeps it as a key, it never merges);
            // any other tag keeps the key's text, as sops's string keys do.
            let key = self.key_text(true)?;
            return match t.as_str() {
                "!!merge" if key == "<<" => Ok(key),
                "!!merge" => self.err("!!merge on a key other than <<"),
                _ => Ok(key),
            };
        }
        self.key_text(false)
    }

    /// A key's text; a tagged plain key is taken as written (`!!str 1` is the key "1").
    fn key_text(&mut self, tagged: bool) -> Result<String, YamlError> {
        match self.peek() {
            Some(b'"') => self.double_quoted(),
            Some(b'\'') => self.single_quoted(),
            _ => {
                let start = self.pos;
                let line = self.rest_of_line().as_bytes();
                let mut i = 0;
                while i < line.len() {
                    if line[i] == b':' && ends_key(line, i + 1) {
                        break;
                    }
                    i += 1;
                }
                let raw = self.s[start..start + i].trim_end_matches(BLANKS);
                self.pos = start + i;
                if self.yaml11 && !tagged {
                    return match yaml11_key(raw) {
                        Some(k) => Ok(k),
                        None => self.err(format!("mapping key {raw:?} is not a string")),
                    };
                }
                match resolve_plain(raw) {
                    _ if tagged && !raw.is_empty() => Ok(raw.to_string()),
                    Value::Str(s) => Ok(s),
                    Value::Null if raw.is_empty() => self.err("empty mapping key"),
                    _ if raw == "<<" => Ok(raw.to_string()),
                    _ => self.err(format!(
                        "mapping key {raw:?} is not a string (sops supports string keys only)"
                    )),
                }
            }
        }
    }

    /// The value after `key:` or `- `: inline on this line, or a nested block below.
    /// Returns the value and the inline comments that stood on the indicator's line.
    fn value_after_indicator(
        &mut self,
        indent: usize,
        in_seq: bool,
    ) -> Result<(Value, Vec<String>), YamlError> {
        self.skip_blanks();
        let (anchor, tag) = self.properties()?;
        let mut inline = Vec::new();
        let value = if self.at_eol() || self.peek() == Some(b'#') {
            if self.peek() == Some(b'#') {
                inline.push(self.take_comment());
                self.pending.pop();
            }
            self.next_line();
            self.skip_to_content();
            if self.at_eof() || self.at_doc_marker() {
                Value::Null
            } else {
                let c = self.col();
                if c > indent {
                    self.block_node(indent as isize)?
                } else if c == indent && !in_seq && self.is_seq_entry() {
                    self.block_seq(c)?
                } else {
                    Value::Null
                }
            }
        } else {
            let (mut v, more) = self.inline_value_tagged(indent as isize, tag.is_some())?;
            // A line comment after a flow sequence that is a mapping value belongs to that
            // sequence in sops's tree (go-yaml's line comment of the node).
            match &mut v {
                Value::Seq(items) if !in_seq && !more.is_empty() => {
                    items.splice(0..0, more.into_iter().map(Value::Comment));
                }
                _ => inline.extend(more),
            }
            v
        };
        let value = apply_tag(tag.as_deref(), value).map_err(|m| self.located(m))?;
        self.define(anchor, &value);
        Ok((value, inline))
    }

    /// Anchor and tag properties (in any order) before a node.
    /// A plain scalar's value: go-yaml v3's rules, or kubectl's (see `parse_kubectl`).
    fn resolve(&self, raw: &str) -> Value {
        if self.yaml11 {
            resolve_yaml11(raw)
        } else {
            resolve_plain(raw)
        }
    }

    fn properties(&mut self) -> Result<(Option<Anchor>, Option<String>), YamlError> {
        let mut anchor = None;
        let mut tag = None;
        loop {
            match self.peek() {
                Some(b'&') => {
                    self.pos += 1;
                    let name = self.name_token()?;
                    self.anchor_seq += 1;
                    self.anchor_started.insert(name.clone(), self.anchor_seq);
                    anchor = Some((name, self.anchor_seq));
                }
                Some(b'!') => {
                    let start = self.pos;
                    while matches!(self.peek(), Some(c) if !is_blank(c) && c != b'\n' && c != b'\r')
                    {
                        self.pos += 1;
                    }
                    tag = Some(self.s[start..self.pos].to_string());
                }
                _ => return Ok((anchor, tag)),
            }
            self.skip_blanks();
        }
    }

    /// A node with an anchor is complete: it is what the name means from now on, unless
    /// another definition of the name started after this one (inside it).
    fn define(&mut self, anchor: Option<Anchor>, v: &Value) {
        if let Some((a, t)) = anchor {
            if self.anchor_started.get(&a) == Some(&t) {
                self.anchors.insert(a, v.clone());
            }
        }
    }

    fn name_token(&mut self) -> Result<String, YamlError> {
        let start = self.pos;
        while matches!(self.peek(), Some(c) if !is_blank(c) && c != b'\n' && c != b'\r' && !is_flow_indicator(c))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return self.err("empty anchor or alias name");
        }
        Ok(self.s[start..self.pos].to_string())
    }

    fn alias(&mut self) -> Result<Value, YamlError> {
        self.pos += 1;
        let name = self.name_token()?;
        let v = match self.anchors.get(&name) {
            Some(v) => v.clone(),
            None => return self.err(format!("unknown alias *{name}")),
        };
        self.count_node(v.node_count())?;
        Ok(v)
    }

    /// A node written on the current line (possibly continuing below): scalar, flow
    /// collection, block scalar or alias. Consumes a trailing comment on its last line.
    fn inline_value(&mut self, indent: isize) -> Result<(Value, Vec<String>), YamlError> {
        self.inline_value_tagged(indent, false)
    }

    /// As `inline_value`; `tagged`: a tag stood before (a tagged plain scalar keeps its
    /// text, `!!str 2001-12-14` is not a timestamp).
    fn inline_value_tagged(
        &mut self,
        indent: isize,
        tagged: bool,
    ) -> Result<(Value, Vec<String>), YamlError> {
        let (anchor, tag) = self.properties()?;
        let mut inline = Vec::new();
        let v = match self.peek() {
            Some(b'*') => self.alias()?,
            Some(b'[') | Some(b'{') => self.flow_node()?,
            Some(b'"') => Value::Str(self.double_quoted()?),
            Some(b'\'') => Value::Str(self.single_quoted()?),
            Some(b'|') | Some(b'>') => {
                let v = Value::Str(self.block_scalar(indent)?);
                let v = apply_tag(tag.as_deref(), v).map_err(|m| self.located(m))?;
                self.define(anchor, &v);
                return Ok((v, inline));
            }
            _ => {
                let raw = self.plain_block(indent)?;
                if tag.is_some() || tagged {
                    Value::Str(raw)
                } else {
                    self.resolve(&raw)
                }
            }
        };
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            inline.push(self.take_comment());
            self.pending.pop();
        } else if !self.at_eol() {
            return self.err("unexpected characters after a value");
        }
        let v = apply_tag(tag.as_deref(), v).map_err(|m| self.located(m))?;
        self.define(anchor, &v);
        Ok((v, inline))
    }

    /// A plain scalar in block context, folding continuation lines indented past `indent`.
    fn plain_block(&mut self, indent: isize) -> Result<String, YamlError> {
        let first = self.plain_line();
        if first.is_empty() {
            return self.err("expected a value");
        }
        let mut out = first;
        loop {
            // Look ahead for a continuation line without consuming comments.
            let save = (self.pos, self.line_start, self.line_no);
            if !self.at_eol() {
                break;
            }
            let mut breaks = 0;
            let mut found = false;
            while !self.at_eof() {
                self.next_line();
                self.skip_blanks();
                if self.at_eof() {
                    break;
                }
                if self.at_eol() {
                    breaks += 1;
                    continue;
                }
                found = (self.col() as isize) > indent
                    && self.peek() != Some(b'#')
                    && !self.at_doc_marker();
                break;
            }
            if !found || self.looks_like_key() {
                (self.pos, self.line_start, self.line_no) = save;
                break;
            }
            let line = self.plain_line();
            if line.is_empty() {
                (self.pos, self.line_start, self.line_no) = save;
                break;
            }
            if breaks == 0 {
                out.push(' ');
            } else {
                out.extend(std::iter::repeat_n('\n', breaks));
            }
            out.push_str(&line);
        }
        Ok(out)
    }

    /// One line's worth of a plain scalar (block context): up to ` #`, `: ` or EOL.
    fn plain_line(&mut self) -> String {
        let line = self.rest_of_line().as_bytes();
        let i = memchr::memchr2_iter(b'#', b':', line)
            .find(|&i| {
                if line[i] == b'#' {
                    i > 0 && is_blank(line[i - 1])
                } else {
                    ends_key(line, i + 1)
                }
            })
            .unwrap_or(line.len());
        let text = std::str::from_utf8(&line[..i])
            .unwrap_or("")
            .trim_end_matches(BLANKS);
        self.pos += text.len();
        text.to_string()
    }

    fn double_quoted(&mut self) -> Result<String, YamlError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err("unterminated double-quoted string");
            };
            match c {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return self.err("unterminated escape");
                    };
                    self.pos += 1;
                    match e {
                        b'0' => out.push('\0'),
                        b'a' => out.push('\x07'),
                        b'b' => out.push('\x08'),
                        b't' | b'\t' => out.push('\t'),
                        b'n' => out.push('\n'),
                        b'v' => out.push('\x0b'),
                        b'f' => out.push('\x0c'),
                        b'r' => out.push('\r'),
                        b'e' => out.push('\x1b'),
                        b' ' => out.push(' '),
                        b'"' => out.push('"'),
                        b'/' => out.push('/'),
                        b'\\' => out.push('\\'),
                        b'N' => out.push('\u{85}'),
                        b'_' => out.push('\u{a0}'),
                        b'L' => out.push('\u{2028}'),
                        b'P' => out.push('\u{2029}'),
                        b'x' | b'u' | b'U' => {
                            let n = match e {
                                b'x' => 2,
                                b'u' => 4,
                                _ => 8,
                            };
                            let hex = self.s.get(self.pos..self.pos + n).unwrap_or("");
                            let cp = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
                            match cp {
                                Some(ch) if hex.len() == n => out.push(ch),
                                _ => return self.err("invalid escape in double-quoted string"),
                            }
                            self.pos += n;
                        }
                        b'\r' | b'\n' => {
                            // An escaped line break joins the lines without a space.
                            if e == b'\r' && self.peek() == Some(b'\n') {
                                self.pos += 1;
                            }
                            self.line_start = self.pos;
                            self.line_no += 1;
                            self.skip_blanks();
                        }
                        _ => return self.err("invalid escape in double-quoted string"),
                    }
                }
                _ if self.quoted_break().is_some() => self.fold_quoted_break(&mut out)?,
                _ => {
                    let ch = self.s[self.pos..].chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    /// The line break here, for quoted scalars (go-yaml's `is_break`): its length and
    /// what it reads as (`read_line`: CR, LF, CRLF and NEL become `\n`; LS and PS stay).
    fn quoted_break(&self) -> Option<(usize, char)> {
        match &self.b[self.pos..] {
            [b'\r', b'\n', ..] => Some((2, '\n')),
            [b'\r' | b'\n', ..] => Some((1, '\n')),
            [0xC2, 0x85, ..] => Some((2, '\n')),
            [0xE2, 0x80, 0xA8, ..] => Some((3, '\u{2028}')),
            [0xE2, 0x80, 0xA9, ..] => Some((3, '\u{2029}')),
            _ => None,
        }
    }

    /// Line breaks inside a quoted scalar (go-yaml `scan_flow_scalar`): trailing blanks
    /// dropped; a first `\n` alone becomes a space, followed by others it becomes them;
    /// a first LS or PS is kept with the breaks after it; leading blanks of each next
    /// line dropped. Every break starts a new line (column 0).
    fn fold_quoted_break(&mut self, out: &mut String) -> Result<(), YamlError> {
        while out.ends_with(' ') || out.ends_with('\t') {
            out.pop();
        }
        let mut leading: Option<char> = None;
        let mut trailing = String::new();
        while let Some((n, c)) = self.quoted_break() {
            let physical = self.b[self.pos] == b'\n' || self.b[self.pos] == b'\r';
            self.pos += n;
            self.line_start = self.pos;
            if physical {
                self.line_no += 1;
            }
            match leading {
                None => leading = Some(c),
                Some(_) => trailing.push(c),
            }
            self.skip_blanks();
            if self.at_eof() {
                return self.err("unterminated quoted string");
            }
            if self.at_doc_marker() {
                return self.err("document marker inside a quoted string");
            }
        }
        match leading {
            Some('\n') if trailing.is_empty() => out.push(' '),
            Some('\n') => out.push_str(&trailing),
            Some(c) => {
                out.push(c);
                out.push_str(&trailing);
            }
            None => {}
        }
        Ok(())
    }

    fn single_quoted(&mut self) -> Result<String, YamlError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return self.err("unterminated single-quoted string");
            };
            match c {
                b'\'' => {
                    if self.peek_at(1) == Some(b'\'') {
                        out.push('\'');
                        self.pos += 2;
                    } else {
                        self.pos += 1;
                        return Ok(out);
                    }
                }
                _ if self.quoted_break().is_some() => self.fold_quoted_break(&mut out)?,
                _ => {
                    let ch = self.s[self.pos..].chars().next().unwrap_or('\u{fffd}');
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    fn block_scalar(&mut self, indent: isize) -> Result<String, YamlError> {
        let literal = self.peek() == Some(b'|');
        self.pos += 1;
        let mut chomp = 0i8; // -1 strip, 0 clip, 1 keep
        let mut explicit: Option<usize> = None;
        for _ in 0..2 {
            match self.peek() {
                Some(b'-') => {
                    chomp = -1;
                    self.pos += 1
                }
                Some(b'+') => {
                    chomp = 1;
                    self.pos += 1
                }
                Some(d @ b'1'..=b'9') => {
                    explicit = Some((d - b'0') as usize);
                    self.pos += 1
                }
                _ => {}
            }
        }
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            self.take_comment();
            self.pending.pop();
        }
        if !self.at_eol() {
            return self.err("unexpected characters after a block scalar header");
        }
        let base = indent.max(-1);
        let mut block_indent = explicit.map(|d| (base.max(0) as usize) + d);
        if explicit.is_some() && base < 0 {
            block_indent = explicit;
        }
        if let Some(bi) = block_indent {
            // go-yaml (so sops) writes its indentation step as the hint even where the
            // content is indented less (list items). Such a line would otherwise end the
            // scalar and make the document invalid: read the content where it is.
            // A less indented comment line ends the scalar in valid YAML: not content.
            let least = self.s[self.pos..]
                .split(|c| c == '\n' || (literal && is_ls_ps(c)))
                .skip(1)
                .filter(|l| !l.trim_matches(BLANKS).is_empty())
                .map(|l| {
                    (
                        l.len() - l.trim_start_matches(' ').len(),
                        l.trim_start().starts_with('#'),
                    )
                })
                .take_while(|&(n, _)| (n as isize) > base)
                .filter(|&(_, comment)| !comment)
                .map(|(n, _)| n)
                .min();
            if let Some(n) = least.filter(|&n| n < bi) {
                block_indent = Some(n);
            }
        }
        // Lines with the break that ends each (LS and PS end lines of a literal block too,
        // and stay in its text, as in go-yaml).
        let mut lines: Vec<(&str, char)> = Vec::new();
        // Did the last content line end with a line break? Clip and keep add the final
        // break only if one was there (a scalar at the end of a file without one).
        let mut broke = true;
        self.next_line();
        while !self.at_eof() {
            let (line, end) = self.block_line(literal);
            let term = end.unwrap_or('\n');
            let spaces = line.len() - line.trim_start_matches(' ').len();
            let blank = line.trim_matches(BLANKS).is_empty();
            // Trailing blanks with no line break after them are not a line.
            if blank && end.is_none() {
                self.pos = self.b.len();
                break;
            }
            if self.at_doc_marker() {
                break;
            }
            let bi = match block_indent {
                Some(bi) => bi,
                None if blank => {
                    lines.push(("", term));
                    self.past_block_line(line, end);
                    continue;
                }
                None => {
                    if (spaces as isize) <= base {
                        break;
                    }
                    block_indent = Some(spaces);
                    spaces
                }
            };
            // After the indentation a tab is content (go-yaml reads `  \t` as "\t"): a
            // line is empty only if it holds spaces alone, or too few for the content.
            let empty = blank && (spaces < bi || line.bytes().all(|c| c == b' '));
            if empty && spaces <= bi {
                lines.push(("", term));
            } else if spaces >= bi {
                lines.push((&line[bi..], term));
                broke = end.is_some();
            } else {
                break;
            }
            self.past_block_line(line, end);
        }
        // Un-consume nothing: we stopped at the start of the first line not in the scalar.
        let trailing = lines.iter().rev().take_while(|l| l.0.is_empty()).count();
        let (body, tail) = lines.split_at(lines.len() - trailing);
        let mut text = if literal {
            let mut t = String::new();
            for (i, (l, brk)) in body.iter().enumerate() {
                t.push_str(l);
                if i + 1 < body.len() {
                    t.push(*brk);
                }
            }
            t
        } else {
            fold_lines(&body.iter().map(|l| l.0).collect::<Vec<_>>())
        };
        let last_break = body.last().map(|l| l.1);
        match chomp {
            -1 => {}
            0 => {
                if let Some(brk) = last_break.filter(|_| broke) {
                    text.push(brk)
                }
            }
            _ => {
                if let Some(brk) = last_break.filter(|_| broke) {
                    text.push(brk);
                }
                text.extend(tail.iter().map(|l| l.1));
            }
        }
        // Leave the cursor at the start of the next line's content search: callers call
        // skip_to_content, which handles the position at a line start.
        Ok(text)
    }

    /// A flow collection or flow scalar (inside `[...]`/`{...}`), spanning lines.
    fn flow_node(&mut self) -> Result<Value, YamlError> {
        self.enter()?;
        let open = self.peek();
        self.pos += 1;
        let v = if open == Some(b'[') {
            let mut items = Vec::new();
            loop {
                self.flow_space()?;
                if self.peek() == Some(b']') {
                    self.pos += 1;
                    break;
                }
                let item = self.flow_item()?;
                self.flow_space()?;
                let item = if self.peek() == Some(b':') {
                    // single-pair mapping inside a sequence
                    self.pos += 1;
                    self.flow_space()?;
                    let v = self.flow_item()?;
                    let k = flow_key(item).map_err(|m| self.located(m))?;
                    Value::Map(vec![(Key::Name(k), v)])
                } else {
                    item
                };
                self.count_node(1)?;
                items.push(item);
                if self.flow_separator(b']', "flow sequence")? {
                    break;
                }
            }
            Value::Seq(items)
        } else {
            let mut items = Vec::new();
            loop {
                self.flow_space()?;
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    break;
                }
                let k = self.flow_item()?;
                let k = flow_key(k).map_err(|m| self.located(m))?;
                self.flow_space()?;
                let v = if self.peek() == Some(b':') {
                    self.pos += 1;
                    self.flow_space()?;
                    if matches!(self.peek(), Some(b',' | b'}')) {
                        Value::Null
                    } else {
                        self.flow_item()?
                    }
                } else {
                    Value::Null
                };
                self.count_node(1)?;
                items.push((Key::Name(k), v));
                if self.flow_separator(b'}', "flow mapping")? {
                    break;
                }
            }
            Value::Map(items)
        };
        self.depth -= 1;
        Ok(v)
    }

    /// A message at the current line.
    fn located(&self, msg: String) -> YamlError {
        YamlError {
            line: self.line_no,
            msg,
        }
    }

    /// After a flow item: `,` (more follow) or the closing bracket (true: closed).
    fn flow_separator(&mut self, close: u8, what: &str) -> Result<bool, YamlError> {
        self.flow_space()?;
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => self.err(format!("expected ',' or '{}' in a {what}", close as char)),
        }
    }

    /// Whitespace, line breaks and comments between flow tokens.
    fn flow_space(&mut self) -> Result<(), YamlError> {
        loop {
            self.skip_blanks();
            if self.at_eof() {
                return self.err("unterminated flow collection");
            }
            if self.peek() == Some(b'#') {
                // Comments inside flow collections are not part of sops's tree.
                let line = self.rest_of_line();
                self.pos += line.len();
            }
            if self.at_eol() {
                self.next_line();
                continue;
            }
            return Ok(());
        }
    }

    fn flow_item(&mut self) -> Result<Value, YamlError> {
        let (anchor, tag) = self.properties()?;
        let v = match self.peek() {
            Some(b'[') | Some(b'{') => self.flow_node()?,
            Some(b'"') => Value::Str(self.double_quoted()?),
            Some(b'\'') => Value::Str(self.single_quoted()?),
            Some(b'*') => self.alias()?,
            _ => {
                let mut out = String::new();
                loop {
                    let start = self.pos;
                    while let Some(c) = self.peek() {
                        if is_flow_indicator(c) || c == b'\n' || c == b'\r' {
                            break;
                        }
                        if c == b':'
                            && matches!(
                                self.peek_at(1),
                                None | Some(
                                    b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}' | b'[' | b'{'
                                )
                            )
                        {
                            break;
                        }
                        if c == b'#' && self.pos > start && is_blank(self.b[self.pos - 1]) {
                            break;
                        }
                        self.pos += 1;
                    }
                    let piece = self.s[start..self.pos].trim_matches(BLANKS);
                    if !piece.is_empty() {
                        if !out.is_empty() {
                            out.push(' ');
                        }
                        out.push_str(piece);
                    }
                    if self.at_eol() && !self.at_eof() {
                        self.next_line();
                        self.skip_blanks();
                        if self.peek() == Some(b'#') || self.at_eol() {
                            break;
                        }
                        continue;
                    }
                    break;
                }
                if out.is_empty() && tag.is_none() {
                    Value::Null
                } else if tag.is_some() {
                    Value::Str(out)
                } else {
                    self.resolve(&out)
                }
            }
        };
        let v = apply_tag(tag.as_deref(), v).map_err(|m| self.located(m))?;
        self.define(anchor, &v);
        Ok(v)
    }
}

/// The first character YAML does not allow in a stream (ASCII checked bytewise, the rest
/// decoded only where non-ASCII bytes appear).
/// Does a (plain or quoted) mapping key followed by `:` start `line`?
fn key_starts(line: &[u8]) -> bool {
    let mut i = 0;
    match line.first() {
        Some(b'"') => {
            i = 1;
            while i < line.len() {
                match line[i] {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            return colon_after(line, i);
        }
        Some(b'\'') => {
            i = 1;
            while i < line.len() {
                if line[i] == b'\'' {
                    if line.get(i + 1) == Some(&b'\'') {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            return colon_after(line, i);
        }
        Some(b'[' | b'{' | b'#' | b'|' | b'>' | b'*' | b'&' | b'!' | b'%' | b'@' | b'`') | None => {
            return false
        }
        _ => {}
    }
    while i < line.len() {
        let c = line[i];
        if c == b'#' && i > 0 && is_blank(line[i - 1]) {
            return false;
        }
        if c == b':' && ends_key(line, i + 1) {
            return true;
        }
        i += 1;
    }
    false
}

/// Length of the node properties (tags, anchors) and blanks at the start of `line`.
fn properties_len(line: &[u8]) -> usize {
    let mut i = 0;
    while matches!(line.get(i), Some(b'!' | b'&')) {
        while i < line.len() && !is_blank(line[i]) {
            i += 1;
        }
        while i < line.len() && is_blank(line[i]) {
            i += 1;
        }
    }
    i
}

fn first_special(s: &str) -> Option<(usize, char)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // Most text is printable ASCII: rule out 32 bytes at a time (no early exit, so
        // the test compiles to vector instructions).
        if let Some(chunk) = b.get(i..i + 32) {
            let odd = chunk.iter().fold(false, |acc, &c| {
                acc | (c < 0x20 && c != b'\t' && c != b'\n' && c != b'\r') | (c >= 0x7f)
            });
            if !odd {
                i += 32;
                continue;
            }
        }
        let c = b[i];
        if c < 0x80 {
            if (c < 0x20 && c != b'\t' && c != b'\n' && c != b'\r') || c == 0x7f {
                return Some((i, c as char));
            }
            i += 1;
        } else {
            let ch = s[i..].chars().next()?;
            if is_special(ch) && !(i == 0 && ch == '\u{feff}') {
                return Some((i, ch));
            }
            i += ch.len_utf8();
        }
    }
    None
}

fn comment_map(comments: Vec<(usize, String)>) -> Value {
    Value::Map(
        comments
            .into_iter()
            .map(|(_, t)| (Key::Comment(t), Value::Null))
            .collect(),
    )
}

/// After a quoted key ending at `close` (its closing quote): blanks, then `:` and a blank.
fn colon_after(line: &[u8], close: usize) -> bool {
    if close >= line.len() {
        return false;
    }
    let mut i = close + 1;
    while i < line.len() && is_blank(line[i]) {
        i += 1;
    }
    line.get(i) == Some(&b':') && ends_key(line, i + 1)
}

fn ends_key(line: &[u8], i: usize) -> bool {
    matches!(line.get(i), None | Some(b' ' | b'\t' | b'\r'))
}

fn flow_key(v: Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s),
        Value::Int(i) => Err(format!("mapping key {i} is not a string")),
        other => Err(format!("mapping key {other:?} is not a string")),
    }
}

/// Fold the lines of a `>` block scalar.
fn fold_lines(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut prev_more_indented = false;
    let mut pending_breaks = 0usize;
    let mut first = true;
    for line in lines {
        if line.is_empty() {
            pending_breaks += 1;
            continue;
        }
        let more = line.starts_with(' ') || line.starts_with('\t');
        if !first {
            if pending_breaks == 0 {
                if more || prev_more_indented {
                    out.push('\n');
                } else {
                    out.push(' ');
                }
            } else {
                let extra = if more || prev_more_indented { 1 } else { 0 };
                out.extend(std::iter::repeat_n('\n', pending_breaks + extra));
            }
        } else {
            out.extend(std::iter::repeat_n('\n', pending_breaks));
        }
        pending_breaks = 0;
        first = false;
        prev_more_indented = more;
        out.push_str(line);
    }
    out
}

/// Apply an explicit tag to a parsed node.
fn apply_tag(tag: Option<&str>, v: Value) -> Result<Value, String> {
    let Some(tag) = tag else { return Ok(v) };
    let scalar_text = |v: &Value| -> Option<String> {
        match v {
            Value::Str(s) => Some(s.clone()),
            Value::Null => Some(String::new()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(format_float_g(*f)),
            Value::Bool(b) => Some(b.to_string()),
            Value::Time(t) => Some(t.clone()),
            _ => None,
        }
    };
    Ok(match tag {
        "!!str" | "tag:yaml.org,2002:str" => match scalar_text(&v) {
            Some(s) => Value::Str(s),
            None => v,
        },
        "!!int" | "!!float" | "!!bool" | "!!null" | "!!timestamp" => {
            let text = scalar_text(&v).ok_or_else(|| format!("{tag} on a collection"))?;
            let r = resolve_plain(&text);
            let ok = matches!(
                (tag, &r),
                ("!!int", Value::Int(_))
                    | ("!!float", Value::Float(_))
                    | ("!!bool", Value::Bool(_))
                    | ("!!null", Value::Null)
                    | ("!!timestamp", Value::Time(_))
            );
            match (tag, r) {
                (_, r) if ok => r,
                ("!!float", Value::Int(i)) => Value::Float(i as f64),
                _ => return Err(format!("cannot decode {text:?} as {tag}")),
            }
        }
        "!!binary" => {
            use base64::Engine;
            let text = scalar_text(&v).ok_or("!!binary on a collection")?;
            let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|_| "invalid !!binary data".to_string())?;
            Value::Str(String::from_utf8_lossy(&bytes).into_owned())
        }
        // Other tags (local tags, !!map, !!seq...) do not change what sops stores.
        _ => v,
    })
}

/// Resolve an untagged plain scalar like go-yaml v3 does when decoding into `interface{}`.
/// A plain scalar as kubectl reads it (go-yaml v2, YAML 1.1 booleans, timestamps kept as
/// text).
pub fn resolve_yaml11(s: &str) -> Value {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Value::Bool(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Value::Bool(false),
        _ => match resolve_plain(s) {
            Value::Time(_) => Value::Str(s.to_string()),
            v => v,
        },
    }
}

/// A plain mapping key as kubectl's JSON has it: the text of its YAML 1.1 value.
fn yaml11_key(raw: &str) -> Option<String> {
    Some(match resolve_yaml11(raw) {
        Value::Str(s) => s,
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) if f.is_finite() => super::value::format_float_g(f),
        _ if raw == "<<" => raw.to_string(),
        _ => return None,
    })
}

pub fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'+' | b'-' | b'.')) {
        return Value::Str(s.to_string());
    }
    let plain: String = s.chars().filter(|&c| c != '_').collect();
    if let Some(i) = parse_go_int(&plain) {
        return Value::Int(i);
    }
    // Go's ParseFloat fails (ErrRange) beyond float64's range, where Rust's gives an
    // infinity: go-yaml then reads the text as a string.
    if is_yaml_float(&plain) {
        if let Some(f) = plain.parse::<f64>().ok().filter(|f| f.is_finite()) {
            return Value::Float(f);
        }
    }
    if is_decimal_int(&plain) {
        // Too large for an int: go-yaml falls back to a float.
        if let Some(f) = plain.parse::<f64>().ok().filter(|f| f.is_finite()) {
            return Value::Float(f);
        }
    }
    if let Some(t) = parse_timestamp(s) {
        return Value::Time(t);
    }
    Value::Str(s.to_string())
}

fn is_decimal_int(s: &str) -> bool {
    let d = s.strip_prefix(['+', '-']).unwrap_or(s);
    !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit())
}

/// Go's `strconv.ParseInt(s, 0, 64)`: sign, then 0x/0o/0b/0 prefixes.
fn parse_go_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(r) = body.strip_prefix("0x").or(body.strip_prefix("0X")) {
        (16, r)
    } else if let Some(r) = body.strip_prefix("0o").or(body.strip_prefix("0O")) {
        (8, r)
    } else if let Some(r) = body.strip_prefix("0b").or(body.strip_prefix("0B")) {
        (2, r)
    } else if body.len() > 1 && body.starts_with('0') {
        (8, &body[1..])
    } else {
        (10, body)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            Some((mag as i128).wrapping_neg() as i64)
        } else {
            None
        }
    } else {
        i64::try_from(mag).ok()
    }
}

/// go-yaml's float pattern: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if int_digits == 0 && i == frac_start {
            return false;
        }
    } else if int_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// YAML timestamps as go-yaml accepts them, rendered as Go's RFC 3339 (nano) text.
fn parse_timestamp(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return None;
    }
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim_start())),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y: u32 = dp.next()?.parse().ok()?;
    let m: u32 = num12(dp.next()?)?;
    let d: u32 = num12(dp.next()?)?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let Some(time) = time else {
        return Some(format!("{y:04}-{m:02}-{d:02}T00:00:00Z"));
    };
    // hh:mm:ss[.frac][zone]
    let zone_at = time
        .char_indices()
        .skip(1)
        .find(|&(_, c)| c == 'Z' || c == 'z' || c == '+' || c == '-')
        .map(|(i, _)| i);
    let (clock, zone) = match zone_at {
        Some(i) => (&time[..i], Some(&time[i..])),
        None => (time, None),
    };
    let clock = clock.trim_end();
    let (hms, frac) = match clock.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (clock, None),
    };
    let mut tp = hms.split(':');
    let hh = num12(tp.next()?)?;
    let mm = num12(tp.next()?)?;
    let ss = num12(tp.next()?)?;
    if tp.next().is_some() || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let frac = match frac {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|c| c.is_ascii_digit()) => {
            let t = f.trim_end_matches('0');
            if t.is_empty() {
                String::new()
            } else {
                format!(".{t}")
            }
        }
        Some(_) => return None,
        None => String::new(),
    };
    let zone = match zone {
        None | Some("Z") | Some("z") => "Z".to_string(),
        Some(z) => {
            let sign = &z[..1];
            let rest = &z[1..];
            let (zh, zm) = match rest.split_once(':') {
                Some((h, m)) => (h, m),
                None => return None,
            };
            let zh = num12(zh)?;
            let zm = num12(zm)?;
            if zh == 0 && zm == 0 {
                "Z".to_string()
            } else {
                format!("{sign}{zh:02}:{zm:02}")
            }
        }
    };
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}{frac}{zone}"
    ))
}

fn num12(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Value> {
        parse(s, Limits::default()).expect("parses")
    }

    fn name(s: &str) -> Key {
        Key::Name(s.into())
    }

    #[test]
    fn a_large_text_reads_the_same_with_its_comment_model_on_another_thread() {
        // Comments in every position the model moves them from: head, line end, foot of
        // a nested block, between sequence items.
        let mut text = String::from("# top\n");
        for i in 0..1500 {
            text.push_str(&format!(
                "k{i}: # line {i}\n  a: 1 # a\n  list:\n  # before\n  - x\n  # between\n  - y\n  # foot\n"
            ));
        }
        text.push_str("# end\n");
        assert!(text.len() >= PARALLEL_MODEL_BYTES);
        let one = parse_with(&text, Limits::default(), false).expect("parses");
        let two = parse_with(&text, Limits::default(), true).expect("parses");
        assert_eq!(one, two);
        let comments = crate::crypto::yaml::nodes::comment_list(&two[0]);
        // The count the one-thread reading gives, pinned.
        assert_eq!(comments.len(), 2 + 1500 * 5, "{:?}", &comments[..8]);
        let bad = format!("{text}x: [\n");
        assert!(parse_with(&bad, Limits::default(), true).is_err());
    }

    #[test]
    fn scalars_resolve_like_go_yaml() {
        assert_eq!(resolve_plain("0x1F"), Value::Int(31));
        assert_eq!(resolve_plain("017"), Value::Int(15));
        assert_eq!(resolve_plain("1_000"), Value::Int(1000));
        assert_eq!(resolve_plain("1e3"), Value::Float(1000.0));
        assert_eq!(resolve_plain("yes"), Value::Str("yes".into()));
        assert_eq!(resolve_plain("1.4.2"), Value::Str("1.4.2".into()));
        assert_eq!(
            resolve_plain("2024-01-02"),
            Value::Time("2024-01-02T00:00:00Z".into())
        );
        assert_eq!(
            resolve_plain("2001-12-14t21:59:43.10-05:00"),
            Value::Time("2001-12-14T21:59:43.1-05:00".into())
        );
    }

    #[test]
    fn nested_structures_and_comments() {
        let docs = p("# head\na:\n  b: 1 # inline\n  # inner\n  c: [x, 'y', {z: 2}]\nlist:\n  - k: v\n    j: w\n  - - n\n  -\n  - \"q\"\ns: |\n  l1\n  l2\n");
        let expect = Value::Map(vec![
            (Key::Comment(" head".into()), Value::Null),
            (
                name("a"),
                Value::Map(vec![
                    (Key::Comment(" inline".into()), Value::Null),
                    (name("b"), Value::Int(1)),
                    (Key::Comment(" inner".into()), Value::Null),
                    (
                        name("c"),
                        Value::Seq(vec![
                            Value::Str("x".into()),
                            Value::Str("y".into()),
                            Value::Map(vec![(name("z"), Value::Int(2))]),
                        ]),
                    ),
                ]),
            ),
            (
                name("list"),
                Value::Seq(vec![
                    Value::Map(vec![
                        (name("k"), Value::Str("v".into())),
                        (name("j"), Value::Str("w".into())),
                    ]),
                    Value::Seq(vec![Value::Str("n".into())]),
                    Value::Null,
                    Value::Str("q".into()),
                ]),
            ),
            (name("s"), Value::Str("l1\nl2\n".into())),
        ]);
        assert_eq!(docs, vec![expect]);
    }

    #[test]
    fn alias_bomb_fails_fast() {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            s.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        let err = parse(&s, Limits::default()).expect_err("bomb refused");
        assert!(err.msg.contains("too large"), "{err}");
    }

    #[test]
    fn deep_nesting_fails() {
        // Valid YAML (balanced brackets, and block mappings) nested past the limit.
        let flow = format!("a: {}{}\n", "[".repeat(1000), "]".repeat(1000));
        let block: String = (0..1000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        for s in [flow, block] {
            let e = parse(&s, Limits::default()).expect_err("too deep");
            assert!(e.to_string().contains("nesting deeper than"), "{e}");
        }
        let shallow = format!("a: {}{}\n", "[".repeat(10), "]".repeat(10));
        assert!(parse(&shallow, Limits::default()).is_ok());
    }

    #[test]
    fn emit_matches_sops_style() {
        let docs = p(
            "a:\n  b: \"123\"\n  c: yes\nl:\n  - k: v\n    j: w\n  - x\nm: \"l1\\nl2\"\ne: {}\n",
        );
        assert_eq!(
            emit(&docs),
            "a:\n    b: \"123\"\n    c: \"yes\"\nl:\n    - k: v\n      j: w\n    - x\nm: |-\n    l1\n    l2\ne: {}\n"
        );
    }

    #[test]
    fn multi_documents() {
        let docs = p("a: 1\n---\nb: 2\n...\n---\nc: 3\n");
        assert_eq!(docs.len(), 3);
        assert_eq!(emit(&docs), "a: 1\n---\nb: 2\n---\nc: 3\n");
    }
}
#[cfg(test)]
mod fuzz_regressions {
    use super::*;

    fn writer_round_trips(text: &str) {
        let docs = parse(text, Limits::default()).expect("parses");
        let out = emit(&docs);
        let again = parse(&out, Limits::default()).expect("writer output parses");
        let strip = |d: &[Value]| d.iter().map(Value::without_comments).collect::<Vec<_>>();
        assert_eq!(strip(&again), strip(&docs), "{text:?} -> {out:?}");
    }

    #[test]
    fn comment_only_documents() {
        writer_round_trips("# a\n---\n# b\n");
        writer_round_trips("# a\n---\n# b\n...\n");
        writer_round_trips("a: 1\n---\n# only a comment\n---\nb: 2\n");
        writer_round_trips("nkeep: |+\n     ");
        writer_round_trips("k: |+\n\n  x\n\n");
        assert!(parse("a\u{1e}: b", Limits::default()).is_err());
        // Found by fuzzing: DEL inside comments is refused like go-yaml does.
        assert!(parse("# cusword:oooooooooooo\x7fooooooo s4cr3t\n---\n#!secooooooooooooo......................................................................................................oo\x7fooooooo s4cr3t\n---\n#!secon-\n#!second docuooooooo.........................", Limits::default()).is_err());
    }
}

/// An anchor name and the order its definition started in.
type Anchor = (String, u64);
