//! A model of go-yaml v3's parser (token stream to events), kept for the comments it hands
//! to each event: comments are pulled from the scanner's queue as tokens are peeked, so
//! which event gets a comment depends on this exact order of peeks.

use super::scan::{Mark, SResult, Scanner, Tok};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ev {
    StreamStart,
    StreamEnd,
    DocStart,
    DocEnd,
    Alias,
    Scalar,
    SeqStart,
    SeqEnd,
    MapStart,
    MapEnd,
}

#[derive(Debug, Clone)]
pub(super) struct Event {
    pub typ: Ev,
    pub flow: bool,
    /// Anchor of a node, or the name an alias refers to.
    pub anchor: String,
    pub head: String,
    pub line: String,
    pub foot: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    StreamStart,
    ImplicitDocStart,
    DocStart,
    DocContent,
    DocEnd,
    BlockNode,
    BlockSeqFirst,
    BlockSeqEntry,
    IndentlessEntry,
    BlockMapFirstKey,
    BlockMapKey,
    BlockMapValue,
    FlowSeqFirst,
    FlowSeqEntry,
    FlowSeqMapKey,
    FlowSeqMapValue,
    FlowSeqMapEnd,
    FlowMapFirstKey,
    FlowMapKey,
    FlowMapValue,
    FlowMapEmptyValue,
    End,
}

pub(super) struct Parser<'a> {
    s: Scanner<'a>,
    state: St,
    states: Vec<St>,
    head_comment: String,
    line_comment: String,
    foot_comment: String,
    stem_comment: Option<String>,
    done: bool,
}

fn append(to: &mut String, s: &str) {
    if !to.is_empty() {
        to.push('\n');
    }
    to.push_str(s);
}

impl<'a> Parser<'a> {
    pub fn new(text: &'a str) -> Parser<'a> {
        Parser {
            s: Scanner::new(text),
            state: St::StreamStart,
            states: Vec::new(),
            head_comment: String::new(),
            line_comment: String::new(),
            foot_comment: String::new(),
            stem_comment: None,
            done: false,
        }
    }

    /// The whole event stream.
    pub fn events(mut self, max: usize) -> SResult<Vec<Event>> {
        let mut out = Vec::new();
        while let Some(e) = self.next()? {
            out.push(e);
            if out.len() > max {
                return Err("document too large".into());
            }
        }
        Ok(out)
    }

    fn peek(&mut self) -> SResult<(Tok, Mark)> {
        self.s.fetch_more()?;
        let t = &self.s.tokens[self.s.head];
        let (typ, start) = (t.typ, t.start);
        self.unfold(typ, start);
        Ok((typ, start))
    }

    /// Take the queued comments that belong before this token.
    fn unfold(&mut self, typ: Tok, start: Mark) {
        let s = &mut self.s;
        while s.comments_head < s.comments.len()
            && start.index >= s.comments[s.comments_head].token_mark.index
        {
            let c = &s.comments[s.comments_head];
            if !c.head.is_empty() {
                if typ == Tok::BlockEnd {
                    // No heads on ends: keep it for a following token.
                    break;
                }
                append(&mut self.head_comment, &c.head);
            }
            if !c.foot.is_empty() {
                append(&mut self.foot_comment, &c.foot);
            }
            if !c.line.is_empty() {
                append(&mut self.line_comment, &c.line);
            }
            s.comments[s.comments_head] = Default::default();
            s.comments_head += 1;
        }
    }

    fn skip_token(&mut self) {
        self.s.head += 1;
    }

    fn name(&self) -> String {
        self.s.tokens[self.s.head].name.clone()
    }

    fn ev(&self, typ: Ev, _start: Mark) -> Event {
        Event {
            typ,
            flow: false,
            anchor: String::new(),
            head: String::new(),
            line: String::new(),
            foot: String::new(),
        }
    }

    fn set_comments(&mut self, e: &mut Event) {
        e.head = std::mem::take(&mut self.head_comment);
        e.line = std::mem::take(&mut self.line_comment);
        e.foot = std::mem::take(&mut self.foot_comment);
        self.stem_comment = None;
    }

    fn pop_state(&mut self) {
        self.state = self.states.pop().unwrap_or(St::End);
    }

    fn next(&mut self) -> SResult<Option<Event>> {
        if self.done || self.state == St::End {
            return Ok(None);
        }
        let e = match self.state {
            St::StreamStart => {
                let (_, m) = self.peek()?;
                self.state = St::ImplicitDocStart;
                self.skip_token();
                self.ev(Ev::StreamStart, m)
            }
            St::ImplicitDocStart => self.doc_start(true)?,
            St::DocStart => self.doc_start(false)?,
            St::DocContent => {
                let (t, m) = self.peek()?;
                if matches!(
                    t,
                    Tok::Directive | Tok::DocStart | Tok::DocEnd | Tok::StreamEnd
                ) {
                    self.pop_state();
                    self.ev(Ev::Scalar, m)
                } else {
                    self.node(true, false)?
                }
            }
            St::DocEnd => {
                let (t, m) = self.peek()?;
                if t == Tok::DocEnd {
                    self.skip_token();
                }
                self.state = St::DocStart;
                let mut e = self.ev(Ev::DocEnd, m);
                self.set_comments(&mut e);
                if !e.head.is_empty() && e.foot.is_empty() {
                    e.foot = std::mem::take(&mut e.head);
                }
                e
            }
            St::BlockNode => self.node(true, false)?,
            St::BlockSeqFirst | St::BlockSeqEntry => {
                if self.state == St::BlockSeqFirst {
                    self.peek()?;
                    self.skip_token();
                }
                let (t, m) = self.peek()?;
                match t {
                    Tok::BlockEntry => {
                        let prior = self.head_comment.len();
                        self.skip_token();
                        self.split_stem(prior)?;
                        let (t, _) = self.peek()?;
                        if t != Tok::BlockEntry && t != Tok::BlockEnd {
                            self.states.push(St::BlockSeqEntry);
                            self.node(true, false)?
                        } else {
                            self.state = St::BlockSeqEntry;
                            self.ev(Ev::Scalar, m)
                        }
                    }
                    Tok::BlockEnd => {
                        self.pop_state();
                        self.skip_token();
                        self.ev(Ev::SeqEnd, m)
                    }
                    _ => return Err("did not find expected '-' indicator".into()),
                }
            }
            St::IndentlessEntry => {
                let (t, m) = self.peek()?;
                if t == Tok::BlockEntry {
                    let prior = self.head_comment.len();
                    self.skip_token();
                    self.split_stem(prior)?;
                    let (t, _) = self.peek()?;
                    if !matches!(t, Tok::BlockEntry | Tok::Key | Tok::Value | Tok::BlockEnd) {
                        self.states.push(St::IndentlessEntry);
                        self.node(true, false)?
                    } else {
                        self.state = St::IndentlessEntry;
                        self.ev(Ev::Scalar, m)
                    }
                } else {
                    self.pop_state();
                    self.ev(Ev::SeqEnd, m)
                }
            }
            St::BlockMapFirstKey | St::BlockMapKey => {
                if self.state == St::BlockMapFirstKey {
                    self.peek()?;
                    self.skip_token();
                }
                let (t, m) = self.peek()?;
                match t {
                    Tok::Key => {
                        self.skip_token();
                        let (t, m2) = self.peek()?;
                        if !matches!(t, Tok::Key | Tok::Value | Tok::BlockEnd) {
                            self.states.push(St::BlockMapValue);
                            self.node(true, true)?
                        } else {
                            self.state = St::BlockMapValue;
                            self.ev(Ev::Scalar, m2)
                        }
                    }
                    Tok::BlockEnd => {
                        self.pop_state();
                        let mut e = self.ev(Ev::MapEnd, m);
                        self.set_comments(&mut e);
                        self.skip_token();
                        e
                    }
                    _ => return Err("did not find expected key".into()),
                }
            }
            St::BlockMapValue => {
                let (t, m) = self.peek()?;
                if t == Tok::Value {
                    self.skip_token();
                    let (t, m2) = self.peek()?;
                    if !matches!(t, Tok::Key | Tok::Value | Tok::BlockEnd) {
                        self.states.push(St::BlockMapKey);
                        self.node(true, true)?
                    } else {
                        self.state = St::BlockMapKey;
                        self.ev(Ev::Scalar, m2)
                    }
                } else {
                    self.state = St::BlockMapKey;
                    self.ev(Ev::Scalar, m)
                }
            }
            St::FlowSeqFirst | St::FlowSeqEntry => self.flow_seq_entry()?,
            St::FlowSeqMapKey => {
                let (t, m) = self.peek()?;
                if !matches!(t, Tok::Value | Tok::FlowEntry | Tok::FlowSeqEnd) {
                    self.states.push(St::FlowSeqMapValue);
                    self.node(false, false)?
                } else {
                    self.skip_token();
                    self.state = St::FlowSeqMapValue;
                    self.ev(Ev::Scalar, m)
                }
            }
            St::FlowSeqMapValue => {
                let (t, m) = self.peek()?;
                let mut m = m;
                if t == Tok::Value {
                    self.skip_token();
                    let (t, m2) = self.peek()?;
                    m = m2;
                    if t != Tok::FlowEntry && t != Tok::FlowSeqEnd {
                        self.states.push(St::FlowSeqMapEnd);
                        return self.node(false, false).map(Some);
                    }
                }
                self.state = St::FlowSeqMapEnd;
                self.ev(Ev::Scalar, m)
            }
            St::FlowSeqMapEnd => {
                let (_, m) = self.peek()?;
                self.state = St::FlowSeqEntry;
                self.ev(Ev::MapEnd, m)
            }
            St::FlowMapFirstKey | St::FlowMapKey => self.flow_map_key()?,
            St::FlowMapValue | St::FlowMapEmptyValue => {
                let empty = self.state == St::FlowMapEmptyValue;
                let (t, m) = self.peek()?;
                let mut m = m;
                if !empty && t == Tok::Value {
                    self.skip_token();
                    let (t, m2) = self.peek()?;
                    m = m2;
                    if t != Tok::FlowEntry && t != Tok::FlowMapEnd {
                        self.states.push(St::FlowMapKey);
                        return self.node(false, false).map(Some);
                    }
                }
                self.state = St::FlowMapKey;
                self.ev(Ev::Scalar, m)
            }
            St::End => return Ok(None),
        };
        if e.typ == Ev::StreamEnd {
            self.done = true;
        }
        Ok(Some(e))
    }

    fn doc_start(&mut self, implicit: bool) -> SResult<Event> {
        let (mut t, mut m) = self.peek()?;
        if !implicit {
            while t == Tok::DocEnd {
                self.skip_token();
                (t, m) = self.peek()?;
            }
        }
        if implicit && !matches!(t, Tok::Directive | Tok::DocStart | Tok::StreamEnd) {
            self.states.push(St::DocEnd);
            self.state = St::BlockNode;
            // The part of the head comment before its last empty line heads the document.
            let mut head = String::new();
            let hc = self.head_comment.as_bytes();
            let mut i = hc.len().saturating_sub(1);
            while i > 0 {
                if hc[i] == b'\n' {
                    if i == hc.len() - 1 {
                        head = self.head_comment[..i].to_string();
                        self.head_comment = self.head_comment[i + 1..].to_string();
                        break;
                    } else if hc[i - 1] == b'\n' {
                        head = self.head_comment[..i - 1].to_string();
                        self.head_comment = self.head_comment[i + 1..].to_string();
                        break;
                    }
                }
                i -= 1;
            }
            let mut e = self.ev(Ev::DocStart, m);
            e.head = head;
            return Ok(e);
        }
        if t != Tok::StreamEnd {
            while t == Tok::Directive {
                self.skip_token();
                (t, m) = self.peek()?;
            }
            if t != Tok::DocStart {
                return Err("did not find expected <document start>".into());
            }
            self.states.push(St::DocEnd);
            self.state = St::DocContent;
            self.skip_token();
            return Ok(self.ev(Ev::DocStart, m));
        }
        self.state = St::End;
        self.skip_token();
        Ok(self.ev(Ev::StreamEnd, m))
    }

    fn split_stem(&mut self, stem_len: usize) -> SResult<()> {
        if stem_len == 0 {
            return Ok(());
        }
        let (t, _) = self.peek()?;
        if t != Tok::BlockSeqStart && t != Tok::BlockMapStart {
            return Ok(());
        }
        self.stem_comment = Some(self.head_comment[..stem_len].to_string());
        if self.head_comment.len() == stem_len {
            self.head_comment.clear();
        } else {
            self.head_comment = self.head_comment[stem_len + 1..].to_string();
        }
        Ok(())
    }

    fn node(&mut self, block: bool, indentless: bool) -> SResult<Event> {
        let (mut t, mut m) = self.peek()?;
        if t == Tok::Alias {
            self.pop_state();
            let mut e = self.ev(Ev::Alias, m);
            e.anchor = self.name();
            self.set_comments(&mut e);
            self.skip_token();
            return Ok(e);
        }
        let start = m;
        let mut anchor = String::new();
        let mut tagged = false;
        for _ in 0..2 {
            match t {
                Tok::Anchor if anchor.is_empty() => {
                    anchor = self.name();
                    self.skip_token();
                    (t, m) = self.peek()?;
                }
                Tok::Tag if !tagged => {
                    tagged = true;
                    self.skip_token();
                    (t, m) = self.peek()?;
                }
                _ => break,
            }
        }
        let _ = m;
        let mut e = self.ev(Ev::Scalar, start);
        e.anchor = anchor;
        match t {
            Tok::BlockEntry if indentless => {
                self.state = St::IndentlessEntry;
                e.typ = Ev::SeqStart;
            }
            Tok::Scalar => {
                self.pop_state();
                self.set_comments(&mut e);
                self.skip_token();
            }
            Tok::FlowSeqStart => {
                self.state = St::FlowSeqFirst;
                e.typ = Ev::SeqStart;
                e.flow = true;
                self.set_comments(&mut e);
            }
            Tok::FlowMapStart => {
                self.state = St::FlowMapFirstKey;
                e.typ = Ev::MapStart;
                e.flow = true;
                self.set_comments(&mut e);
            }
            Tok::BlockSeqStart | Tok::BlockMapStart if block => {
                if t == Tok::BlockSeqStart {
                    self.state = St::BlockSeqFirst;
                    e.typ = Ev::SeqStart;
                } else {
                    self.state = St::BlockMapFirstKey;
                    e.typ = Ev::MapStart;
                }
                if let Some(stem) = self.stem_comment.take() {
                    e.head = stem;
                }
            }
            _ if !e.anchor.is_empty() || tagged => {
                // Properties alone: an empty scalar (no comments taken).
                self.pop_state();
            }
            _ => return Err("did not find expected node content".into()),
        }
        Ok(e)
    }

    fn flow_seq_entry(&mut self) -> SResult<Event> {
        let first = self.state == St::FlowSeqFirst;
        if first {
            self.peek()?;
            self.skip_token();
        }
        let (mut t, mut m) = self.peek()?;
        if t != Tok::FlowSeqEnd {
            if !first {
                if t == Tok::FlowEntry {
                    self.skip_token();
                    (t, m) = self.peek()?;
                } else {
                    return Err("did not find expected ',' or ']'".into());
                }
            }
            if t == Tok::Key {
                self.state = St::FlowSeqMapKey;
                let mut e = self.ev(Ev::MapStart, m);
                e.flow = true;
                self.skip_token();
                return Ok(e);
            } else if t != Tok::FlowSeqEnd {
                self.states.push(St::FlowSeqEntry);
                return self.node(false, false);
            }
        }
        self.pop_state();
        let mut e = self.ev(Ev::SeqEnd, m);
        self.set_comments(&mut e);
        self.skip_token();
        Ok(e)
    }

    fn flow_map_key(&mut self) -> SResult<Event> {
        let first = self.state == St::FlowMapFirstKey;
        if first {
            self.peek()?;
            self.skip_token();
        }
        let (mut t, mut m) = self.peek()?;
        if t != Tok::FlowMapEnd {
            if !first {
                if t == Tok::FlowEntry {
                    self.skip_token();
                    (t, m) = self.peek()?;
                } else {
                    return Err("did not find expected ',' or '}'".into());
                }
            }
            if t == Tok::Key {
                self.skip_token();
                let (t2, m2) = self.peek()?;
                if !matches!(t2, Tok::Value | Tok::FlowEntry | Tok::FlowMapEnd) {
                    self.states.push(St::FlowMapValue);
                    return self.node(false, false);
                }
                self.state = St::FlowMapValue;
                return Ok(self.ev(Ev::Scalar, m2));
            } else if t != Tok::FlowMapEnd {
                self.states.push(St::FlowMapEmptyValue);
                return self.node(false, false);
            }
        }
        self.pop_state();
        let mut e = self.ev(Ev::MapEnd, m);
        self.set_comments(&mut e);
        self.skip_token();
        Ok(e)
    }
}
