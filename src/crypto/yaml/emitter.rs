//! How sops 3.11 writes a tree: its `appendTreeBranch`/`appendSequence` turn comment items
//! into head and foot comments of nodes, go-yaml's encoder turns nodes into events (a
//! key's foot becomes the "tail" of what follows), and go-yaml's emitter prints events.
//! Where a comment lands (column, blank line before it, even after which later node) is
//! decided by the emitter's state when the comment is processed, so this is a model of
//! that state machine, limited to what sops produces: block collections, empty flow
//! collections, scalars.

use super::emit::{key_text, literal_ok, scalar_text_at};
use crate::crypto::value::{Key, Value};

/// A node as sops builds it for the encoder.
enum NodeKind<'a> {
    Map(Vec<(ENode<'a>, ENode<'a>)>),
    Seq(Vec<ENode<'a>>),
    Scalar(&'a Value),
    Key(&'a str),
    /// The placeholder for the `sops:` entry: where the body's text ends.
    Marker,
}

struct ENode<'a> {
    kind: NodeKind<'a>,
    head: String,
    foot: String,
}

fn enode(kind: NodeKind<'_>) -> ENode<'_> {
    ENode {
        kind,
        head: String::new(),
        foot: String::new(),
    }
}

/// sops's `addCommentsHead`: the comments go before what the node already has.
fn add_head(n: &mut ENode, comments: &mut Vec<&str>) {
    if comments.is_empty() {
        return;
    }
    let c = format!("#{}", comments.join("\n#"));
    n.head = if n.head.is_empty() {
        c
    } else {
        format!("{c}\n{}", n.head)
    };
    comments.clear();
}

fn add_foot(n: &mut ENode, comments: &mut Vec<&str>) {
    if comments.is_empty() {
        return;
    }
    let c = format!("#{}", comments.join("\n#"));
    if n.foot.is_empty() {
        n.foot = c;
    } else {
        n.foot.push('\n');
        n.foot.push_str(&c);
    }
    comments.clear();
}

fn tree_node(v: &Value) -> ENode<'_> {
    match v {
        Value::Map(items) => branch_node(items, false),
        Value::Seq(items) => {
            let mut seq = enode(NodeKind::Seq(Vec::new()));
            let mut comments = Vec::new();
            let mut children = Vec::new();
            let mut beginning = true;
            for item in items {
                if let Value::Comment(c) = item {
                    comments.push(c.as_str());
                    continue;
                }
                if beginning {
                    add_head(&mut seq, &mut comments);
                    beginning = false;
                }
                let mut n = tree_node(item);
                add_head(&mut n, &mut comments);
                children.push(n);
            }
            if !comments.is_empty() {
                match children.last_mut() {
                    Some(last) => add_foot(last, &mut comments),
                    None => add_head(&mut seq, &mut comments),
                }
            }
            seq.kind = NodeKind::Seq(children);
            seq
        }
        other => enode(NodeKind::Scalar(other)),
    }
}

/// sops's `appendTreeBranch`; `marker` appends the metadata entry sops adds last.
fn branch_node(items: &[(Key, Value)], marker: bool) -> ENode<'_> {
    let mut map = enode(NodeKind::Map(Vec::new()));
    let mut pairs: Vec<(ENode, ENode)> = Vec::new();
    let mut beginning = true;
    // Each entry with the comments that stood before it.
    let mut entries: Vec<(Vec<&str>, &str, Option<&Value>)> = Vec::new();
    let mut pending: Vec<&str> = Vec::new();
    for (k, v) in items {
        match k {
            Key::Comment(c) => pending.push(c.as_str()),
            Key::Name(n) => entries.push((std::mem::take(&mut pending), n.as_str(), Some(v))),
        }
    }
    if marker {
        entries.push((std::mem::take(&mut pending), "sops", None));
    }
    for (mut before, name, v) in entries {
        if beginning {
            add_head(&mut map, &mut before);
            beginning = false;
        }
        let mut key = enode(if v.is_some() {
            NodeKind::Key(name)
        } else {
            NodeKind::Marker
        });
        add_head(&mut key, &mut before);
        let value = match v {
            Some(v) => tree_node(v),
            None => enode(NodeKind::Marker),
        };
        pairs.push((key, value));
    }
    if !pending.is_empty() {
        match pairs.last_mut() {
            Some((k, _)) => add_foot(k, &mut pending),
            None => add_head(&mut map, &mut pending),
        }
    }
    map.kind = NodeKind::Map(pairs);
    map
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EvKind {
    MapStart,
    MapEnd,
    SeqStart,
    SeqEnd,
    Scalar,
    Marker,
}

struct Ev<'a> {
    kind: EvKind,
    value: Option<&'a Value>,
    key: Option<&'a str>,
    head: String,
    foot: String,
    tail: String,
}

fn ev<'a>(kind: EvKind) -> Ev<'a> {
    Ev {
        kind,
        value: None,
        key: None,
        head: String::new(),
        foot: String::new(),
        tail: String::new(),
    }
}

/// go-yaml's encoder: nodes to events. A key's foot is carried to what follows it.
fn events<'a>(n: ENode<'a>, tail: String, out: &mut Vec<Ev<'a>>) {
    match n.kind {
        NodeKind::Map(pairs) => {
            let mut e = ev(EvKind::MapStart);
            e.head = n.head;
            e.tail = tail;
            out.push(e);
            let mut tail = String::new();
            for (mut k, v) in pairs {
                let foot = std::mem::take(&mut k.foot);
                events(k, std::mem::take(&mut tail), out);
                tail = foot;
                events(v, String::new(), out);
            }
            let mut e = ev(EvKind::MapEnd);
            e.tail = tail;
            e.foot = n.foot;
            out.push(e);
        }
        NodeKind::Seq(items) => {
            let mut e = ev(EvKind::SeqStart);
            e.head = n.head;
            out.push(e);
            for i in items {
                events(i, String::new(), out);
            }
            let mut e = ev(EvKind::SeqEnd);
            e.foot = n.foot;
            out.push(e);
        }
        NodeKind::Scalar(_) | NodeKind::Key(_) | NodeKind::Marker => {
            let mut e = ev(EvKind::Scalar);
            match n.kind {
                NodeKind::Scalar(v) => e.value = Some(v),
                NodeKind::Key(k) => e.key = Some(k),
                _ => e.kind = EvKind::Marker,
            }
            e.head = n.head;
            e.foot = n.foot;
            e.tail = tail;
            out.push(e);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    DocContent,
    DocEnd,
    BlockSeqFirst,
    BlockSeqItem,
    BlockMapFirstKey,
    BlockMapKey,
    BlockMapValue,
    FlowSeqFirst,
    FlowMapFirst,
    End,
}

struct Emitter {
    out: String,
    best: i64,
    column: i64,
    indent: i64,
    indents: Vec<i64>,
    state: St,
    states: Vec<St>,
    whitespace: bool,
    indention: bool,
    foot_indent: i64,
    head: String,
    foot: String,
    tail: String,
    /// Where the `sops:` entry's text begins.
    marker_at: Option<usize>,
}

impl Emitter {
    fn put(&mut self, s: &str) {
        for c in s.chars() {
            if c == '\n' {
                self.column = 0;
                self.indention = true;
            } else {
                self.column += 1;
            }
        }
        self.out.push_str(s);
    }

    fn put_break(&mut self) {
        self.put("\n");
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0);
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        if self.foot_indent == indent {
            self.put_break();
        }
        while self.column < indent {
            self.put(" ");
        }
        self.whitespace = true;
        self.foot_indent = -1;
    }

    fn indicator(&mut self, s: &str, need_ws: bool, is_ws: bool, is_indention: bool) {
        if need_ws && !self.whitespace {
            self.put(" ");
        }
        self.put(s);
        self.whitespace = is_ws;
        self.indention = self.indention && is_indention;
    }

    fn write_comment(&mut self, c: &str) {
        let mut breaks = false;
        for (i, line) in c.split('\n').enumerate() {
            if i > 0 {
                self.put_break();
                breaks = true;
            }
            if line.is_empty() {
                continue;
            }
            if breaks {
                self.write_indent();
            }
            if !line.starts_with('#') {
                self.put("# ");
            }
            self.put(line);
            self.indention = false;
            breaks = false;
        }
        if !breaks {
            self.put_break();
        }
        self.whitespace = true;
    }

    fn process_head(&mut self) {
        if !self.tail.is_empty() {
            self.write_indent();
            let t = std::mem::take(&mut self.tail);
            self.write_comment(&t);
            self.foot_indent = self.indent.max(0);
        }
        if self.head.is_empty() {
            return;
        }
        self.write_indent();
        let h = std::mem::take(&mut self.head);
        self.write_comment(&h);
    }

    fn process_foot(&mut self) {
        if self.foot.is_empty() {
            return;
        }
        self.write_indent();
        let f = std::mem::take(&mut self.foot);
        self.write_comment(&f);
        self.foot_indent = self.indent.max(0);
    }

    fn increase_indent(&mut self, flow: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { self.best } else { 0 };
        } else if self.states.last() == Some(&St::BlockSeqItem) {
            // Directly inside `- `: just past the indicator.
            self.indent += 2;
        } else {
            self.indent = self.best * ((self.indent + self.best) / self.best);
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn pop_state(&mut self) {
        self.state = self.states.pop().unwrap_or(St::End);
    }

    fn emit(&mut self, e: &Ev, next: Option<EvKind>) {
        if !e.head.is_empty() {
            self.head.clone_from(&e.head);
        }
        if !e.foot.is_empty() {
            self.foot.clone_from(&e.foot);
        }
        if !e.tail.is_empty() {
            self.tail.clone_from(&e.tail);
        }
        match self.state {
            St::DocContent => {
                self.states.push(St::DocEnd);
                self.process_head();
                self.node(e, next, false);
                self.process_foot();
            }
            St::BlockSeqFirst | St::BlockSeqItem => {
                if self.state == St::BlockSeqFirst {
                    self.increase_indent(false);
                }
                if e.kind == EvKind::SeqEnd {
                    self.pop_indent();
                    self.pop_state();
                    return;
                }
                self.process_head();
                self.write_indent();
                self.indicator("-", true, false, true);
                self.states.push(St::BlockSeqItem);
                self.node(e, next, false);
                self.process_foot();
            }
            St::BlockMapFirstKey | St::BlockMapKey => {
                if self.state == St::BlockMapFirstKey {
                    self.increase_indent(false);
                }
                self.process_head();
                if e.kind == EvKind::MapEnd {
                    self.pop_indent();
                    self.pop_state();
                    return;
                }
                self.write_indent();
                if e.kind == EvKind::Marker && self.marker_at.is_none() {
                    self.marker_at = Some(self.out.len());
                }
                self.states.push(St::BlockMapValue);
                self.node(e, next, true);
            }
            St::BlockMapValue => {
                self.indicator(":", false, false, false);
                self.states.push(St::BlockMapKey);
                self.node(e, next, false);
                self.process_foot();
            }
            St::FlowSeqFirst | St::FlowMapFirst => {
                // Only empty collections are written in flow style.
                let (open, close) = if self.state == St::FlowSeqFirst {
                    ("[", "]")
                } else {
                    ("{", "}")
                };
                self.indicator(open, true, true, false);
                if close == "}" {
                    self.process_head();
                } else if self.column == 0 {
                    self.write_indent();
                }
                self.indicator(close, false, false, false);
                self.process_foot();
                self.pop_state();
            }
            St::DocEnd | St::End => {}
        }
    }

    fn node(&mut self, e: &Ev, next: Option<EvKind>, key: bool) {
        match e.kind {
            EvKind::SeqStart => {
                self.state = if next == Some(EvKind::SeqEnd) {
                    St::FlowSeqFirst
                } else {
                    St::BlockSeqFirst
                };
            }
            EvKind::MapStart => {
                self.state = if next == Some(EvKind::MapEnd) {
                    St::FlowMapFirst
                } else {
                    St::BlockMapFirstKey
                };
            }
            EvKind::Scalar | EvKind::Marker => {
                self.increase_indent(true);
                let indent = self.indent as usize;
                if let Some(k) = e.key {
                    let t = key_text(k);
                    self.scalar_text(&t);
                } else if e.kind == EvKind::Marker {
                    let t = if key { "sops" } else { "{}" };
                    self.scalar_text(t);
                } else if let Some(v) = e.value {
                    match v {
                        // sops makes each value a node with go-yaml's `Node.Encode`, which
                        // prints the value alone and reads it back: a literal block that
                        // starts with a tab reads back as an empty scalar, so sops prints
                        // `null` for it.
                        Value::Str(s) if !key && literal_ok(s) && s.starts_with('\t') => {
                            self.scalar_text("null")
                        }
                        Value::Str(s) if !key && literal_ok(s) => self.literal(s),
                        other => {
                            let t = scalar_text_at(other, indent);
                            self.scalar_text(&t);
                        }
                    }
                }
                self.pop_indent();
                self.pop_state();
            }
            EvKind::MapEnd | EvKind::SeqEnd => {}
        }
    }

    fn scalar_text(&mut self, t: &str) {
        if !t.is_empty() && !self.whitespace {
            self.put(" ");
        }
        self.put(t);
        self.whitespace = false;
        self.indention = false;
    }

    /// A literal block scalar, written as go-yaml v3.0.4 writes it (`write_literal_scalar`,
    /// `write_block_scalar_hints`). Its line breaks are LF, NEL, LS and PS: LS and PS are
    /// written as they are and start a line without a `\n`. When the text starts with a
    /// space or a break, go-yaml writes its step as the indentation hint, even where the
    /// content sits elsewhere (in list items): sops prints that, and our reader takes it
    /// back (see `block_scalar`).
    fn literal(&mut self, s: &str) {
        let brk = |c: char| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
        self.indicator("|", true, false, false);
        if s.starts_with(' ') || s.chars().next().is_some_and(brk) {
            let hint = self.best.to_string();
            self.indicator(&hint, false, false, false);
        }
        let mut rev = s.chars().rev();
        match (rev.next(), rev.next()) {
            (None, _) => self.indicator("-", false, false, false),
            (Some(last), _) if !brk(last) => self.indicator("-", false, false, false),
            (Some(_), None) => self.indicator("+", false, false, false),
            (Some(_), Some(prev)) if brk(prev) => self.indicator("+", false, false, false),
            _ => {}
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for c in s.chars() {
            match c {
                '\n' => {
                    self.put_break();
                    breaks = true;
                }
                c if brk(c) => {
                    self.out.push(c);
                    self.column = 0;
                    self.indention = true;
                    breaks = true;
                }
                c => {
                    if breaks {
                        self.write_indent();
                        breaks = false;
                    }
                    self.out.push(c);
                    self.column += 1;
                    self.indention = false;
                }
            }
        }
    }
}

/// One document as sops writes it, indentation `step`. With `marker`, the document gets
/// sops's metadata entry last (as in an encrypted file) and the text stops where that
/// entry's key would begin.
pub(super) fn emit_document(d: &Value, step: usize, marker: bool) -> String {
    let root = match d {
        Value::Map(items) => branch_node(items, marker),
        other => tree_node(other),
    };
    let mut evs = Vec::new();
    events(root, String::new(), &mut evs);
    let mut e = Emitter {
        out: String::new(),
        best: step.max(1) as i64,
        column: 0,
        indent: -1,
        indents: Vec::new(),
        state: St::DocContent,
        states: Vec::new(),
        whitespace: true,
        indention: true,
        foot_indent: -1,
        head: String::new(),
        foot: String::new(),
        tail: String::new(),
        marker_at: None,
    };
    for i in 0..evs.len() {
        let next = evs.get(i + 1).map(|x| x.kind);
        e.emit(&evs[i], next);
    }
    // Document end: go-yaml separates a pending foot comment from the content.
    e.foot_indent = 0;
    e.process_foot();
    e.foot_indent = -1;
    e.write_indent();
    if let Some(at) = e.marker_at {
        e.out.truncate(at);
        return e.out;
    }
    e.out
}
