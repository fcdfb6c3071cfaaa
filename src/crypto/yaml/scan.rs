//! A model of go-yaml v3's scanner, kept only as far as sops's comment placement needs:
//! the token stream (kinds and marks, no scalar values) and the comments it records
//! with the token each belongs to. Comment placement in go-yaml depends on the scanner's
//! state when a comment is met (indentation stack, pending line breaks, the last token),
//! so this follows its algorithm step by step rather than a rule about columns.

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Mark {
    pub index: i64,
    pub line: i64,
    pub column: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok {
    StreamStart,
    StreamEnd,
    Directive,
    DocStart,
    DocEnd,
    BlockSeqStart,
    BlockMapStart,
    BlockEnd,
    FlowSeqStart,
    FlowSeqEnd,
    FlowMapStart,
    FlowMapEnd,
    BlockEntry,
    FlowEntry,
    Key,
    Value,
    Alias,
    Anchor,
    Tag,
    Scalar,
}

#[derive(Debug, Clone)]
pub(super) struct Token {
    pub typ: Tok,
    pub start: Mark,
    /// Anchor or alias name.
    pub name: String,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Comment {
    pub scan_mark: Mark,
    pub token_mark: Mark,
    pub start_mark: Mark,
    pub end_mark: Mark,
    pub head: String,
    pub line: String,
    pub foot: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct SimpleKey {
    possible: bool,
    required: bool,
    token_number: usize,
    mark: Mark,
}

/// The input, indexed by character as go-yaml's marks count. All-ASCII text (most files,
/// and all of an encrypted one but some comments) is borrowed as it is: no copy, and a
/// quarter of the memory of one `char` each, searched with memchr, copied in slices.
enum Text<'a> {
    Ascii(&'a str),
    Wide(Vec<char>),
}

impl<'a> Text<'a> {
    fn new(s: &'a str) -> Text<'a> {
        if s.is_ascii() {
            Text::Ascii(s)
        } else {
            Text::Wide(s.chars().collect())
        }
    }

    #[inline]
    fn get(&self, i: usize) -> Option<char> {
        match self {
            Text::Ascii(s) => s.as_bytes().get(i).map(|&b| char::from(b)),
            Text::Wide(c) => c.get(i).copied(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Text::Ascii(s) => s.len(),
            Text::Wide(c) => c.len(),
        }
    }

    /// How many characters from `from` come before the first for which `stop` holds
    /// (given the character and its index).
    fn run(&self, from: usize, stop: impl Fn(usize, char) -> bool) -> usize {
        let n = match self {
            Text::Ascii(s) => s.as_bytes()[from..]
                .iter()
                .enumerate()
                .position(|(i, &b)| stop(from + i, char::from(b))),
            Text::Wide(c) => c[from..]
                .iter()
                .enumerate()
                .position(|(i, &ch)| stop(from + i, ch)),
        };
        n.unwrap_or(self.len() - from)
    }

    /// A plain scalar's characters from `from`: up to a blank, a break, a NUL, a `:`
    /// before one of those (or the end) or, in a flow collection, a flow indicator.
    fn run_plain(&self, from: usize, flow: bool) -> usize {
        match self {
            // The scanner's hottest loop on an encrypted file (its long `ENC[...]`
            // values): one table lookup per byte.
            Text::Ascii(s) => {
                let b = s.as_bytes();
                let stop = if flow { &PLAIN_STOP_FLOW } else { &PLAIN_STOP };
                let mut i = from;
                while i < b.len() {
                    let c = b[i];
                    if stop[usize::from(c)]
                        && (c != b':' || b.get(i + 1).is_none_or(|&n| ASCII_BLANKZ[usize::from(n)]))
                    {
                        break;
                    }
                    i += 1;
                }
                i - from
            }
            Text::Wide(_) => self.run(from, |i, c| {
                blankz(c)
                    || (c == ':' && self.get(i + 1).is_none_or(blankz))
                    || (flow && matches!(c, ',' | '?' | '[' | ']' | '{' | '}'))
            }),
        }
    }

    /// Characters from `from` to the next line break or NUL (or the end).
    fn run_to_break(&self, from: usize) -> usize {
        match self {
            // In ASCII the only breaks are CR and LF.
            Text::Ascii(s) => {
                memchr::memchr3(b'\n', b'\r', 0, &s.as_bytes()[from..]).unwrap_or(s.len() - from)
            }
            Text::Wide(_) => self.run(from, |_, c| breakz(c)),
        }
    }

    fn push_to(&self, from: usize, n: usize, out: &mut String) {
        match self {
            Text::Ascii(s) => out.push_str(&s[from..from + n]),
            Text::Wide(c) => out.extend(&c[from..from + n]),
        }
    }
}

/// Scanner state; tokens and comments are kept whole (the parser reads them by index).
pub(super) struct Scanner<'a> {
    c: Text<'a>,
    pos: usize,
    mark: Mark,
    newlines: usize,
    pub tokens: Vec<Token>,
    pub head: usize,
    pub comments: Vec<Comment>,
    pub comments_head: usize,
    indent: i64,
    indents: Vec<i64>,
    simple_key_allowed: bool,
    simple_keys: Vec<SimpleKey>,
    /// Token number -> index in `simple_keys` of each possible simple key (a handful:
    /// one per flow level), searched linearly.
    by_tok: Vec<(usize, usize)>,
    flow_level: usize,
    stream_start: bool,
    stream_end: bool,
}

pub(super) type SResult<T> = Result<T, String>;

mod scalars;

/// ASCII bytes by property, for the byte loops of `Text::Ascii`.
const fn byte_table(bytes: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    t
}

/// `blankz` of an ASCII byte.
const ASCII_BLANKZ: [bool; 256] = byte_table(b" \t\r\n\0");
/// Bytes that may end a plain scalar (a `:` only before a blank: checked apart).
const PLAIN_STOP: [bool; 256] = byte_table(b" \t\r\n\0:");
const PLAIN_STOP_FLOW: [bool; 256] = byte_table(b" \t\r\n\0:,?[]{}");

fn blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn brk(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn breakz(c: char) -> bool {
    brk(c) || c == '\0'
}

fn blankz(c: char) -> bool {
    blank(c) || breakz(c)
}

fn alpha(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Scanner<'a> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        Self::over(Text::new(text))
    }

    fn over(c: Text<'a>) -> Scanner<'a> {
        let len = c.len();
        Scanner {
            c,
            pos: 0,
            mark: Mark::default(),
            newlines: 0,
            // Reserved generously (untouched pages cost nothing): growing a vector of a
            // hundred thousand tokens by doubling copies it over and over.
            tokens: Vec::with_capacity(len / 8 + 16),
            head: 0,
            comments: Vec::new(),
            comments_head: 0,
            indent: -1,
            indents: Vec::new(),
            simple_key_allowed: false,
            simple_keys: Vec::new(),
            by_tok: Vec::new(),
            flow_level: 0,
            stream_start: false,
            stream_end: false,
        }
    }

    fn at(&self, off: usize) -> char {
        self.c.get(self.pos + off).unwrap_or('\0')
    }

    fn cur(&self) -> char {
        self.at(0)
    }

    fn skip(&mut self) {
        if !blank(self.cur()) {
            self.newlines = 0;
        }
        self.mark.index += 1;
        self.mark.column += 1;
        self.pos += 1;
    }

    fn skip_line(&mut self) {
        if self.cur() == '\r' && self.at(1) == '\n' {
            self.mark.index += 2;
            self.pos += 2;
        } else if brk(self.cur()) {
            self.mark.index += 1;
            self.pos += 1;
        } else {
            return;
        }
        self.mark.column = 0;
        self.mark.line += 1;
        self.newlines += 1;
    }

    fn tok_key(&self, tok: usize) -> Option<usize> {
        self.by_tok.iter().find(|(t, _)| *t == tok).map(|&(_, i)| i)
    }

    fn untrack(&mut self, tok: usize) {
        self.by_tok.retain(|(t, _)| *t != tok);
    }

    /// `skip` of the next `n` characters, none of them a line break, at once; the first
    /// is not blank (so pending line breaks are forgotten, as `skip` would).
    fn skip_run(&mut self, n: usize) {
        if n > 0 {
            debug_assert!(!blank(self.cur()));
            self.newlines = 0;
        }
        self.mark.index += n as i64;
        self.mark.column += n as i64;
        self.pos += n;
    }

    /// Appends the next `n` characters to `text` and skips them (a comment's text).
    fn read_run(&mut self, n: usize, text: &mut String) {
        self.c.push_to(self.pos, n, text);
        self.skip_run(n);
    }

    /// The characters from here to the next line break (or the end).
    fn run_to_break(&self) -> usize {
        self.c.run_to_break(self.pos)
    }

    /// `read` of go-yaml: like skip, the text is kept by the caller when needed.
    fn read(&mut self, s: &mut String) {
        s.push(self.cur());
        self.skip();
    }

    fn err<T>(&self, msg: &str) -> SResult<T> {
        Err(format!("line {}: {msg}", self.mark.line + 1))
    }

    fn push(&mut self, typ: Tok, start: Mark) {
        self.tokens.push(Token {
            typ,
            start,
            name: String::new(),
        });
    }

    fn insert(&mut self, at: usize, typ: Tok, start: Mark) {
        let t = Token {
            typ,
            start,
            name: String::new(),
        };
        let at = at.min(self.tokens.len());
        self.tokens.insert(at, t);
    }

    fn doc_indicator_here(&self) -> bool {
        self.mark.column == 0
            && ((self.at(0) == '-' && self.at(1) == '-' && self.at(2) == '-')
                || (self.at(0) == '.' && self.at(1) == '.' && self.at(2) == '.'))
            && blankz(self.at(3))
    }

    /// Make sure a token is ready at `head` (go-yaml keeps two more in hand, for comments).
    pub fn fetch_more(&mut self) -> SResult<()> {
        loop {
            if self.head + 2 < self.tokens.len() {
                match self.tok_key(self.head) {
                    None => break,
                    Some(i) => {
                        if !self.key_valid(i)? {
                            break;
                        }
                    }
                }
            }
            if self.stream_end && self.head < self.tokens.len() {
                break;
            }
            self.fetch_next()?;
        }
        Ok(())
    }

    fn key_valid(&mut self, i: usize) -> SResult<bool> {
        let k = self.simple_keys[i];
        if !k.possible {
            return Ok(false);
        }
        if k.mark.line < self.mark.line || k.mark.index + 1024 < self.mark.index {
            if k.required {
                return self.err("could not find expected ':'");
            }
            self.simple_keys[i].possible = false;
            return Ok(false);
        }
        Ok(true)
    }

    fn fetch_next(&mut self) -> SResult<()> {
        if !self.stream_start {
            self.indent = -1;
            self.simple_keys.push(SimpleKey::default());
            self.simple_key_allowed = true;
            self.stream_start = true;
            self.push(Tok::StreamStart, self.mark);
            return Ok(());
        }
        if self.stream_end {
            return self.err("read past the end of the stream");
        }
        let scan_mark = self.mark;
        self.scan_to_next_token()?;
        self.unroll_indent(self.mark.column, scan_mark);
        let c = self.cur();
        if self.pos >= self.c.len() {
            if self.mark.column != 0 {
                self.mark.column = 0;
                self.mark.line += 1;
            }
            let m = self.mark;
            self.unroll_indent(-1, m);
            self.remove_simple_key()?;
            self.simple_key_allowed = false;
            self.push(Tok::StreamEnd, self.mark);
            self.stream_end = true;
            return Ok(());
        }
        if self.mark.column == 0 && c == '%' {
            let m = self.mark;
            self.unroll_indent(-1, m);
            self.remove_simple_key()?;
            self.simple_key_allowed = false;
            let start = self.mark;
            while !breakz(self.cur()) {
                self.skip();
            }
            self.push(Tok::Directive, start);
            return Ok(());
        }
        if self.doc_indicator_here() {
            let m = self.mark;
            self.unroll_indent(-1, m);
            self.remove_simple_key()?;
            self.simple_key_allowed = false;
            let start = self.mark;
            self.skip();
            self.skip();
            self.skip();
            self.push(if c == '-' { Tok::DocStart } else { Tok::DocEnd }, start);
            return Ok(());
        }
        let mut comment_mark = self.mark;
        if !self.tokens.is_empty()
            && (self.flow_level == 0 && c == ':' || self.flow_level > 0 && c == ',')
        {
            // Comments after these indicators belong to the token before them.
            comment_mark = self.tokens[self.tokens.len() - 1].start;
        }
        self.fetch_token(c)?;
        if self.tokens.last().map(|t| t.typ) != Some(Tok::BlockEntry) {
            self.scan_line_comment(comment_mark);
        }
        Ok(())
    }

    fn fetch_token(&mut self, c: char) -> SResult<()> {
        let n = self.at(1);
        match c {
            '[' | '{' => {
                self.save_simple_key()?;
                self.simple_keys.push(SimpleKey {
                    token_number: self.tokens.len(),
                    mark: self.mark,
                    ..Default::default()
                });
                self.flow_level += 1;
                self.simple_key_allowed = true;
                let m = self.mark;
                self.skip();
                self.push(
                    if c == '[' {
                        Tok::FlowSeqStart
                    } else {
                        Tok::FlowMapStart
                    },
                    m,
                );
            }
            ']' | '}' => {
                self.remove_simple_key()?;
                if self.flow_level > 0 {
                    self.flow_level -= 1;
                    if let Some(k) = self.simple_keys.pop() {
                        self.untrack(k.token_number);
                    }
                }
                self.simple_key_allowed = false;
                let m = self.mark;
                self.skip();
                self.push(
                    if c == ']' {
                        Tok::FlowSeqEnd
                    } else {
                        Tok::FlowMapEnd
                    },
                    m,
                );
            }
            ',' => {
                self.remove_simple_key()?;
                self.simple_key_allowed = true;
                let m = self.mark;
                self.skip();
                self.push(Tok::FlowEntry, m);
            }
            '-' if blankz(n) => {
                if self.flow_level == 0 {
                    if !self.simple_key_allowed {
                        return self.err("block sequence entries are not allowed in this context");
                    }
                    self.roll_indent(self.mark.column, None, Tok::BlockSeqStart, self.mark);
                }
                self.remove_simple_key()?;
                self.simple_key_allowed = true;
                let m = self.mark;
                self.skip();
                self.push(Tok::BlockEntry, m);
            }
            '?' if self.flow_level > 0 || blankz(n) => {
                if self.flow_level == 0 {
                    if !self.simple_key_allowed {
                        return self.err("mapping keys are not allowed in this context");
                    }
                    self.roll_indent(self.mark.column, None, Tok::BlockMapStart, self.mark);
                }
                self.remove_simple_key()?;
                self.simple_key_allowed = self.flow_level == 0;
                let m = self.mark;
                self.skip();
                self.push(Tok::Key, m);
            }
            ':' if self.flow_level > 0 || blankz(n) => self.fetch_value()?,
            '*' | '&' => {
                self.save_simple_key()?;
                self.simple_key_allowed = false;
                let m = self.mark;
                self.skip();
                let mut s = String::new();
                while alpha(self.cur()) {
                    self.read(&mut s);
                }
                let ok_after = blankz(self.cur())
                    || matches!(self.cur(), '?' | ':' | ',' | ']' | '}' | '%' | '@' | '`');
                if s.is_empty() || !ok_after {
                    return self.err("did not find expected alphabetic or numeric character");
                }
                self.tokens.push(Token {
                    typ: if c == '*' { Tok::Alias } else { Tok::Anchor },
                    start: m,
                    name: s,
                });
            }
            '!' => {
                self.save_simple_key()?;
                self.simple_key_allowed = false;
                let m = self.mark;
                self.skip();
                if self.cur() == '<' {
                    while !blankz(self.cur()) && self.cur() != '>' {
                        self.skip();
                    }
                    if self.cur() != '>' {
                        return self.err("did not find the expected '>'");
                    }
                    self.skip();
                } else {
                    while !(blankz(self.cur())
                        || self.flow_level > 0 && matches!(self.cur(), ',' | ']' | '}'))
                    {
                        self.skip();
                    }
                }
                if !(blankz(self.cur()) || self.flow_level > 0 && self.cur() == ',') {
                    return self.err("did not find expected whitespace or line break");
                }
                self.push(Tok::Tag, m);
            }
            '|' | '>' if self.flow_level == 0 => {
                self.remove_simple_key()?;
                self.simple_key_allowed = true;
                self.block_scalar()?;
            }
            '\'' | '"' => {
                self.save_simple_key()?;
                self.simple_key_allowed = false;
                self.flow_scalar(c == '\'')?;
            }
            _ => {
                let plain = !(blankz(c)
                    || matches!(
                        c,
                        '-' | '?'
                            | ':'
                            | ','
                            | '['
                            | ']'
                            | '{'
                            | '}'
                            | '#'
                            | '&'
                            | '*'
                            | '!'
                            | '|'
                            | '>'
                            | '\''
                            | '"'
                            | '%'
                            | '@'
                            | '`'
                    ))
                    || (c == '-' && !blank(n))
                    || (self.flow_level == 0 && (c == '?' || c == ':') && !blankz(n));
                if !plain {
                    return self.err("found character that cannot start any token");
                }
                self.save_simple_key()?;
                self.simple_key_allowed = false;
                self.plain_scalar()?;
            }
        }
        Ok(())
    }

    fn fetch_value(&mut self) -> SResult<()> {
        let i = self.simple_keys.len() - 1;
        if self.key_valid(i)? {
            let k = self.simple_keys[i];
            self.insert(k.token_number, Tok::Key, k.mark);
            self.roll_indent(
                k.mark.column,
                Some(k.token_number),
                Tok::BlockMapStart,
                k.mark,
            );
            self.simple_keys[i].possible = false;
            self.untrack(k.token_number);
            self.simple_key_allowed = false;
        } else {
            if self.flow_level == 0 {
                if !self.simple_key_allowed {
                    return self.err("mapping values are not allowed in this context");
                }
                self.roll_indent(self.mark.column, None, Tok::BlockMapStart, self.mark);
            }
            self.simple_key_allowed = self.flow_level == 0;
        }
        let m = self.mark;
        self.skip();
        self.push(Tok::Value, m);
        Ok(())
    }

    fn save_simple_key(&mut self) -> SResult<()> {
        let required = self.flow_level == 0 && self.indent == self.mark.column;
        if self.simple_key_allowed {
            let k = SimpleKey {
                possible: true,
                required,
                token_number: self.tokens.len(),
                mark: self.mark,
            };
            self.remove_simple_key()?;
            let i = self.simple_keys.len() - 1;
            self.simple_keys[i] = k;
            self.untrack(k.token_number);
            self.by_tok.push((k.token_number, i));
        }
        Ok(())
    }

    fn remove_simple_key(&mut self) -> SResult<()> {
        let i = self.simple_keys.len() - 1;
        if self.simple_keys[i].possible {
            if self.simple_keys[i].required {
                return self.err("could not find expected ':'");
            }
            self.simple_keys[i].possible = false;
            let n = self.simple_keys[i].token_number;
            self.untrack(n);
        }
        Ok(())
    }

    fn roll_indent(&mut self, column: i64, number: Option<usize>, typ: Tok, mark: Mark) {
        if self.flow_level > 0 {
            return;
        }
        if self.indent < column {
            self.indents.push(self.indent);
            self.indent = column;
            match number {
                Some(n) => self.insert(n, typ, mark),
                None => self.push(typ, mark),
            }
        }
    }

    /// Close the blocks deeper than `column`. The end token goes before any comments at
    /// the closed block's indentation that follow it: those are its foot comments.
    fn unroll_indent(&mut self, column: i64, scan_mark: Mark) {
        if self.flow_level > 0 {
            return;
        }
        let mut block_mark = scan_mark;
        block_mark.index -= 1;
        while self.indent > column {
            let mut stop = block_mark.index;
            for c in self.comments.iter().rev() {
                if c.end_mark.index < stop {
                    break;
                }
                if c.start_mark.column == self.indent + 1 {
                    block_mark = c.start_mark;
                }
                stop = c.scan_mark.index;
            }
            self.push(Tok::BlockEnd, block_mark);
            self.indent = self.indents.pop().unwrap_or(-1);
        }
    }

    fn scan_to_next_token(&mut self) -> SResult<()> {
        let scan_mark = self.mark;
        loop {
            while self.cur() == ' '
                || ((self.flow_level > 0 || !self.simple_key_allowed) && self.cur() == '\t')
            {
                self.skip();
            }
            // A line comment right after a lone `-` heads what follows instead.
            let nt = self.tokens.len();
            if !self.comments.is_empty() && nt > 1 {
                let a = self.tokens[nt - 2].typ;
                let b = self.tokens[nt - 1].typ;
                let here_break = brk(self.cur());
                let mline = self.mark.line;
                let m = self.mark;
                let last = self.comments.len() - 1;
                let c = &mut self.comments[last];
                if a == Tok::BlockSeqStart
                    && b == Tok::BlockEntry
                    && !c.line.is_empty()
                    && !here_break
                {
                    c.head = std::mem::take(&mut c.line);
                    if c.start_mark.line == mline - 1 {
                        c.token_mark = m;
                    }
                }
            }
            if self.cur() == '#' {
                self.scan_comments(scan_mark);
            }
            if brk(self.cur()) {
                self.skip_line();
                if self.flow_level == 0 {
                    self.simple_key_allowed = true;
                }
            } else {
                return Ok(());
            }
        }
    }

    fn scan_line_comment(&mut self, token_mark: Mark) {
        if self.newlines > 0 {
            return;
        }
        let mut start = Mark::default();
        let mut text = String::new();
        let mut peek = 0;
        while peek < 512 {
            if blank(self.at(peek)) {
                peek += 1;
                continue;
            }
            if self.at(peek) == '#' {
                let seen = self.mark.index + peek as i64;
                loop {
                    if breakz(self.cur()) {
                        if self.mark.index >= seen {
                            break;
                        }
                        self.skip_line();
                    } else if self.mark.index >= seen {
                        if text.is_empty() {
                            start = self.mark;
                        }
                        let n = self.run_to_break();
                        self.read_run(n, &mut text);
                    } else {
                        self.skip();
                    }
                }
            }
            break;
        }
        if !text.is_empty() {
            self.comments.push(Comment {
                token_mark,
                start_mark: start,
                line: text,
                ..Default::default()
            });
        }
    }

    /// Record `text` as a foot comment ending at `end`; the next comment starts there.
    fn push_foot(
        &mut self,
        scan_mark: &mut Mark,
        token_mark: &mut Mark,
        start: Mark,
        end: Mark,
        text: &mut String,
    ) {
        self.comments.push(Comment {
            scan_mark: *scan_mark,
            token_mark: *token_mark,
            start_mark: start,
            end_mark: end,
            foot: std::mem::take(text),
            ..Default::default()
        });
        *scan_mark = end;
        *token_mark = end;
    }

    fn scan_comments(&mut self, mut scan_mark: Mark) {
        let nt = self.tokens.len();
        let mut token = self.tokens[nt - 1].clone();
        if token.typ == Tok::FlowEntry && nt > 1 {
            token = self.tokens[nt - 2].clone();
        }
        let mut token_mark = token.start;
        let mut start = Mark::default();
        let mut next_indent = self.indent.max(0);
        let mut recent_empty = false;
        let mut first_empty = self.newlines <= 1;
        let mut line = self.mark.line;
        let mut column = self.mark.column;
        let mut text = String::new();
        // A comment starting on this line is a foot of the prior content.
        let mut foot_line = -1;
        if scan_mark.line > 0 {
            foot_line = self.mark.line - self.newlines as i64 + 1;
            if self.newlines == 0 && self.mark.column > 1 {
                foot_line += 1;
            }
        }
        let mut peek: usize = 0;
        while peek < 512 {
            column += 1;
            let ch = self.at(peek);
            if blank(ch) {
                peek += 1;
                continue;
            }
            let close_flow = self.flow_level > 0 && (ch == ']' || ch == '}');
            let end_here = Mark {
                index: self.mark.index + peek as i64,
                line,
                column,
            };
            if close_flow || breakz(ch) {
                if close_flow || !recent_empty {
                    if close_flow
                        || first_empty
                            && (start.line == foot_line && token.typ != Tok::Value
                                || start.column - 1 < next_indent)
                    {
                        // The part before the first empty line is a foot of the prior token.
                        if !text.is_empty() {
                            if start.column - 1 < next_indent {
                                token_mark = start;
                            }
                            self.push_foot(
                                &mut scan_mark,
                                &mut token_mark,
                                start,
                                end_here,
                                &mut text,
                            );
                        }
                    } else if !text.is_empty() && ch != '\0' {
                        text.push('\n');
                    }
                }
                if !brk(ch) {
                    break;
                }
                first_empty = false;
                recent_empty = true;
                column = 0;
                line += 1;
                peek += 1;
                continue;
            }
            if !text.is_empty()
                && (close_flow || column - 1 < next_indent && column != start.column)
            {
                // A comment at another indentation is a foot of the preceding data.
                self.push_foot(&mut scan_mark, &mut token_mark, start, end_here, &mut text);
            }
            if ch != '#' {
                break;
            }
            if text.is_empty() {
                start = end_here;
            } else {
                text.push('\n');
            }
            recent_empty = false;
            let seen = self.mark.index + peek as i64;
            loop {
                if breakz(self.cur()) {
                    if self.mark.index >= seen {
                        break;
                    }
                    self.skip_line();
                } else if self.mark.index >= seen {
                    let n = self.run_to_break();
                    self.read_run(n, &mut text);
                } else {
                    self.skip();
                }
            }
            // go-yaml restarts its look-ahead one past the line break it stopped at.
            peek = 1;
            column = 0;
            line = self.mark.line;
            next_indent = self.indent.max(0);
        }
        if !text.is_empty() {
            self.comments.push(Comment {
                scan_mark,
                token_mark: start,
                start_mark: start,
                end_mark: Mark {
                    index: self.mark.index + peek as i64 - 1,
                    line,
                    column,
                },
                head: text,
                ..Default::default()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(mut s: Scanner<'_>) -> (Vec<(Tok, Mark, String)>, Vec<String>) {
        while !s.stream_end {
            s.fetch_more().expect("scans");
            s.head += 1;
        }
        let toks = s
            .tokens
            .iter()
            .map(|t| (t.typ, t.start, t.name.clone()))
            .collect();
        let comments = s.comments.iter().map(|c| format!("{:?}", c)).collect();
        (toks, comments)
    }

    /// The ASCII fast paths (memchr, slices) see exactly what the per-character model sees.
    #[test]
    fn ascii_text_scans_as_the_character_model_does() {
        for doc in [
            "a: 1 # one\n# head\nb:\n  - x # in\n  # between\n  - y\n# foot\n",
            "k: ENC[AES256_GCM,data:abc=,iv:q,tag:t,type:str] #ENC[AES256_GCM,data:x]\r\n",
            "m: {a: b, c: [d, e]} # flow\nl: |\n  text # not a comment\n\nz: &anc v\ny: *anc\n",
            "p: a:b:c\nq: \"quoted # no\" # yes\n\n\n# end\n",
            // Plain scalars ending at every stop: `:` before a blank, a tab, the end, a
            // NUL, and flow indicators only inside a flow collection.
            "a: x:y # c\nb: v\tw # t\nc: [p,q:r, {s: t?u}] # f\nd: e,f?g[h]{i} # g\ne: z:w",
        ] {
            let fast = scan(Scanner::new(doc));
            let slow = scan(Scanner::over(Text::Wide(doc.chars().collect())));
            assert_eq!(fast, slow, "{doc:?}");
            assert!(!fast.1.is_empty(), "{doc:?} has comments");
        }
    }
}
