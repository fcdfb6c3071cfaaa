//! go-yaml v3's node composer (events to nodes with head/line/foot comments) and sops
//! 3.11's conversion of those nodes into its tree, where each comment becomes an item of
//! one container: that choice decides the comment's AAD, so it follows sops exactly.
//!
//! Values are not read here: the main reader has them. The conversion walks its value
//! tree alongside the nodes and only decides where comments go.

use std::collections::HashMap;

use super::events::{Ev, Event, Parser};
use crate::crypto::value::{Key, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Doc,
    Scalar,
    Seq,
    Map,
    Alias(usize),
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    content: Vec<usize>,
    head: String,
    line: String,
    foot: String,
}

struct Composer {
    ev: Vec<Event>,
    i: usize,
    nodes: Vec<Node>,
    anchors: HashMap<String, usize>,
}

type CResult<T> = Result<T, String>;

impl Composer {
    fn peek(&self) -> CResult<&Event> {
        self.ev
            .get(self.i)
            .ok_or_else(|| "unexpected end of events".into())
    }

    fn node(&mut self, kind: Kind) -> CResult<usize> {
        let e = self.peek()?;
        let n = Node {
            kind,
            content: Vec::new(),
            head: e.head.clone(),
            line: e.line.clone(),
            foot: e.foot.clone(),
        };
        self.nodes.push(n);
        Ok(self.nodes.len() - 1)
    }

    fn anchor(&mut self, n: usize) -> CResult<()> {
        let a = self.peek()?.anchor.clone();
        if !a.is_empty() {
            self.anchors.insert(a, n);
        }
        Ok(())
    }

    fn parse(&mut self, depth: usize) -> CResult<usize> {
        if depth > 256 {
            return Err("nesting too deep".into());
        }
        let e = self.peek()?.clone();
        match e.typ {
            Ev::Scalar => {
                let n = self.node(Kind::Scalar)?;
                self.anchor(n)?;
                self.i += 1;
                Ok(n)
            }
            Ev::Alias => {
                let target = *self
                    .anchors
                    .get(&e.anchor)
                    .ok_or_else(|| format!("unknown anchor '{}' referenced", e.anchor))?;
                let n = self.node(Kind::Alias(target))?;
                self.i += 1;
                Ok(n)
            }
            Ev::SeqStart => {
                let n = self.node(Kind::Seq)?;
                self.anchor(n)?;
                self.i += 1;
                while self.peek()?.typ != Ev::SeqEnd {
                    let c = self.parse(depth + 1)?;
                    self.nodes[n].content.push(c);
                }
                let end = self.peek()?;
                let (line, foot) = (end.line.clone(), end.foot.clone());
                self.nodes[n].line = line;
                self.nodes[n].foot = foot;
                self.i += 1;
                Ok(n)
            }
            Ev::MapStart => {
                let n = self.node(Kind::Map)?;
                let block = !e.flow;
                self.anchor(n)?;
                self.i += 1;
                while self.peek()?.typ != Ev::MapEnd {
                    let k = self.parse(depth + 1)?;
                    self.nodes[n].content.push(k);
                    let len = self.nodes[n].content.len();
                    if block && !self.nodes[k].foot.is_empty() && len > 2 {
                        // A foot on a key when dedenting belongs to the prior value.
                        let prev = self.nodes[n].content[len - 3];
                        self.nodes[prev].foot = std::mem::take(&mut self.nodes[k].foot);
                    }
                    let v = self.parse(depth + 1)?;
                    self.nodes[n].content.push(v);
                    if self.nodes[k].foot.is_empty() && !self.nodes[v].foot.is_empty() {
                        self.nodes[k].foot = std::mem::take(&mut self.nodes[v].foot);
                    }
                }
                let end = self.peek()?;
                let (line, foot) = (end.line.clone(), end.foot.clone());
                self.nodes[n].line = line;
                self.nodes[n].foot = foot;
                let len = self.nodes[n].content.len();
                if block && !self.nodes[n].foot.is_empty() && len > 1 {
                    let last_key = self.nodes[n].content[len - 2];
                    self.nodes[last_key].foot = std::mem::take(&mut self.nodes[n].foot);
                }
                self.i += 1;
                Ok(n)
            }
            Ev::DocStart => {
                let n = self.node(Kind::Doc)?;
                self.i += 1;
                let c = self.parse(depth + 1)?;
                self.nodes[n].content.push(c);
                let end = self.peek()?;
                if end.typ != Ev::DocEnd {
                    return Err("expected the end of a document".into());
                }
                let foot = end.foot.clone();
                self.nodes[n].foot = foot;
                self.i += 1;
                Ok(n)
            }
            _ => Err("unexpected event".into()),
        }
    }
}

/// sops's comment items of one comment text: one per non-empty line, without the `#`.
fn comment_lines(c: &str) -> impl Iterator<Item = String> + '_ {
    c.split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| l.get(1..).unwrap_or("").to_string())
}

struct Conv<'a> {
    nodes: &'a [Node],
}

type Branch = Vec<(Key, Value)>;

fn push_map(b: &mut Branch, c: &str) {
    b.extend(comment_lines(c).map(|t| (Key::Comment(t), Value::Null)));
}

fn push_list(l: &mut Vec<Value>, c: &str) {
    l.extend(comment_lines(c).map(Value::Comment));
}

impl Conv<'_> {
    /// sops's `nodeToTreeValue`: `v` is the node's value without comments.
    fn value(&self, n: usize, handled: bool, v: &Value) -> Option<Value> {
        let node = &self.nodes[n];
        match node.kind {
            Kind::Seq => {
                let Value::Seq(items) = v else { return None };
                if items.len() != node.content.len() {
                    return None;
                }
                let mut out = Vec::new();
                if !handled {
                    push_list(&mut out, &node.head);
                    push_list(&mut out, &node.line);
                }
                for (&c, iv) in node.content.iter().zip(items) {
                    let item = &self.nodes[c];
                    push_list(&mut out, &item.head);
                    push_list(&mut out, &item.line);
                    out.push(self.value(c, true, iv)?);
                    push_list(&mut out, &item.foot);
                }
                if !handled {
                    push_list(&mut out, &node.foot);
                }
                Some(Value::Seq(out))
            }
            Kind::Map => {
                let mut b = Vec::new();
                self.branch(n, &mut b, handled, v)?;
                Some(Value::Map(b))
            }
            Kind::Scalar => match v {
                Value::Map(_) | Value::Seq(_) => None,
                other => Some(other.clone()),
            },
            Kind::Alias(t) => self.value(t, false, v),
            Kind::Doc => None,
        }
    }

    /// sops's `appendYamlNodeToTreeBranch`.
    fn branch(&self, n: usize, b: &mut Branch, handled: bool, v: &Value) -> Option<()> {
        let node = &self.nodes[n];
        if !handled {
            push_map(b, &node.head);
            push_map(b, &node.line);
        }
        match node.kind {
            Kind::Doc => {
                for &c in &node.content {
                    self.branch(c, b, false, v)?;
                }
            }
            Kind::Map => {
                let Value::Map(items) = v else { return None };
                if items.len() * 2 != node.content.len() {
                    return None;
                }
                for (pair, (k, iv)) in node.content.chunks(2).zip(items) {
                    let (kn, vn) = (&self.nodes[pair[0]], &self.nodes[pair[1]]);
                    push_map(b, &kn.head);
                    push_map(b, &kn.line);
                    let own = matches!(vn.kind, Kind::Scalar | Kind::Alias(_));
                    if own {
                        push_map(b, &vn.head);
                        push_map(b, &vn.line);
                    }
                    let tv = self.value(pair[1], own, iv)?;
                    b.push((k.clone(), tv));
                    if own {
                        push_map(b, &vn.foot);
                    }
                    push_map(b, &kn.foot);
                }
            }
            Kind::Scalar => {
                // An empty document: sops returns before the foot comment.
                return if matches!(v, Value::Null) || matches!(v, Value::Map(m) if m.is_empty()) {
                    Some(())
                } else {
                    None
                };
            }
            Kind::Alias(t) => self.branch(t, b, false, v)?,
            Kind::Seq => return None,
        }
        if !handled {
            push_map(b, &node.foot);
        }
        Some(())
    }
}

/// go-yaml's node graph of `text`: its nodes and each document's root. It does not need
/// the main reader's documents, so it can be built beside them (see `super::parse`).
pub(super) struct Model {
    nodes: Vec<Node>,
    roots: Vec<usize>,
}

/// The model of `text`, or `None` if go-yaml's reader (as modelled) refuses it.
pub(super) fn model(text: &str) -> Option<Model> {
    let events = Parser::new(text).events(4_000_000).ok()?;
    let mut c = Composer {
        ev: events,
        i: 0,
        nodes: Vec::new(),
        anchors: HashMap::new(),
    };
    if c.peek().ok()?.typ != Ev::StreamStart {
        return None;
    }
    c.i = 1;
    let mut roots = Vec::new();
    while c.peek().ok()?.typ != Ev::StreamEnd {
        roots.push(c.parse(0).ok()?);
    }
    Some(Model {
        nodes: c.nodes,
        roots,
    })
}

/// `docs` (the main reader's documents: same values, its own comment placement) with
/// their comments where sops 3.11 puts them, by `m`, the model of their text. `None`
/// when the model does not see the same structure: the caller keeps its own reading.
pub(super) fn place(m: &Model, docs: &[Value]) -> Option<Vec<Value>> {
    if m.roots.len() != docs.len() {
        return None;
    }
    let conv = Conv { nodes: &m.nodes };
    let mut out = Vec::with_capacity(docs.len());
    for (&r, d) in m.roots.iter().zip(docs) {
        let plain = d.without_comments();
        let mut b = Vec::new();
        conv.branch(r, &mut b, false, &plain)?;
        out.push(Value::Map(b));
    }
    Some(out)
}

/// Every comment of a tree, in document order.
pub fn comment_list(v: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Map(items) => {
                for (k, v) in items {
                    match k {
                        Key::Comment(c) => out.push(c.clone()),
                        Key::Name(_) => walk(v, out),
                    }
                }
            }
            Value::Seq(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Comment(c) => out.push(c.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

/// The comments of `layout` with the data of `data` (a tree without comments), when
/// both have the same shape: the same keys in the same order, lists of the same
/// lengths. `None` otherwise.
pub fn transplant(layout: &Value, data: &Value) -> Option<Value> {
    match (layout, data) {
        (Value::Map(o), Value::Map(n)) => {
            let mut names = n.iter();
            let mut out = Vec::with_capacity(o.len());
            for (k, v) in o {
                match k {
                    Key::Comment(_) => out.push((k.clone(), v.clone())),
                    Key::Name(name) => {
                        let (nk, nv) = names.next()?;
                        if nk != &Key::Name(name.clone()) {
                            return None;
                        }
                        out.push((k.clone(), transplant(v, nv)?));
                    }
                }
            }
            names.next().is_none().then_some(Value::Map(out))
        }
        (Value::Seq(o), Value::Seq(n)) => {
            let mut items = n.iter();
            let mut out = Vec::with_capacity(o.len());
            for v in o {
                match v {
                    Value::Comment(_) => out.push(v.clone()),
                    _ => out.push(transplant(v, items.next()?)?),
                }
            }
            items.next().is_none().then_some(Value::Seq(out))
        }
        (Value::Map(_) | Value::Seq(_), _) | (_, Value::Map(_) | Value::Seq(_)) => None,
        (_, n) => Some(n.clone()),
    }
}

/// For a rewrite of a file: `new` (the edited text, as read) with the comment layout of
/// `old` (the file's tree), when only values changed. sops's reader may attach a comment
/// elsewhere than the tree it was written from had it; `sops set` keeps the tree, and so
/// does this. `None` when the data's shape or the set of comments differs.
pub fn keep_comment_layout(new: &Value, old: &Value) -> Option<Value> {
    let mut a = comment_list(new);
    let mut b = comment_list(old);
    a.sort();
    b.sort();
    if a != b {
        return None;
    }
    transplant(old, &new.without_comments())
}
