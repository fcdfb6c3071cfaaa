//! Scalar tokens of the scanner model: only their extent and the scanner state they leave
//! (position, pending line breaks, whether a simple key may follow). Values are read by
//! the main parser.

use super::{blank, breakz, brk, SResult, Scanner, Tok};

impl Scanner<'_> {
    pub(super) fn flow_scalar(&mut self, single: bool) -> SResult<()> {
        let start = self.mark;
        self.skip();
        loop {
            if self.doc_indicator_here() {
                return self.err("found unexpected document indicator");
            }
            if self.pos >= self.c.len() {
                return self.err("found unexpected end of stream");
            }
            let c = self.cur();
            if single && c == '\'' && self.at(1) == '\'' {
                self.skip();
                self.skip();
            } else if (single && c == '\'') || (!single && c == '"') {
                break;
            } else if !single && c == '\\' && brk(self.at(1)) {
                self.skip();
                self.skip_line();
            } else if !single && c == '\\' {
                let n = match self.at(1) {
                    'x' => 2,
                    'u' => 4,
                    'U' => 8,
                    _ => 0,
                };
                for _ in 0..2 + n {
                    if breakz(self.cur()) {
                        return self.err("invalid escape in a double-quoted scalar");
                    }
                    self.skip();
                }
            } else if brk(c) {
                self.skip_line();
            } else {
                self.skip();
            }
        }
        self.skip();
        self.push(Tok::Scalar, start);
        Ok(())
    }

    pub(super) fn block_scalar(&mut self) -> SResult<()> {
        let start = self.mark;
        self.skip();
        let mut increment: i64 = 0;
        for _ in 0..2 {
            let c = self.cur();
            if c == '+' || c == '-' {
                self.skip();
            } else if c.is_ascii_digit() {
                if c == '0' {
                    return self.err("found an indentation indicator equal to 0");
                }
                increment = i64::from(c as u8 - b'0');
                self.skip();
            }
        }
        while blank(self.cur()) {
            self.skip();
        }
        if self.cur() == '#' {
            self.scan_line_comment(start);
            while !breakz(self.cur()) {
                self.skip();
            }
        }
        if !breakz(self.cur()) {
            return self.err("did not find expected comment or line break");
        }
        if brk(self.cur()) {
            self.skip_line();
        }
        let mut indent: i64 = 0;
        if increment > 0 {
            indent = if self.indent >= 0 {
                self.indent + increment
            } else {
                increment
            };
        }
        self.block_breaks(&mut indent)?;
        while self.mark.column == indent && self.pos < self.c.len() {
            while !breakz(self.cur()) {
                self.skip();
            }
            self.skip_line();
            self.block_breaks(&mut indent)?;
        }
        self.push(Tok::Scalar, start);
        Ok(())
    }

    fn block_breaks(&mut self, indent: &mut i64) -> SResult<()> {
        let mut max_indent = 0;
        loop {
            while (*indent == 0 || self.mark.column < *indent) && self.cur() == ' ' {
                self.skip();
            }
            max_indent = max_indent.max(self.mark.column);
            if (*indent == 0 || self.mark.column < *indent) && self.cur() == '\t' {
                return self.err("found a tab character where an indentation space is expected");
            }
            if !brk(self.cur()) {
                break;
            }
            self.skip_line();
        }
        if *indent == 0 {
            *indent = max_indent.max(self.indent + 1).max(1);
        }
        Ok(())
    }

    pub(super) fn plain_scalar(&mut self) -> SResult<()> {
        let start = self.mark;
        let indent = self.indent + 1;
        let mut leading_blanks = false;
        loop {
            if self.doc_indicator_here() || self.cur() == '#' {
                break;
            }
            // The scalar's characters up to a blank, a break or an indicator, at once.
            let n = self.c.run_plain(self.pos, self.flow_level > 0);
            if n > 0 {
                leading_blanks = false;
                self.skip_run(n);
            }
            if !(blank(self.cur()) || brk(self.cur())) {
                break;
            }
            while blank(self.cur()) || brk(self.cur()) {
                if blank(self.cur()) {
                    if leading_blanks && self.mark.column < indent && self.cur() == '\t' {
                        return self.err("found a tab character that violates indentation");
                    }
                    self.skip();
                } else {
                    leading_blanks = true;
                    self.skip_line();
                }
            }
            if self.flow_level == 0 && self.mark.column < indent {
                break;
            }
        }
        self.push(Tok::Scalar, start);
        if leading_blanks {
            self.simple_key_allowed = true;
        }
        Ok(())
    }
}
