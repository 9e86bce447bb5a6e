//! Lexical pieces of the PostgREST request dialect shared by every parser (the filter
//! grammar, `select=`, `order=`, headers): parse errors, column names, the cursor, quoting,
//! list splitting and query-string decoding. Pure: no I/O, never panics.

use std::fmt;

/// Longest fragment of the input quoted back in an error.
const MAX_FRAGMENT_CHARS: usize = 80;

// ----- Errors -----

/// What went wrong, so the handler can pick the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Malformed input (400).
    Syntax,
    /// Valid PostgREST syntax that rowcast does not implement (400).
    UnsupportedFeature,
    /// A `Range` whose end is before its start (416).
    InvalidRange,
    /// An unknown or invalid preference under `Prefer: handling=strict` (400).
    InvalidPreference,
}

/// A parse failure: a short plain-English `message` and, optionally, the offending fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Option<String>,
}

impl ParseError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ParseError { kind, message: message.into(), details: None }
    }

    /// Attaches the offending fragment (shortened).
    pub(crate) fn detail(mut self, fragment: &str) -> Self {
        self.details = Some(shorten(fragment));
        self
    }

    /// Prefixes the message with where it happened; without details, `value` becomes them.
    pub(crate) fn context(mut self, prefix: &str, value: &str) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        if self.details.is_none() && !value.is_empty() {
            self.details = Some(shorten(value));
        }
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.details {
            Some(d) => write!(f, "{} (at: {d})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

pub(crate) type Result<T, E = ParseError> = std::result::Result<T, E>;

pub(crate) fn syntax(message: impl Into<String>) -> ParseError {
    ParseError::new(ErrorKind::Syntax, message)
}

pub(crate) fn unsupported(message: impl Into<String>) -> ParseError {
    ParseError::new(ErrorKind::UnsupportedFeature, message)
}

/// Cuts `s` to at most [`MAX_FRAGMENT_CHARS`] characters, marking the cut.
pub(crate) fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_FRAGMENT_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A column name as written by the client (quotes removed, escapes resolved). Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Column(pub String);

impl Column {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// ----- Cursor and lexical pieces -----

/// A byte position in a `&str`, only ever moved past ASCII bytes or whole chars.
pub(crate) struct Cursor<'a> {
    pub(crate) src: &'a str,
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Cursor { src, pos: 0 }
    }

    pub(crate) fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn eat(&mut self, s: &str) -> bool {
        let found = self.rest().starts_with(s);
        self.pos += if found { s.len() } else { 0 };
        found
    }

    pub(crate) fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Everything up to (not including) the first of the ASCII `stops`, or to the end.
    pub(crate) fn take_until(&mut self, stops: &[u8]) -> &'a str {
        let rest = self.rest();
        let len = rest.bytes().position(|b| stops.contains(&b));
        let len = len.unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }
}

/// "expected X but found 'c'" at the cursor.
pub(crate) fn unexpected(cur: &Cursor<'_>, expected: &str) -> ParseError {
    match cur.rest().chars().next() {
        Some(c) => syntax(format!("expected {expected} but found {c:?}")).detail(cur.rest()),
        None => syntax(format!("expected {expected} but reached the end")),
    }
}

pub(crate) fn expect_end(cur: &Cursor<'_>, after: &str) -> Result<()> {
    match cur.rest() {
        "" => Ok(()),
        rest => Err(syntax(format!("unexpected characters after {after}")).detail(rest)),
    }
}

/// Parses `"…"` at the cursor; `\x` stands for `x` (so `\"` and `\\`).
pub(crate) fn parse_quoted(cur: &mut Cursor<'_>) -> Result<String> {
    let start = cur.pos;
    let unterminated = || syntax("unterminated double-quoted string").detail(&cur.src[start..]);
    cur.pos += 1;
    let mut out = String::new();
    loop {
        let rest = cur.rest();
        let i = rest.find(['"', '\\']).ok_or_else(unterminated)?;
        out.push_str(&rest[..i]);
        cur.pos += i + 1;
        if rest.as_bytes()[i] == b'"' {
            return Ok(out);
        }
        let c = cur.rest().chars().next().ok_or_else(unterminated)?;
        out.push(c);
        cur.pos += c.len_utf8();
    }
}

/// A column name: a double-quoted identifier, or (as PostgREST) a run of letters, digits,
/// `_`, `$`, inner spaces and `-` not starting `->`, trimmed.
pub(crate) fn parse_column(cur: &mut Cursor<'_>) -> Result<Column> {
    if cur.peek() == Some(b'"') {
        let name = parse_quoted(cur)?;
        return match name.is_empty() {
            true => Err(syntax("empty quoted column name")),
            false => Ok(Column(name)),
        };
    }
    let rest = cur.rest();
    let is_ident = |(i, c): (usize, char)| {
        c.is_alphanumeric() || matches!(c, '_' | '$' | ' ') || (c == '-' && rest.as_bytes().get(i + 1) != Some(&b'>'))
    };
    let end = rest.char_indices().find(|&ic| !is_ident(ic));
    let end = end.map_or(rest.len(), |(i, _)| i);
    cur.pos += end;
    match rest[..end].trim_matches(' ') {
        "" => Err(unexpected(cur, "a column name")),
        name => Ok(Column(name.to_string())),
    }
}

/// Bytes outside double-quoted sections (quotes excluded; `\` escapes inside quotes).
pub(crate) fn unquoted_bytes(s: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let (mut in_quote, mut escaped) = (false, false);
    s.bytes().enumerate().filter(move |&(_, b)| {
        if escaped {
            escaped = false;
        } else if in_quote {
            (in_quote, escaped) = (b != b'"', b == b'\\');
        } else if b == b'"' {
            in_quote = true;
        } else {
            return true;
        }
        false
    })
}

/// Splits on commas outside quotes and parentheses; trims items and rejects empty ones.
pub(crate) fn split_items<'a>(s: &'a str, list: &str) -> Result<Vec<&'a str>> {
    let (mut items, mut start, mut depth) = (Vec::new(), 0, 0usize);
    for (i, b) in unquoted_bytes(s) {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                items.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&s[start..]);
    let trim = |item: &'a str| match item.trim_matches([' ', '\t']) {
        "" => Err(syntax(format!("empty item in {list} list"))),
        item => Ok(item),
    };
    items.into_iter().map(trim).collect()
}

/// After a list element: consumes `,` (giving false) or the closing `)` (giving true).
pub(crate) fn list_separator(cur: &mut Cursor<'_>, list: &str) -> Result<bool> {
    cur.skip_ws();
    let closed = match cur.peek() {
        Some(b',') => false,
        Some(b')') => true,
        None => {
            return Err(syntax(format!("unbalanced parentheses: {list} has no closing ')'")));
        }
        Some(_) => return Err(unexpected(cur, &format!("',' or ')' in {list}"))),
    };
    cur.pos += 1;
    Ok(closed)
}

/// A non-negative decimal integer made only of ASCII digits.
pub(crate) fn parse_u64(s: &str) -> Result<u64> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if s.strip_prefix('-').is_some_and(digits) {
        return Err(syntax("must not be negative").detail(s));
    }
    if !digits(s) {
        return Err(syntax("expected a non-negative integer").detail(s));
    }
    let too_large = |_| syntax(format!("number is too large (maximum {})", u64::MAX)).detail(s);
    s.parse::<u64>().map_err(too_large)
}

/// Form-decodes a key or value (`+` is a space, `%XX` a byte, a stray `%` stays), rejecting
/// invalid UTF-8 and NUL bytes.
pub(crate) fn decode_component(raw: &str) -> Result<String> {
    let (bytes, mut out, mut i) = (raw.as_bytes(), Vec::with_capacity(raw.len()), 0);
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|&b| (b as char).to_digit(16));
        out.push(match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'+', _, _) => b' ',
            (b'%', Some(high), Some(low)) => {
                i += 2;
                (high * 16 + low) as u8
            }
            (b, _, _) => b,
        });
        i += 1;
    }
    if out.contains(&0) {
        return Err(syntax("query string contains a NUL byte").detail(raw));
    }
    let invalid = |_| syntax("query string is not valid UTF-8 after percent-decoding").detail(raw);
    String::from_utf8(out).map_err(invalid)
}
