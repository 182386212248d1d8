//! Redaction of passwords in recorded SQL text and bound parameters.
//!
//! # Rules
//!
//! The text is split into tokens the way PostgreSQL's lexer does (comments `--…` and nested
//! `/* … */`, quoted identifiers `"…"` with `""`, string literals `'…'` with `''`, escape strings
//! `E'…'` with backslash escapes, `U&'…'`, `B'…'`/`X'…'`/`N'…'`, dollar-quoted `$$…$$` and
//! `$tag$…$tag$`, parameters `$n`; keywords case-insensitive, any whitespace or newlines).
//!
//! 1. **After the keyword `PASSWORD`** (`CREATE ROLE/USER/GROUP … [ENCRYPTED] PASSWORD '…'`,
//!    `ALTER ROLE/USER … PASSWORD '…'`, and also `OPTIONS (password '…')` of user mappings):
//!    the next token, when it is a string of any kind, is replaced by `'***'` — with the
//!    strings that continue it (`'a'` newline `'b'`); when it is a parameter `$n`, parameter
//!    n is reported in [`Redaction::secret_params`] and the recorder replaces its bound value
//!    by `***`. `PASSWORD NULL` is left alone. This covers psql's `\password` (which sends
//!    `ALTER USER … PASSWORD 'SCRAM-SHA-256$…'`) and md5 hashes in that position.
//! 2. **Verifiers anywhere**: any string literal (or bound parameter) whose whole content is a
//!    SCRAM verifier (`SCRAM-SHA-256$…`) or an md5 hash (`md5` + 32 hex digits) becomes
//!    `'***'` — both log in as the role (md5 directly, SCRAM after an offline attack).
//! 3. **Inside literals and function bodies**: the content of plain `'…'` strings (unescaped,
//!    redacted, escaped again) and of dollar-quoted strings (DO blocks, function bodies) is
//!    redacted by these same rules, down to three levels of nesting: `DO $$ BEGIN ALTER ROLE x
//!    PASSWORD 'p'; END $$` and `EXECUTE 'ALTER ROLE x PASSWORD ''p'''` are caught.
//! 4. **Connection strings** inside literals and bound text parameters: the value of
//!    `password=` / `sslpassword=` (quoted or not) and the password of a
//!    `postgresql://user:password@host` URI become `***` (`dblink_connect('… password=p')`).
//!
//! # Blind spots
//!
//! * Passwords assembled at run time: `'PASS' || 'WORD ''p'''`, `format('… PASSWORD %L', 'p')`,
//!   a PL/pgSQL variable, a function argument (`$1` inside a function body), `\gexec` output.
//! * Content of `E'…'` and `U&'…'` strings (rule 3 and 4 do not look inside them; rule 1 still
//!   replaces them whole after `PASSWORD`).
//! * `standard_conforming_strings`: the recorder follows the value the server last reported;
//!   a `SET standard_conforming_strings = off` in the same query string as the password, or
//!   pipelined before its answer arrives, makes `'a\'b'` be read the conforming way.
//! * Other places a password can travel: `COPY` data (never kept anyway), `SET`/`set_config()`
//!   of an extension's setting, a column named `password` compared or assigned
//!   (`WHERE password = '…'`, `UPDATE … SET password = '…'`), `CREATE SERVER … OPTIONS` keys
//!   other than `password`, text in a non-UTF-8 client encoding.
//! * Over-redaction is possible and accepted: a literal right after a column or type named
//!   `password`, or a bound text value containing `password=`.

/// The result of [`redact_sql`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    /// The text with secrets replaced.
    pub text: String,
    /// Whether anything was replaced.
    pub redacted: bool,
    /// 0-based indices of bound parameters in a password position (`PASSWORD $1` → 0).
    pub secret_params: Vec<usize>,
}

/// What replaces a secret literal in SQL text.
pub const MASK_LITERAL: &str = "'***'";
/// What replaces a secret value (a bound parameter, a connection-string password).
pub const MASK: &str = "***";

const MAX_DEPTH: usize = 3;

/// What stands for a text that could not be redacted safely (never expected).
const WITHHELD: &str = "[text withheld: redaction failed]";

/// Redacts `sql` by the rules of the module docs. `standard_conforming_strings` is the server's
/// setting (on by default since PostgreSQL 9.1): off, backslashes escape in `'…'` too.
pub fn redact_sql(sql: &str, standard_conforming_strings: bool) -> Redaction {
    let mut secret_params = Vec::new();
    match redact_at(sql, standard_conforming_strings, 0, &mut secret_params) {
        Some(text) => Redaction {
            text,
            redacted: true,
            secret_params,
        },
        None => Redaction {
            text: sql.to_owned(),
            redacted: false,
            secret_params,
        },
    }
}

/// Redacts a bound text value or literal content (rules 2 and 4); `None` when nothing changes.
pub fn redact_value(value: &str) -> Option<String> {
    if is_verifier(value.trim()) {
        return Some(MASK.to_owned());
    }
    let mut out = value.to_owned();
    let mut changed = false;
    if let Some(v) = redact_conninfo(&out) {
        out = v;
        changed = true;
    }
    if let Some(v) = redact_uri(&out) {
        out = v;
        changed = true;
    }
    changed.then_some(out)
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    let n = needle.as_bytes();
    hay.as_bytes()
        .windows(n.len())
        .any(|w| w.eq_ignore_ascii_case(n))
}

/// A cheap test before tokenizing: could anything here need redaction?
fn might_hold_secret(s: &str) -> bool {
    contains_ci(s, "password")
        || contains_ci(s, "md5")
        || s.contains("SCRAM-SHA-256$")
        || s.contains("://")
}

/// A SCRAM verifier or an md5 password hash.
fn is_verifier(s: &str) -> bool {
    s.starts_with("SCRAM-SHA-256$")
        || s.len() == 35
            && s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("md5"))
            && s.bytes().skip(3).all(|b| b.is_ascii_hexdigit())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrKind {
    /// `'…'` (and `N'…'`, `B'…'`, `X'…'`): body between the quotes, `''` escapes.
    Plain,
    /// `E'…'`, or `'…'` with standard_conforming_strings off.
    Escape,
    /// `U&'…'`
    Unicode,
    /// `$tag$…$tag$`
    Dollar,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Word,
    Str(StrKind),
    Param(usize),
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
    /// The string's content (between its delimiters).
    body: (usize, usize),
}

struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
    scs: bool,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

impl Lexer<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    fn skip_space_and_comments(&mut self) {
        loop {
            match (self.at(self.pos), self.at(self.pos + 1)) {
                (Some(c), _) if c.is_ascii_whitespace() || c == 0x0b => self.pos += 1,
                (Some(b'-'), Some(b'-')) => {
                    while self.at(self.pos).is_some_and(|c| c != b'\n') {
                        self.pos += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    let mut depth = 0usize;
                    while self.pos < self.b.len() {
                        match (self.at(self.pos), self.at(self.pos + 1)) {
                            (Some(b'/'), Some(b'*')) => {
                                depth += 1;
                                self.pos += 2;
                            }
                            (Some(b'*'), Some(b'/')) => {
                                self.pos += 2;
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => self.pos += 1,
                        }
                    }
                }
                _ => return,
            }
        }
    }

    /// From just after an opening quote to just after the closing one (or the end).
    fn quoted(&self, mut i: usize, backslash: bool, quote: u8) -> (usize, usize) {
        while let Some(c) = self.at(i) {
            if backslash && c == b'\\' {
                i += 2;
            } else if c == quote {
                if self.at(i + 1) == Some(quote) {
                    i += 2;
                } else {
                    return (i, i + 1);
                }
            } else {
                i += 1;
            }
        }
        let end = self.b.len();
        (end, end)
    }

    fn string(&mut self, start: usize, open: usize, kind: StrKind) -> Token {
        let backslash = kind == StrKind::Escape;
        let (body_end, end) = self.quoted(open + 1, backslash, b'\'');
        self.pos = end;
        Token {
            kind: Kind::Str(kind),
            start,
            end,
            body: (open + 1, body_end),
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    fn next(&mut self) -> Option<Token> {
        self.skip_space_and_comments();
        let start = self.pos;
        let c = self.at(start)?;
        let next = self.at(start + 1);
        let plain = if self.scs {
            StrKind::Plain
        } else {
            StrKind::Escape
        };
        let simple = |kind, end| Token {
            kind,
            start,
            end,
            body: (start, start),
        };
        Some(match (c, next) {
            (b'\'', _) => self.string(start, start, plain),
            (b'E' | b'e', Some(b'\'')) => self.string(start, start + 1, StrKind::Escape),
            (b'N' | b'n', Some(b'\'')) => self.string(start, start + 1, plain),
            (b'B' | b'b' | b'X' | b'x', Some(b'\'')) => {
                self.string(start, start + 1, StrKind::Plain)
            }
            (b'U' | b'u', Some(b'&')) if self.at(start + 2) == Some(b'\'') => {
                self.string(start, start + 2, StrKind::Unicode)
            }
            (b'U' | b'u', Some(b'&')) if self.at(start + 2) == Some(b'"') => {
                let (_, end) = self.quoted(start + 3, false, b'"');
                self.pos = end;
                simple(Kind::Other, end)
            }
            (b'"', _) => {
                let (_, end) = self.quoted(start + 1, false, b'"');
                self.pos = end;
                // A quoted identifier is never a keyword.
                simple(Kind::Other, end)
            }
            (b'$', Some(d)) if d.is_ascii_digit() => {
                let mut i = start + 1;
                let mut n: usize = 0;
                while let Some(d) = self.at(i).filter(u8::is_ascii_digit) {
                    n = n.saturating_mul(10).saturating_add(usize::from(d - b'0'));
                    i += 1;
                }
                self.pos = i;
                simple(Kind::Param(n), i)
            }
            (b'$', _) => {
                let mut i = start + 1;
                while self.at(i).is_some_and(|c| is_ident_char(c) && c != b'$') {
                    i += 1;
                }
                if self.at(i) != Some(b'$') {
                    self.pos = start + 1;
                    return Some(simple(Kind::Other, start + 1));
                }
                let delim = self.b.get(start..=i).unwrap_or_default();
                let body_start = i + 1;
                let rest = self.b.get(body_start..).unwrap_or_default();
                let (body_end, end) = match rest.windows(delim.len()).position(|w| w == delim) {
                    Some(p) => (body_start + p, body_start + p + delim.len()),
                    None => (self.b.len(), self.b.len()),
                };
                self.pos = end;
                Token {
                    kind: Kind::Str(StrKind::Dollar),
                    start,
                    end,
                    body: (body_start, body_end),
                }
            }
            (c, _) if is_ident_start(c) => {
                let mut i = start + 1;
                while self.at(i).is_some_and(is_ident_char) {
                    i += 1;
                }
                self.pos = i;
                simple(Kind::Word, i)
            }
            (c, _) if c.is_ascii_digit() => {
                let mut i = start + 1;
                while self
                    .at(i)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_')
                {
                    i += 1;
                }
                self.pos = i;
                simple(Kind::Other, i)
            }
            _ => {
                // One whole UTF-8 character at most; bytes ≥ 0x80 start words above.
                self.pos = start + 1;
                simple(Kind::Other, start + 1)
            }
        })
    }
}

/// `None` when nothing changes.
fn redact_at(sql: &str, scs: bool, depth: usize, params: &mut Vec<usize>) -> Option<String> {
    if !might_hold_secret(sql) {
        return None;
    }
    let b = sql.as_bytes();
    let tokens: Vec<Token> = Lexer { b, pos: 0, scs }.collect();
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    let mut i = 0;
    while let Some(t) = tokens.get(i) {
        let is_password = t.kind == Kind::Word
            && b.get(t.start..t.end)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"password"));
        if is_password {
            match tokens.get(i + 1) {
                Some(
                    n @ Token {
                        kind: Kind::Str(kind),
                        ..
                    },
                ) => {
                    let mut end = n.end;
                    let mut j = i + 2;
                    // 'a'<newline>'b' continues the same string.
                    if *kind != StrKind::Dollar {
                        while let Some(m) = tokens.get(j).filter(|m| {
                            matches!(m.kind, Kind::Str(k) if k != StrKind::Dollar)
                                && b.get(end..m.start).is_some_and(|gap| gap.contains(&b'\n'))
                        }) {
                            end = m.end;
                            j += 1;
                        }
                    }
                    edits.push((n.start, end, MASK_LITERAL.to_owned()));
                    i = j;
                    continue;
                }
                Some(Token {
                    kind: Kind::Param(n),
                    ..
                }) if depth == 0 && *n >= 1 && !params.contains(&(n - 1)) => {
                    params.push(n - 1);
                }
                _ => {}
            }
        }
        if let Kind::Str(kind) = t.kind
            && let Some(e) = redact_literal(sql, t, kind, scs, depth)
        {
            edits.push(e);
        }
        i += 1;
    }
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(sql.len());
    let mut at = 0;
    for (start, end, with) in edits {
        // Edits start and end on ASCII delimiters, so these are char boundaries; should one
        // not be, the whole text is withheld rather than shown unredacted.
        let Some(before) = sql.get(at..start) else {
            return Some(WITHHELD.to_owned());
        };
        out.push_str(before);
        out.push_str(&with);
        at = end;
    }
    out.push_str(sql.get(at..).unwrap_or(WITHHELD));
    Some(out)
}

/// The edit for a string literal that is not in a password position, if any.
fn redact_literal(
    sql: &str,
    t: &Token,
    kind: StrKind,
    scs: bool,
    depth: usize,
) -> Option<(usize, usize, String)> {
    let body = sql.get(t.body.0..t.body.1)?;
    if is_verifier(body) {
        return Some((t.start, t.end, MASK_LITERAL.to_owned()));
    }
    if depth >= MAX_DEPTH || !might_hold_secret(body) {
        return None;
    }
    let inner = match kind {
        StrKind::Plain => body.replace("''", "'"),
        StrKind::Dollar => body.to_owned(),
        StrKind::Escape | StrKind::Unicode => return None,
    };
    let mut ignored = Vec::new();
    let mut changed = redact_at(&inner, scs, depth + 1, &mut ignored);
    if let Some(v) = redact_value(changed.as_deref().unwrap_or(&inner)) {
        changed = Some(v);
    }
    let new = changed?;
    let new = match kind {
        StrKind::Plain => new.replace('\'', "''"),
        _ => new,
    };
    Some((t.body.0, t.body.1, new))
}

/// `password=value` / `sslpassword = 'value'` in a libpq keyword/value string (or a URI query).
fn redact_conninfo(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let uri = s.contains("://");
    let mut edits = Vec::new();
    let mut i = 0;
    while i + 8 <= b.len() {
        if !b
            .get(i..i + 8)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"password"))
        {
            i += 1;
            continue;
        }
        let mut j = i + 8;
        while b.get(j).is_some_and(|c| *c == b' ') {
            j += 1;
        }
        if b.get(j) != Some(&b'=') {
            i += 8;
            continue;
        }
        j += 1;
        while b.get(j).is_some_and(|c| *c == b' ') {
            j += 1;
        }
        let start = j;
        if b.get(j) == Some(&b'\'') {
            j += 1;
            while let Some(&c) = b.get(j) {
                j += if c == b'\\' { 2 } else { 1 };
                if c == b'\'' {
                    break;
                }
            }
        } else {
            while b
                .get(j)
                .is_some_and(|c| !(c.is_ascii_whitespace() || uri && *c == b'&'))
            {
                j += 1;
            }
        }
        let mut end = j.min(b.len());
        while !s.is_char_boundary(end) {
            end += 1;
        }
        if end > start {
            edits.push((start, end));
        }
        i = end.max(i + 8);
    }
    splice(s, &edits)
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
fn redact_uri(s: &str) -> Option<String> {
    let mut edits = Vec::new();
    let mut from = 0;
    while let Some(p) = s.get(from..).and_then(|r| r.find("://")) {
        let auth_start = from + p + 3;
        let rest = s.get(auth_start..).unwrap_or_default();
        let auth_len = rest
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(rest.len());
        let auth = rest.get(..auth_len).unwrap_or_default();
        if let Some(at) = auth.rfind('@')
            && let Some(colon) = auth.get(..at).and_then(|u| u.find(':'))
            && at > colon + 1
        {
            edits.push((auth_start + colon + 1, auth_start + at));
        }
        from = auth_start;
    }
    splice(s, &edits)
}

/// Replaces each byte range (ascending, on char boundaries) by [`MASK`].
fn splice(s: &str, edits: &[(usize, usize)]) -> Option<String> {
    if edits.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for &(start, end) in edits {
        let Some(before) = s.get(at..start) else {
            return Some(WITHHELD.to_owned());
        };
        out.push_str(before);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(s.get(at..).unwrap_or(WITHHELD));
    Some(out)
}
