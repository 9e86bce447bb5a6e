//! Pure parser for the PostgREST request dialect (no I/O, no database, no async).
//!
//! [`parse_query`] turns a raw URL query string into [`QueryParams`]; [`parse_prefer`] and
//! [`parse_range`] read the `Prefer` and `Range` headers; [`effective_range`] combines
//! `limit`/`offset` with a `Range`. Identifiers stay strings ([`Column`]) for the caller to
//! check against the catalog and quote; filter values stay strings for the SQL builder.
//!
//! Rejected as [`ErrorKind::UnsupportedFeature`]: resource embedding (`rel(cols)`, `rel.col=…`,
//! spreads, hints), aggregates, JSON paths (`a->b`), operator modifiers (`like(any)`),
//! full-text search and the array/range operators. Parsing never panics, recurses at most
//! [`MAX_LOGIC_DEPTH`] levels deep and takes time linear in the input.

use std::fmt;

/// Deepest nesting of `or`/`and` groups accepted (the outermost group counts as 1).
pub const MAX_LOGIC_DEPTH: usize = 32;
/// Longest fragment of the input quoted back in an error.
const MAX_FRAGMENT_CHARS: usize = 80;
/// Operators PostgREST knows that rowcast does not support.
const UNSUPPORTED_OPERATORS: &str = "cs cd ov sl sr nxr nxl adj match imatch fts plfts phfts wfts isdistinct";
const OPERATORS: &str = "eq, neq, gt, gte, lt, lte, like, ilike, in, is";

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
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ParseError { kind, message: message.into(), details: None }
    }

    /// Attaches the offending fragment (shortened).
    fn detail(mut self, fragment: &str) -> Self {
        self.details = Some(shorten(fragment));
        self
    }

    /// Prefixes the message with where it happened; without details, `value` becomes them.
    fn context(mut self, prefix: &str, value: &str) -> Self {
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

type Result<T, E = ParseError> = std::result::Result<T, E>;

fn syntax(message: impl Into<String>) -> ParseError {
    ParseError::new(ErrorKind::Syntax, message)
}

fn unsupported(message: impl Into<String>) -> ParseError {
    ParseError::new(ErrorKind::UnsupportedFeature, message)
}

/// Cuts `s` to at most [`MAX_FRAGMENT_CHARS`] characters, marking the cut.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(MAX_FRAGMENT_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

// ----- AST -----

/// A column name as written by the client (quotes removed, escapes resolved). Never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Column(pub String);

impl Column {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One item of `select=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    /// `*`
    Star,
    /// `[alias:]column[::cast]`; `cast` is `[A-Za-z0-9_]+`, still to be whitelisted.
    Field { column: Column, alias: Option<String>, cast: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    Asc,
    Desc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullsOrder {
    First,
    Last,
}

/// One item of `order=`: `column[.asc|.desc][.nullsfirst|.nullslast]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    pub column: Column,
    pub direction: Direction,
    /// `None`: PostgreSQL's default for the direction.
    pub nulls: Option<NullsOrder>,
}

/// Operators taking one string operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    ILike,
}

impl CmpOp {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Neq => "<>",
            CmpOp::Gt => ">",
            CmpOp::Gte => ">=",
            CmpOp::Lt => "<",
            CmpOp::Lte => "<=",
            CmpOp::Like => "LIKE",
            CmpOp::ILike => "ILIKE",
        }
    }
}

/// Operand of `is` (matched case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsValue {
    Null,
    True,
    False,
    Unknown,
}

impl IsValue {
    /// The SQL keyword, as in `col IS <keyword>`.
    pub fn sql(self) -> &'static str {
        match self {
            IsValue::Null => "NULL",
            IsValue::True => "TRUE",
            IsValue::False => "FALSE",
            IsValue::Unknown => "UNKNOWN",
        }
    }
}

/// An operator with its operand(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// For `Like`/`ILike`, `*` in the value is already replaced by `%`.
    Cmp(CmpOp, String),
    /// `in.(…)`; an empty list matches nothing.
    In(Vec<String>),
    Is(IsValue),
}

/// `column [NOT] operation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub column: Column,
    pub negated: bool,
    pub operation: Operation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicOp {
    And,
    Or,
}

/// `[not.]or(…)` / `[not.]and(…)`; `children` is never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicTree {
    pub negated: bool,
    pub op: LogicOp,
    pub children: Vec<Filter>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Condition(Condition),
    Logic(LogicTree),
}

/// Everything a query string says. `filters` are ANDed, in the order given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryParams {
    /// `None`: no `select=` given (PostgREST's default, `*`).
    pub select: Option<Vec<SelectItem>>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub on_conflict: Option<Vec<Column>>,
    pub columns: Option<Vec<Column>>,
    pub filters: Vec<Filter>,
}

impl QueryParams {
    /// [`effective_range`] with this query's `limit` and `offset`.
    pub fn effective_range(&self, range: Option<(u64, Option<u64>)>) -> (u64, Option<u64>) {
        effective_range(self.limit, self.offset, range)
    }
}

// ----- Cursor and lexical pieces -----

/// A byte position in a `&str`, only ever moved past ASCII bytes or whole chars.
struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(src: &'a str) -> Self {
        Cursor { src, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        let found = self.rest().starts_with(s);
        self.pos += if found { s.len() } else { 0 };
        found
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Everything up to (not including) the first of the ASCII `stops`, or to the end.
    fn take_until(&mut self, stops: &[u8]) -> &'a str {
        let rest = self.rest();
        let len = rest.bytes().position(|b| stops.contains(&b));
        let len = len.unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }
}

/// "expected X but found 'c'" at the cursor.
fn unexpected(cur: &Cursor<'_>, expected: &str) -> ParseError {
    match cur.rest().chars().next() {
        Some(c) => syntax(format!("expected {expected} but found {c:?}")).detail(cur.rest()),
        None => syntax(format!("expected {expected} but reached the end")),
    }
}

fn expect_end(cur: &Cursor<'_>, after: &str) -> Result<()> {
    match cur.rest() {
        "" => Ok(()),
        rest => Err(syntax(format!("unexpected characters after {after}")).detail(rest)),
    }
}

/// Parses `"…"` at the cursor; `\x` stands for `x` (so `\"` and `\\`).
fn parse_quoted(cur: &mut Cursor<'_>) -> Result<String> {
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
fn parse_column(cur: &mut Cursor<'_>) -> Result<Column> {
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
fn unquoted_bytes(s: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
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
fn split_items<'a>(s: &'a str, list: &str) -> Result<Vec<&'a str>> {
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

/// Rejects embedding, spreads, hints and JSON paths found outside quotes in `item`.
fn check_unsupported(item: &str, param: &str) -> Result<()> {
    let what = match item.starts_with("..") {
        true => Some("spread embedding ('...rel(cols)') is"),
        false => unquoted_bytes(item).find_map(|(i, b)| match b {
            b'(' => Some("resource embedding (and aggregate functions) is"),
            b'!' => Some("resource embedding with hints ('rel!hint') is"),
            b'-' if item.as_bytes().get(i + 1) == Some(&b'>') => Some("JSON paths ('->') are"),
            _ => None,
        }),
    };
    match what {
        Some(what) => Err(unsupported(format!("{what} not supported in '{param}'")).detail(item)),
        None => Ok(()),
    }
}

/// After a list element: consumes `,` (giving false) or the closing `)` (giving true).
fn list_separator(cur: &mut Cursor<'_>, list: &str) -> Result<bool> {
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

// ----- select=, order=, column lists, numbers -----

/// `*` | `[alias:]column[::cast]`
fn parse_select_item(item: &str) -> Result<SelectItem> {
    if item == "*" {
        return Ok(SelectItem::Star);
    }
    check_unsupported(item, "select")?;
    let mut cur = Cursor::new(item);
    let first = parse_column(&mut cur)?;
    let (alias, column) = match !cur.rest().starts_with("::") && cur.eat(":") {
        true => (Some(first.0), parse_column(&mut cur)?),
        false => (None, first),
    };
    let mut cast = None;
    if cur.eat("::") {
        let ty = cur.take_until(b"");
        if ty.is_empty() || !ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let message = "cast type must be a simple type name such as 'text' or 'int'";
            return Err(syntax(message).detail(ty));
        }
        cast = Some(ty.to_string());
    }
    expect_end(&cur, "the select item")?;
    Ok(SelectItem::Field { column, alias, cast })
}

/// `column[.asc|.desc][.nullsfirst|.nullslast]`
fn parse_order_term(item: &str) -> Result<OrderTerm> {
    check_unsupported(item, "order")?;
    let mut cur = Cursor::new(item);
    let column = parse_column(&mut cur)?;
    let (mut direction, mut nulls, mut first) = (Direction::Asc, None, true);
    while cur.eat(".") {
        match cur.take_until(b".") {
            "asc" if first => direction = Direction::Asc,
            "desc" if first => direction = Direction::Desc,
            "nullsfirst" if nulls.is_none() => nulls = Some(NullsOrder::First),
            "nullslast" if nulls.is_none() => nulls = Some(NullsOrder::Last),
            word => {
                let expected = "expected asc or desc, then optionally nullsfirst or nullslast";
                let word = shorten(word);
                return Err(syntax(format!("unexpected order modifier '{word}' ({expected})")));
            }
        }
        first = false;
    }
    expect_end(&cur, "the order term")?;
    Ok(OrderTerm { column, direction, nulls })
}

/// A comma list of column names (`on_conflict=`, `columns=`).
fn parse_column_list(value: &str, param: &str) -> Result<Vec<Column>> {
    let parse = |item| {
        check_unsupported(item, param)?;
        let mut cur = Cursor::new(item);
        let column = parse_column(&mut cur)?;
        expect_end(&cur, "the column name").map(|()| column)
    };
    split_items(value, "column")?.into_iter().map(parse).collect()
}

/// A non-negative decimal integer made only of ASCII digits.
fn parse_u64(s: &str) -> Result<u64> {
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

// ----- Range header -----

/// Parses a `Range` header value for `Range-Unit: items`: `0-9`, `10-`, optionally prefixed
/// with `items=`. Gives `(first, Some(last))` (`last` inclusive) or `(first, None)` for an open
/// end. An end before the start is [`ErrorKind::InvalidRange`] (answer 416).
pub fn parse_range(range: &str) -> Result<(u64, Option<u64>), ParseError> {
    let context = |e: ParseError| e.context("invalid Range header", range);
    let s = range.trim();
    let s = s.strip_prefix("items=").unwrap_or(s).trim();
    let Some((first, last)) = s.split_once('-') else {
        return Err(context(syntax("expected 'first-last' or 'first-', as in 0-9")));
    };
    let first = parse_u64(first.trim()).map_err(context)?;
    let last = match last.trim() {
        "" => None,
        last => Some(parse_u64(last).map_err(context)?),
    };
    match last {
        Some(l) if l < first => {
            Err(ParseError::new(ErrorKind::InvalidRange, format!("requested range not satisfiable: end {l} is before start {first}"))
                .detail(range))
        }
        _ => Ok((first, last)),
    }
}

/// Combines `limit`/`offset` with a parsed `Range` header as PostgREST does: the rows served
/// are the intersection of both windows. Gives `(offset, limit)`; `limit` is `None` for no
/// limit, and `Some(0)` when the windows do not overlap (or `limit=0` was asked for).
pub fn effective_range(limit: Option<u64>, offset: Option<u64>, range: Option<(u64, Option<u64>)>) -> (u64, Option<u64>) {
    // Half-open windows [start, end); a `None` end is unbounded.
    let query_start = offset.unwrap_or(0);
    let query_end = limit.map(|l| query_start.saturating_add(l));
    let (header_start, header_end) = range.map_or((0, None), |(first, last)| (first, last.map(|l| l.saturating_add(1))));
    let start = query_start.max(header_start);
    let end = match (query_end, header_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (start, end.map(|e| e.saturating_sub(start)))
}

// ----- Filters and logic trees -----

#[derive(Clone, Copy)]
enum OpKind {
    Cmp(CmpOp),
    In,
    Is,
}

fn lookup_operator(word: &str) -> Result<OpKind> {
    Ok(match word {
        "eq" => OpKind::Cmp(CmpOp::Eq),
        "neq" => OpKind::Cmp(CmpOp::Neq),
        "gt" => OpKind::Cmp(CmpOp::Gt),
        "gte" => OpKind::Cmp(CmpOp::Gte),
        "lt" => OpKind::Cmp(CmpOp::Lt),
        "lte" => OpKind::Cmp(CmpOp::Lte),
        "like" => OpKind::Cmp(CmpOp::Like),
        "ilike" => OpKind::Cmp(CmpOp::ILike),
        "in" => OpKind::In,
        "is" => OpKind::Is,
        "" => {
            return Err(syntax(format!("missing operator (expected one of {OPERATORS})")));
        }
        w if UNSUPPORTED_OPERATORS.split(' ').any(|op| op == w) => {
            return Err(unsupported(format!("operator '{w}' is not supported")));
        }
        w => {
            let w = shorten(w);
            return Err(syntax(format!("unknown operator '{w}' (expected one of {OPERATORS})")));
        }
    })
}

/// `[not.]op.` at the cursor, which is left on the operand.
fn parse_operator_head(cur: &mut Cursor<'_>) -> Result<(bool, OpKind)> {
    let negated = cur.eat("not.");
    let word = cur.take_until(b".,()");
    if cur.peek() == Some(b'(') {
        let word = shorten(word);
        let message = format!("operator modifiers such as '{word}(…)' are not supported");
        return Err(unsupported(message));
    }
    let kind = lookup_operator(word)?;
    if !cur.eat(".") {
        return Err(unexpected(cur, &format!("'.' and a value after operator '{word}'")));
    }
    Ok((negated, kind))
}

fn parse_is_value(token: &str) -> Result<IsValue> {
    let values = [IsValue::Null, IsValue::True, IsValue::False, IsValue::Unknown];
    let names = ["null", "true", "false", "unknown"];
    let found = names.iter().position(|n| token.eq_ignore_ascii_case(n));
    let error = || syntax("'is' expects null, true, false or unknown").detail(token);
    found.map(|i| values[i]).ok_or_else(error)
}

fn cmp_operation(op: CmpOp, value: &str) -> Operation {
    match op {
        CmpOp::Like | CmpOp::ILike => Operation::Cmp(op, value.replace('*', "%")),
        _ => Operation::Cmp(op, value.to_string()),
    }
}

/// `(a,"b,c",d)`: elements may be double-quoted; `()` is the empty list.
fn parse_in_list(cur: &mut Cursor<'_>) -> Result<Vec<String>> {
    cur.skip_ws();
    if !cur.eat("(") {
        return Err(unexpected(cur, "'(' opening the 'in' list, as in in.(1,2,3)"));
    }
    cur.skip_ws();
    let mut items = Vec::new();
    let mut closed = cur.eat(")");
    while !closed {
        items.push(match cur.peek() {
            Some(b'"') => parse_quoted(cur)?,
            _ => cur.take_until(b",)").to_string(),
        });
        closed = list_separator(cur, "the 'in' list")?;
    }
    Ok(items)
}

/// A filter parameter: key `column`, value `[not.]op.value`.
fn parse_filter(key: &str, value: &str) -> Result<Condition> {
    let column = parse_filter_key(key)?;
    let mut cur = Cursor::new(value);
    let (negated, kind) = parse_operator_head(&mut cur)?;
    let operation = match kind {
        OpKind::In => {
            let list = parse_in_list(&mut cur)?;
            cur.skip_ws();
            expect_end(&cur, "the 'in' list")?;
            Operation::In(list)
        }
        OpKind::Is => Operation::Is(parse_is_value(cur.rest())?),
        OpKind::Cmp(op) => cmp_operation(op, cur.rest()),
    };
    Ok(Condition { column, negated, operation })
}

fn parse_filter_key(key: &str) -> Result<Column> {
    if key.is_empty() {
        return Err(syntax("empty parameter name"));
    }
    let mut cur = Cursor::new(key);
    let column = parse_column(&mut cur)?;
    if cur.rest().starts_with("->") {
        return Err(unsupported("JSON paths ('->') are not supported in filters"));
    }
    if cur.peek() == Some(b'.') {
        let message = "resource embedding is not supported (no filters on 'rel.column' keys)";
        return Err(unsupported(message));
    }
    expect_end(&cur, "the column name").map(|()| column)
}

/// `(item,item,…)` at the cursor; `depth` is this group's nesting level (outermost = 1).
fn parse_group(cur: &mut Cursor<'_>, negated: bool, op: LogicOp, depth: usize) -> Result<LogicTree> {
    if depth > MAX_LOGIC_DEPTH {
        let message = format!("logic tree nested too deeply (at most {MAX_LOGIC_DEPTH} levels)");
        return Err(syntax(message));
    }
    cur.skip_ws();
    if !cur.eat("(") {
        return Err(unexpected(cur, "'(' opening a logic group"));
    }
    cur.skip_ws();
    if cur.peek() == Some(b')') {
        return Err(syntax("empty logic group '()'"));
    }
    let mut children = Vec::new();
    loop {
        cur.skip_ws();
        children.push(parse_logic_item(cur, depth)?);
        if list_separator(cur, "a logic group")? {
            return Ok(LogicTree { negated, op, children });
        }
    }
}

/// A nested `[not.]or(…)` / `[not.]and(…)`, or a condition `column.[not.]op.value`.
fn parse_logic_item(cur: &mut Cursor<'_>, depth: usize) -> Result<Filter> {
    let start = cur.pos;
    let negated = cur.eat("not.");
    for (word, op) in [("or(", LogicOp::Or), ("and(", LogicOp::And)] {
        if cur.rest().starts_with(word) {
            cur.pos += word.len() - 1; // the '(' is parse_group's
            return parse_group(cur, negated, op, depth + 1).map(Filter::Logic);
        }
    }
    cur.pos = start;
    let column = parse_column(cur)?;
    if cur.rest().starts_with("->") {
        return Err(unsupported("JSON paths ('->') are not supported in logic trees"));
    }
    if !cur.eat(".") {
        let column = shorten(&column.0);
        return Err(unexpected(cur, &format!("'.' and an operator after column '{column}'")));
    }
    let (negated, kind) = parse_operator_head(cur)?;
    let operation = match kind {
        OpKind::In => Operation::In(parse_in_list(cur)?),
        OpKind::Is => Operation::Is(parse_is_value(&parse_logic_value(cur)?)?),
        OpKind::Cmp(op) => cmp_operation(op, &parse_logic_value(cur)?),
    };
    Ok(Filter::Condition(Condition { column, negated, operation }))
}

/// A value in a logic group: `"quoted"`, a `{pg,array}` literal, or text up to `,` or `)`.
fn parse_logic_value(cur: &mut Cursor<'_>) -> Result<String> {
    match cur.peek() {
        Some(b'"') => parse_quoted(cur),
        Some(b'{') => {
            let rest = cur.rest();
            let end = rest.find('}').ok_or_else(|| syntax("unterminated array literal: missing '}'").detail(rest))?;
            cur.pos += end + 1;
            Ok(rest[..=end].to_string())
        }
        _ => Ok(cur.take_until(b",)").to_string()),
    }
}

// ----- Query string -----

/// Form-decodes a key or value (`+` is a space, `%XX` a byte, a stray `%` stays), rejecting
/// invalid UTF-8 and NUL bytes.
fn decode_component(raw: &str) -> Result<String> {
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

/// Parses a raw URL query string (without the `?`), such as
/// `select=id,name&id=gt.10&or=(a.eq.1,b.is.null)&order=name.desc&limit=5`.
pub fn parse_query(raw_query: &str) -> Result<QueryParams, ParseError> {
    let mut params = QueryParams::default();
    let mut seen = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode_component(key)?, decode_component(value)?);
        let context = |e: ParseError| match key.as_str() {
            "or" | "and" | "not.or" | "not.and" | "select" | "order" | "limit" | "offset" | "on_conflict" | "columns" => {
                e.context(&format!("invalid '{key}' parameter"), &value)
            }
            _ => e.context(&format!("invalid filter '{}'", shorten(&key)), &value),
        };
        apply_param(&mut params, &mut seen, &key, &value).map_err(context)?;
    }
    Ok(params)
}

fn apply_param(qp: &mut QueryParams, seen: &mut Vec<String>, key: &str, value: &str) -> Result<()> {
    let logic = |negated, op| -> Result<Filter> {
        let mut cur = Cursor::new(value);
        let tree = parse_group(&mut cur, negated, op, 1)?;
        cur.skip_ws();
        expect_end(&cur, "the logic tree").map(|()| Filter::Logic(tree))
    };
    let filter = match key {
        "or" => logic(false, LogicOp::Or)?,
        "and" => logic(false, LogicOp::And)?,
        "not.or" => logic(true, LogicOp::Or)?,
        "not.and" => logic(true, LogicOp::And)?,
        "select" | "order" | "limit" | "offset" | "on_conflict" | "columns" => {
            return apply_reserved(qp, seen, key, value);
        }
        _ => Filter::Condition(parse_filter(key, value)?),
    };
    qp.filters.push(filter);
    Ok(())
}

/// The single-valued parameters: each may appear once and must not be empty.
fn apply_reserved(qp: &mut QueryParams, seen: &mut Vec<String>, key: &str, value: &str) -> Result<()> {
    if seen.iter().any(|k| k == key) {
        return Err(syntax("the parameter is given more than once"));
    }
    seen.push(key.to_string());
    if value.is_empty() {
        return Err(syntax("the value must not be empty"));
    }
    match key {
        "select" => {
            let items = split_items(value, "select")?.into_iter();
            qp.select = Some(items.map(parse_select_item).collect::<Result<_>>()?);
        }
        "order" => {
            let items = split_items(value, "order")?.into_iter();
            qp.order = items.map(parse_order_term).collect::<Result<_>>()?;
        }
        "limit" => qp.limit = Some(parse_u64(value)?),
        "offset" => qp.offset = Some(parse_u64(value)?),
        "on_conflict" => qp.on_conflict = Some(parse_column_list(value, key)?),
        _ => qp.columns = Some(parse_column_list(value, key)?),
    }
    Ok(())
}

// ----- Prefer header -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnPref {
    Representation,
    Minimal,
    HeadersOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountPref {
    Exact,
    Planned,
    Estimated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingPref {
    Default,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Lenient,
    Strict,
}

/// The recognised preferences; `None` where the client expressed none. A preference given
/// more than once keeps its first value, as in PostgREST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prefer {
    pub return_pref: Option<ReturnPref>,
    pub count: Option<CountPref>,
    pub resolution: Option<Resolution>,
    pub missing: Option<MissingPref>,
    pub handling: Option<Handling>,
    /// `max-affected=<n>` (PostgREST 13): a PATCH/DELETE touching more rows is refused.
    pub max_affected: Option<u64>,
}

/// Records `token` in `prefer` (first value wins); false if it is not recognised.
fn apply_preference(p: &mut Prefer, token: &str) -> bool {
    fn keep<T>(slot: &mut Option<T>, value: T) -> bool {
        slot.get_or_insert(value);
        true
    }
    match token {
        "return=representation" => keep(&mut p.return_pref, ReturnPref::Representation),
        "return=minimal" => keep(&mut p.return_pref, ReturnPref::Minimal),
        "return=headers-only" => keep(&mut p.return_pref, ReturnPref::HeadersOnly),
        "count=exact" => keep(&mut p.count, CountPref::Exact),
        "count=planned" => keep(&mut p.count, CountPref::Planned),
        "count=estimated" => keep(&mut p.count, CountPref::Estimated),
        "resolution=merge-duplicates" => keep(&mut p.resolution, Resolution::MergeDuplicates),
        "resolution=ignore-duplicates" => keep(&mut p.resolution, Resolution::IgnoreDuplicates),
        "missing=default" => keep(&mut p.missing, MissingPref::Default),
        "missing=null" => keep(&mut p.missing, MissingPref::Null),
        "handling=lenient" => keep(&mut p.handling, Handling::Lenient),
        "handling=strict" => keep(&mut p.handling, Handling::Strict),
        _ => match token.strip_prefix("max-affected=").map(parse_u64) {
            Some(Ok(n)) => keep(&mut p.max_affected, n),
            _ => false,
        },
    }
}

/// Parses a `Prefer` header value (several headers may be joined with `, `). Unknown or
/// invalid preferences are ignored, unless `handling=strict` is in force: then they are an
/// [`ErrorKind::InvalidPreference`] error listing them.
pub fn parse_prefer(header: &str) -> Result<Prefer, ParseError> {
    let mut prefer = Prefer::default();
    let tokens = header.split(',').map(str::trim).filter(|t| !t.is_empty());
    let invalid: Vec<&str> = tokens.filter(|t| !apply_preference(&mut prefer, t)).collect();
    if prefer.handling != Some(Handling::Strict) || invalid.is_empty() {
        return Ok(prefer);
    }
    let message = "invalid preferences given with handling=strict";
    let listed = invalid.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    Err(ParseError::new(ErrorKind::InvalidPreference, message).detail(&listed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> QueryParams {
        parse_query(s).unwrap_or_else(|e| panic!("{s:?} should parse, got: {e}"))
    }

    fn err(s: &str) -> ParseError {
        match parse_query(s) {
            Ok(p) => panic!("{s:?} should fail, got: {p:?}"),
            Err(e) => e,
        }
    }

    fn syntax_err(s: &str, needle: &str) {
        let e = err(s);
        assert_eq!(e.kind, ErrorKind::Syntax, "{s:?}: {e}");
        assert!(e.to_string().contains(needle), "{s:?}: {e:?} lacks {needle:?}");
    }

    fn unsupported_err(s: &str, needle: &str) {
        let e = err(s);
        assert_eq!(e.kind, ErrorKind::UnsupportedFeature, "{s:?}: {e}");
        assert!(e.message.contains(needle), "{s:?}: {e:?} lacks {needle:?}");
    }

    fn col(s: &str) -> Column {
        Column(s.to_string())
    }

    fn cond(c: &str, negated: bool, operation: Operation) -> Filter {
        Filter::Condition(Condition { column: col(c), negated, operation })
    }

    fn cmp(c: &str, op: CmpOp, v: &str) -> Filter {
        cond(c, false, Operation::Cmp(op, v.to_string()))
    }

    fn only_filter(s: &str) -> Filter {
        let mut p = q(s);
        assert_eq!(p.filters.len(), 1, "{s:?}");
        p.filters.remove(0)
    }

    fn field(c: &str, alias: Option<&str>, cast: Option<&str>) -> SelectItem {
        SelectItem::Field { column: col(c), alias: alias.map(String::from), cast: cast.map(String::from) }
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    // ----- select -----

    #[test]
    fn select_forms() {
        assert_eq!(q("select=*").select, Some(vec![SelectItem::Star]));
        assert_eq!(q("select=id,name").select, Some(vec![field("id", None, None), field("name", None, None)]));
        assert_eq!(q("select=n:name").select, Some(vec![field("name", Some("n"), None)]));
        assert_eq!(q("select=id::text").select, Some(vec![field("id", None, Some("text"))]));
        assert_eq!(q("select=a:id::int,*").select, Some(vec![field("id", Some("a"), Some("int")), SelectItem::Star]));
    }

    #[test]
    fn select_quoted_and_spaced_identifiers() {
        assert_eq!(q("select=%22my%20col%22,%22a%5C%22b%22").select, Some(vec![field("my col", None, None), field("a\"b", None, None)]));
        assert_eq!(q("select=%22x,y%22:%22a:b%22::text").select, Some(vec![field("a:b", Some("x,y"), Some("text"))]));
        assert_eq!(q("select=+id+,+first+name").select, Some(vec![field("id", None, None), field("first name", None, None)]));
        assert_eq!(q("select=_x$1,%C3%A9t%C3%A9").select.unwrap().len(), 2);
    }

    #[test]
    fn select_errors() {
        syntax_err("select=", "must not be empty");
        syntax_err("select=a,,b", "empty item");
        syntax_err("select=a,", "empty item");
        syntax_err("select=,", "empty item");
        syntax_err("select=col::", "simple type name");
        syntax_err("select=col::te;xt", "simple type name");
        syntax_err("select=a:", "column name");
        syntax_err("select=*::text", "column name");
        syntax_err("select=a:b:c", "unexpected");
        syntax_err("select=%22unterminated", "unterminated");
        syntax_err("select=%22%22", "empty quoted column");
        syntax_err("select=a&select=b", "more than once");
    }

    #[test]
    fn select_embedding_is_unsupported() {
        unsupported_err("select=id,rel(a,b)", "embedding");
        unsupported_err("select=id,rel(a,b)", "not supported");
        unsupported_err("select=alias:rel(*)", "embedding");
        unsupported_err("select=rel!inner(*)", "embedding");
        unsupported_err("select=...rel(*)", "spread");
        unsupported_err("select=count()", "embedding");
        unsupported_err("select=data->a", "JSON");
        unsupported_err("select=data->>a::int", "JSON");
        let e = err("select=id,rel(a)");
        assert_eq!(e.details.as_deref(), Some("rel(a)"));
        // a quoted '(' is just part of a name
        assert_eq!(q("select=%22f(x)%22").select, Some(vec![field("f(x)", None, None)]));
    }

    // ----- order -----

    #[test]
    fn order_forms() {
        let p = q("order=a,b.desc,c.asc.nullslast,d.nullsfirst,%22e+f%22.desc.nullsfirst");
        let t = |c: &str, direction, nulls| OrderTerm { column: col(c), direction, nulls };
        assert_eq!(
            p.order,
            vec![
                t("a", Direction::Asc, None),
                t("b", Direction::Desc, None),
                t("c", Direction::Asc, Some(NullsOrder::Last)),
                t("d", Direction::Asc, Some(NullsOrder::First)),
                t("e f", Direction::Desc, Some(NullsOrder::First)),
            ]
        );
    }

    #[test]
    fn order_errors() {
        syntax_err("order=col.sideways", "sideways");
        syntax_err("order=col.desc.asc", "asc");
        syntax_err("order=col.nullsfirst.desc", "desc");
        syntax_err("order=col.nullsfirst.nullslast", "nullslast");
        syntax_err("order=col.descc", "descc");
        syntax_err("order=col.", "order modifier");
        syntax_err("order=", "must not be empty");
        syntax_err("order=a,,b", "empty item");
        syntax_err("order=a&order=b", "more than once");
        unsupported_err("order=rel(col).desc", "embedding");
        unsupported_err("order=data->a.desc", "JSON");
    }

    // ----- limit / offset -----

    #[test]
    fn limit_offset() {
        let p = q("limit=10&offset=20");
        assert_eq!((p.limit, p.offset), (Some(10), Some(20)));
        assert_eq!(q("limit=0").limit, Some(0));
        assert_eq!(q("limit=18446744073709551615").limit, Some(u64::MAX));
        assert_eq!(q("limit=007").limit, Some(7));
    }

    #[test]
    fn limit_offset_errors() {
        syntax_err("limit=-1", "negative");
        syntax_err("offset=-5", "negative");
        syntax_err("limit=abc", "non-negative integer");
        syntax_err("limit=", "must not be empty");
        syntax_err("limit", "must not be empty");
        assert_eq!(err("limit=").details, None);
        syntax_err("limit=1.5", "non-negative integer");
        syntax_err("limit=+5", "non-negative integer");
        syntax_err("limit=5+", "non-negative integer");
        syntax_err("limit=18446744073709551616", "too large");
        syntax_err("limit=99999999999999999999999999999", "too large");
        syntax_err("limit=1&limit=2", "more than once");
        syntax_err("offset=1&offset=1", "more than once");
        let e = err("limit=abc");
        assert!(e.message.contains("'limit'"), "{e}");
        assert_eq!(e.details.as_deref(), Some("abc"));
    }

    // ----- on_conflict / columns -----

    #[test]
    fn column_lists() {
        let p = q("on_conflict=a,b&columns=x,%22y+z%22,+w");
        assert_eq!(p.on_conflict, Some(vec![col("a"), col("b")]));
        assert_eq!(p.columns, Some(vec![col("x"), col("y z"), col("w")]));
        syntax_err("columns=", "must not be empty");
        syntax_err("on_conflict=", "must not be empty");
        syntax_err("columns=a,,b", "empty item in column list");
        syntax_err("columns=a.b", "unexpected");
        syntax_err("on_conflict=a&on_conflict=b", "more than once");
        unsupported_err("columns=rel(a)", "embedding");
    }

    // ----- filters -----

    #[test]
    fn comparison_operators() {
        for (name, op) in
            [("eq", CmpOp::Eq), ("neq", CmpOp::Neq), ("gt", CmpOp::Gt), ("gte", CmpOp::Gte), ("lt", CmpOp::Lt), ("lte", CmpOp::Lte)]
        {
            assert_eq!(only_filter(&format!("age={name}.42")), cmp("age", op, "42"));
        }
        assert_eq!(CmpOp::Neq.sql(), "<>");
        assert_eq!(CmpOp::ILike.sql(), "ILIKE");
    }

    #[test]
    fn filter_values_are_verbatim() {
        assert_eq!(only_filter("v=eq.a.b.c"), cmp("v", CmpOp::Eq, "a.b.c"));
        assert_eq!(only_filter("v=eq."), cmp("v", CmpOp::Eq, ""));
        assert_eq!(only_filter("v=eq.*x*"), cmp("v", CmpOp::Eq, "*x*"));
        assert_eq!(only_filter("v=eq.%22a,b%22"), cmp("v", CmpOp::Eq, "\"a,b\""));
        assert_eq!(only_filter("v=eq.a+b%2Bc%26d%3D"), cmp("v", CmpOp::Eq, "a b+c&d="));
        assert_eq!(only_filter("v=eq.(x)"), cmp("v", CmpOp::Eq, "(x)"));
    }

    #[test]
    fn like_star_becomes_percent() {
        assert_eq!(only_filter("n=like.*ab*c"), cmp("n", CmpOp::Like, "%ab%c"));
        assert_eq!(only_filter("n=ilike.A*"), cmp("n", CmpOp::ILike, "A%"));
        assert_eq!(only_filter("n=like.a%25b"), cmp("n", CmpOp::Like, "a%b"));
    }

    #[test]
    fn negation() {
        assert_eq!(only_filter("a=not.eq.5"), cond("a", true, Operation::Cmp(CmpOp::Eq, "5".into())));
        assert_eq!(only_filter("a=not.is.null"), cond("a", true, Operation::Is(IsValue::Null)));
        assert_eq!(only_filter("a=not.in.(1,2)"), cond("a", true, Operation::In(strs(&["1", "2"]))));
    }

    #[test]
    fn in_lists() {
        let f = |s: &str| match only_filter(s) {
            Filter::Condition(Condition { operation: Operation::In(v), .. }) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(f("id=in.(1,2,3)"), strs(&["1", "2", "3"]));
        assert_eq!(f("id=in.(a)"), strs(&["a"]));
        assert_eq!(f("id=in.()"), Vec::<String>::new());
        assert_eq!(f("id=in.(+)"), Vec::<String>::new());
        assert_eq!(f("n=in.(%22a,b%22,c,%22d)e%22)"), strs(&["a,b", "c", "d)e"]));
        assert_eq!(f("n=in.(%22a%5C%22b%22,%22c%5C%5Cd%22)"), strs(&["a\"b", "c\\d"]));
        assert_eq!(f("n=in.(,)"), strs(&["", ""]));
        assert_eq!(f("n=in.(a.b,c(d)"), strs(&["a.b", "c(d"]));
        assert_eq!(f("n=in.(%22%22)"), strs(&[""]));
    }

    #[test]
    fn in_list_errors() {
        syntax_err("id=in.(1,2", "no closing");
        syntax_err("id=in.1,2", "'('");
        syntax_err("id=in.(1)x", "unexpected characters");
        syntax_err("id=in.(%22a%22x)", "expected ',' or ')' in the 'in' list");
        syntax_err("id=in.(%22a", "unterminated");
        syntax_err("id=in.(%22a%5C", "unterminated");
    }

    #[test]
    fn is_values() {
        for (v, expected) in [
            ("null", IsValue::Null),
            ("NULL", IsValue::Null),
            ("true", IsValue::True),
            ("TRUE", IsValue::True),
            ("False", IsValue::False),
            ("unknown", IsValue::Unknown),
        ] {
            assert_eq!(only_filter(&format!("a=is.{v}")), cond("a", false, Operation::Is(expected)));
        }
        assert_eq!(IsValue::Unknown.sql(), "UNKNOWN");
        syntax_err("a=is.maybe", "null, true, false or unknown");
        syntax_err("a=is.not_null", "null, true, false or unknown");
        syntax_err("a=is.", "null, true, false or unknown");
        syntax_err("a=is.nullx", "null, true, false or unknown");
    }

    #[test]
    fn operator_errors() {
        syntax_err("a=foo.1", "unknown operator 'foo'");
        syntax_err("a=EQ.1", "unknown operator 'EQ'");
        syntax_err("a=eq", "after operator 'eq'");
        syntax_err("a=", "missing operator");
        syntax_err("a", "missing operator");
        syntax_err("a=.1", "missing operator");
        syntax_err("a=not.", "missing operator");
        syntax_err("a=not.foo.1", "unknown operator 'foo'");
        unsupported_err("tags=cs.{a,b}", "'cs'");
        unsupported_err("t=fts.cat", "'fts'");
        unsupported_err("t=fts(english).cat", "modifiers");
        unsupported_err("n=like(any).{a*,b*}", "modifiers");
        let e = err("name=foo.1");
        assert!(e.message.contains("filter 'name'"), "{e}");
    }

    #[test]
    fn filter_keys() {
        assert_eq!(only_filter("%22my+col%22=eq.1"), cmp("my col", CmpOp::Eq, "1"));
        assert_eq!(only_filter("%22a.b%22=eq.1"), cmp("a.b", CmpOp::Eq, "1"));
        assert_eq!(only_filter("not=eq.1"), cmp("not", CmpOp::Eq, "1"));
        unsupported_err("rel.col=eq.1", "embedding is not supported");
        unsupported_err("rel.order=id", "embedding");
        unsupported_err("rel.limit=1", "embedding");
        unsupported_err("rel.or=(a.eq.1)", "embedding");
        unsupported_err("data->a=eq.1", "JSON");
        unsupported_err("data->>a=eq.1", "JSON");
        syntax_err("=eq.1", "empty parameter name");
        syntax_err("a;b=eq.1", "unexpected");
        syntax_err("%22%22=eq.1", "empty quoted column");
    }

    #[test]
    fn several_filters_and_params_together() {
        let p = q("select=id&a=gt.1&a=lt.5&order=id.desc&limit=3&offset=6&b=is.true");
        assert_eq!(p.filters, vec![cmp("a", CmpOp::Gt, "1"), cmp("a", CmpOp::Lt, "5"), cond("b", false, Operation::Is(IsValue::True)),]);
        assert_eq!(p.select, Some(vec![field("id", None, None)]));
        assert_eq!((p.limit, p.offset, p.order.len()), (Some(3), Some(6), 1));
        assert_eq!(p.on_conflict, None);
    }

    // ----- logic trees -----

    fn logic(negated: bool, op: LogicOp, children: Vec<Filter>) -> Filter {
        Filter::Logic(LogicTree { negated, op, children })
    }

    #[test]
    fn logic_trees() {
        assert_eq!(only_filter("or=(a.eq.1,b.gt.2)"), logic(false, LogicOp::Or, vec![cmp("a", CmpOp::Eq, "1"), cmp("b", CmpOp::Gt, "2")]));
        assert_eq!(
            only_filter("and=(a.eq.1,or(b.eq.2,not.and(c.lt.3,d.is.null)))"),
            logic(
                false,
                LogicOp::And,
                vec![
                    cmp("a", CmpOp::Eq, "1"),
                    logic(
                        false,
                        LogicOp::Or,
                        vec![
                            cmp("b", CmpOp::Eq, "2"),
                            logic(true, LogicOp::And, vec![cmp("c", CmpOp::Lt, "3"), cond("d", false, Operation::Is(IsValue::Null)),]),
                        ]
                    ),
                ]
            )
        );
        assert_eq!(only_filter("not.or=(a.eq.1)"), logic(true, LogicOp::Or, vec![cmp("a", CmpOp::Eq, "1")]));
        assert_eq!(
            only_filter("not.and=(a.not.eq.1,not.or(b.eq.2))"),
            logic(
                true,
                LogicOp::And,
                vec![cond("a", true, Operation::Cmp(CmpOp::Eq, "1".into())), logic(true, LogicOp::Or, vec![cmp("b", CmpOp::Eq, "2")]),]
            )
        );
    }

    #[test]
    fn logic_values() {
        let Filter::Logic(t) = only_filter(
            "or=(n.eq.%22a,b%22,n.eq.%22x)y.z%22,n.eq.%22q%5C%22r%5C%5Cs%22,n.like.*x*,\
             id.in.(1,%222,3%22),tags.eq.{a,b},n.eq.,n.eq.a.b,or.eq.1)",
        ) else {
            panic!("not a logic tree")
        };
        assert_eq!(
            t.children,
            vec![
                cmp("n", CmpOp::Eq, "a,b"),
                cmp("n", CmpOp::Eq, "x)y.z"),
                cmp("n", CmpOp::Eq, "q\"r\\s"),
                cmp("n", CmpOp::Like, "%x%"),
                cond("id", false, Operation::In(strs(&["1", "2,3"]))),
                cmp("tags", CmpOp::Eq, "{a,b}"),
                cmp("n", CmpOp::Eq, ""),
                cmp("n", CmpOp::Eq, "a.b"),
                cmp("or", CmpOp::Eq, "1"),
            ]
        );
    }

    #[test]
    fn logic_whitespace_and_repeats() {
        assert_eq!(
            only_filter("or=(+a.eq.1+,+b.eq.2)+"),
            logic(false, LogicOp::Or, vec![cmp("a", CmpOp::Eq, "1 "), cmp("b", CmpOp::Eq, "2")])
        );
        assert_eq!(q("or=(a.eq.1)&or=(b.eq.2)&and=(c.eq.3)").filters.len(), 3);
    }

    #[test]
    fn logic_errors() {
        syntax_err("or=", "'('");
        syntax_err("or=()", "empty logic group");
        syntax_err("or=(a.eq.1,and())", "empty logic group");
        syntax_err("or=(a.eq.1", "no closing");
        syntax_err("or=(a.eq.1))", "unexpected characters");
        syntax_err("or=a.eq.1", "'('");
        syntax_err("or=(a.eq.%22abc)", "unterminated");
        syntax_err("or=(a.eq.%22a%22b)", "expected ',' or ')' in a logic group");
        syntax_err("or=(a.foo.1)", "unknown operator 'foo'");
        syntax_err("or=(a)", "operator after column 'a'");
        syntax_err("or=(a.eq)", "after operator 'eq'");
        syntax_err("or=(a.eq.1,)", "column name");
        syntax_err("or=(,a.eq.1)", "column name");
        syntax_err("or=(xor(a.eq.1))", "after column 'xor'");
        syntax_err("or=(a.in.(1,2)", "no closing");
        syntax_err("or=(a.in.1)", "'('");
        syntax_err("or=(a.is.maybe)", "null, true, false or unknown");
        syntax_err("or=(t.eq.{a,b)", "'}'");
        unsupported_err("or=(a->b.eq.1)", "JSON");
        unsupported_err("or=(a.cs.{1})", "'cs'");
        let e = err("or=(a.foo.1)");
        assert!(e.message.contains("'or'"), "{e}");
    }

    fn nested(depth: usize) -> String {
        let mut s = String::from("or=(");
        for _ in 1..depth {
            s.push_str("or(");
        }
        s.push_str("a.eq.1");
        s.push_str(&")".repeat(depth));
        s
    }

    #[test]
    fn logic_depth_limit() {
        assert!(parse_query(&nested(MAX_LOGIC_DEPTH)).is_ok());
        syntax_err(&nested(MAX_LOGIC_DEPTH + 1), "nested too deeply");
        syntax_err(&nested(100_000), "nested too deeply");
        let bomb = format!("and=({}", "not.and(".repeat(1_000_000));
        syntax_err(&bomb, "nested too deeply");
    }

    // ----- decoding -----

    #[test]
    fn decoding() {
        assert_eq!(q(""), QueryParams::default());
        assert_eq!(q("&&&"), QueryParams::default());
        assert_eq!(only_filter("a=eq.%zz"), cmp("a", CmpOp::Eq, "%zz"));
        assert_eq!(only_filter("a=eq.100%"), cmp("a", CmpOp::Eq, "100%"));
        assert_eq!(only_filter("a=eq.%4"), cmp("a", CmpOp::Eq, "%4"));
        assert_eq!(only_filter("a=eq.%C3%A9"), cmp("a", CmpOp::Eq, "é"));
        assert_eq!(only_filter("a=eq.x=y"), cmp("a", CmpOp::Eq, "x=y"));
        assert_eq!(only_filter("%61=eq.1"), cmp("a", CmpOp::Eq, "1"));
        assert_eq!(q("select=%2A").select, Some(vec![SelectItem::Star]));
        syntax_err("a=eq.%FF", "UTF-8");
        syntax_err("a=eq.%C3", "UTF-8");
        syntax_err("%FF=eq.1", "UTF-8");
        syntax_err("a=eq.x%00y", "NUL");
        syntax_err("a=eq.x\0y", "NUL");
    }

    #[test]
    fn huge_inputs_are_linear() {
        let list = vec!["%22x,y%22"; 200_000].join(",");
        let p = q(&format!("id=in.({list})"));
        match &p.filters[0] {
            Filter::Condition(Condition { operation: Operation::In(v), .. }) => assert_eq!(v.len(), 200_000),
            other => panic!("{other:?}"),
        }
        let conds = vec!["a.eq.1"; 100_000].join(",");
        assert!(parse_query(&format!("or=({conds})")).is_ok());
        let sel = vec!["a"; 100_000].join(",");
        assert_eq!(q(&format!("select={sel}")).select.unwrap().len(), 100_000);
        let e = err(&format!("a=foo{}.1", "x".repeat(1_000_000)));
        assert!(e.to_string().len() < 1_000, "error text should be shortened");
        syntax_err(&format!("select=\"{}", "a".repeat(1_000_000)), "unterminated");
    }

    // ----- errors -----

    #[test]
    fn error_display() {
        let e = err("order=col.sideways");
        assert_eq!(e.details.as_deref(), Some("col.sideways"));
        assert_eq!(e.to_string(), format!("{} (at: col.sideways)", e.message), "Display shows message then details");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().starts_with("invalid 'order' parameter"));
        let plain = syntax("x");
        assert_eq!(plain.to_string(), "x");
    }

    // ----- Prefer -----

    #[test]
    fn prefer_basic() {
        let p = parse_prefer("return=representation, count=exact,resolution=merge-duplicates ,missing=default").unwrap();
        assert_eq!(
            p,
            Prefer {
                return_pref: Some(ReturnPref::Representation),
                count: Some(CountPref::Exact),
                resolution: Some(Resolution::MergeDuplicates),
                missing: Some(MissingPref::Default),
                handling: None,
                max_affected: None,
            }
        );
        assert_eq!(parse_prefer("").unwrap(), Prefer::default());
        assert_eq!(parse_prefer(" , ,").unwrap(), Prefer::default());
        let p = parse_prefer("return=minimal, count=planned, resolution=ignore-duplicates").unwrap();
        assert_eq!(p.return_pref, Some(ReturnPref::Minimal));
        assert_eq!(p.count, Some(CountPref::Planned));
        assert_eq!(p.resolution, Some(Resolution::IgnoreDuplicates));
        let p = parse_prefer("return=headers-only,count=estimated,missing=null,handling=lenient").unwrap();
        assert_eq!(p.return_pref, Some(ReturnPref::HeadersOnly));
        assert_eq!(p.count, Some(CountPref::Estimated));
        assert_eq!(p.missing, Some(MissingPref::Null));
        assert_eq!(p.handling, Some(Handling::Lenient));
    }

    #[test]
    fn prefer_first_wins_and_unknown_ignored() {
        let p = parse_prefer("return=minimal, return=representation").unwrap();
        assert_eq!(p.return_pref, Some(ReturnPref::Minimal));
        let p = parse_prefer("tx=rollback, foo, return=bogus, count=exact").unwrap();
        assert_eq!(p.return_pref, None);
        assert_eq!(p.count, Some(CountPref::Exact));
        assert!(parse_prefer("handling=lenient, whatever").is_ok());
        assert_eq!(parse_prefer("RETURN=MINIMAL").unwrap().return_pref, None);
    }

    #[test]
    fn prefer_max_affected() {
        assert_eq!(parse_prefer("handling=strict,max-affected=5").unwrap().max_affected, Some(5));
        assert_eq!(parse_prefer("max-affected=5, max-affected=9").unwrap().max_affected, Some(5));
        assert_eq!(parse_prefer("max-affected=-1").unwrap().max_affected, None);
        assert!(parse_prefer("handling=strict, max-affected=x").is_err());
    }

    #[test]
    fn prefer_strict() {
        let ok = parse_prefer("handling=strict, return=minimal").unwrap();
        assert_eq!(ok.handling, Some(Handling::Strict));
        for h in [
            "handling=strict, foo",
            "foo=bar, handling=strict",
            "handling=strict, return=bogus",
            "return=minimal, handling=strict, tx=commit",
        ] {
            let e = parse_prefer(h).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidPreference, "{h}");
        }
        let e = parse_prefer("handling=strict, foo, bar").unwrap_err();
        assert_eq!(e.details.as_deref(), Some("foo, bar"));
        // first handling wins
        assert!(parse_prefer("handling=lenient, handling=strict, foo").is_ok());
    }

    // ----- Range -----

    #[test]
    fn range_forms() {
        assert_eq!(parse_range("0-9").unwrap(), (0, Some(9)));
        assert_eq!(parse_range("10-").unwrap(), (10, None));
        assert_eq!(parse_range("items=0-24").unwrap(), (0, Some(24)));
        assert_eq!(parse_range(" 5-5 ").unwrap(), (5, Some(5)));
        assert_eq!(parse_range("18446744073709551615-").unwrap(), (u64::MAX, None));
    }

    #[test]
    fn range_errors() {
        let e = parse_range("9-3").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidRange);
        assert!(e.message.contains("not satisfiable"), "{e}");
        for bad in ["", "abc", "5", "-5", "a-b", "0-9-1", "1.5-2", "0-x", "items=", "bytes=0-9"] {
            let e = parse_range(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Syntax, "{bad:?}: {e}");
        }
        let e = parse_range("0-18446744073709551616").unwrap_err();
        assert!(e.message.contains("too large"), "{e}");
    }

    #[test]
    fn effective_range_intersection() {
        assert_eq!(effective_range(None, None, None), (0, None));
        assert_eq!(effective_range(Some(10), None, None), (0, Some(10)));
        assert_eq!(effective_range(None, Some(5), None), (5, None));
        assert_eq!(effective_range(Some(10), Some(5), None), (5, Some(10)));
        assert_eq!(effective_range(None, None, Some((0, Some(9)))), (0, Some(10)));
        assert_eq!(effective_range(None, None, Some((10, None))), (10, None));
        // header 0-9 ∩ offset 5 limit 10 (rows 5..14) = rows 5..9
        assert_eq!(effective_range(Some(10), Some(5), Some((0, Some(9)))), (5, Some(5)));
        // header 20- ∩ limit 25 (rows 0..24) = rows 20..24
        assert_eq!(effective_range(Some(25), None, Some((20, None))), (20, Some(5)));
        // disjoint windows: nothing
        assert_eq!(effective_range(Some(5), None, Some((10, Some(20)))), (10, Some(0)));
        assert_eq!(effective_range(Some(0), None, None), (0, Some(0)));
        assert_eq!(effective_range(Some(0), Some(7), Some((0, Some(3)))), (7, Some(0)));
        assert_eq!(effective_range(Some(u64::MAX), Some(u64::MAX), Some((0, Some(u64::MAX)))), (u64::MAX, Some(0)));
        let p = q("limit=10&offset=5");
        assert_eq!(p.effective_range(Some((0, Some(9)))), (5, Some(5)));
    }

    // ----- properties -----

    const FRAGMENTS: &[&str] = &[
        "select=",
        "order=",
        "limit=",
        "offset=",
        "on_conflict=",
        "columns=",
        "or=",
        "and=",
        "not.or=",
        "not.and=",
        "a=",
        "%22a b%22=",
        "rel.col=",
        "&",
        "=",
        ".",
        ",",
        "(",
        ")",
        "\"",
        "\\",
        "%22",
        "%2C",
        "%28",
        "%29",
        "%5C",
        "%FF",
        "%00",
        "%",
        "+",
        "*",
        ":",
        "::",
        "->",
        "->>",
        "!",
        "...",
        "{",
        "}",
        "not.",
        "eq.",
        "neq.",
        "gt.",
        "like.",
        "ilike.",
        "in.",
        "is.",
        "null",
        "true",
        "cs.",
        "or(",
        "and(",
        "not.or(",
        "a.eq.1",
        "asc",
        "desc",
        ".nullsfirst",
        "-1",
        "0",
        "18446744073709551616",
        "text",
        "col",
        "é",
        " ",
        "\0",
    ];

    fn near_valid() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|v| v.concat())
    }

    fn quote(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    fn encode(s: &str) -> String {
        form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_strings_never_panic(s in any::<String>()) {
            let _ = parse_query(&s);
            let _ = parse_prefer(&s);
            let _ = parse_range(&s);
        }

        #[test]
        fn near_valid_queries_never_panic(s in near_valid()) {
            if let Err(e) = parse_query(&s) {
                prop_assert!(!e.message.is_empty());
            }
            let _ = parse_prefer(&s);
            let _ = parse_range(&s);
        }

        #[test]
        fn eq_values_round_trip(v in "[^\u{0}]*") {
            let p = parse_query(&format!("c=eq.{}", encode(&v))).unwrap();
            prop_assert_eq!(p.filters, vec![cmp("c", CmpOp::Eq, &v)]);
        }

        #[test]
        fn quoted_in_lists_round_trip(items in prop::collection::vec("[^\u{0}]*", 0..6)) {
            let list: Vec<String> = items.iter().map(|s| quote(s)).collect();
            let raw = format!("c=in.({})", list.join(","));
            let p = parse_query(&format!("c={}", encode(&raw[2..]))).unwrap();
            prop_assert_eq!(p.filters, vec![cond("c", false, Operation::In(items))]);
        }

        #[test]
        fn quoted_logic_values_round_trip(v in "[^\u{0}]*", neg in any::<bool>()) {
            let not = if neg { "not." } else { "" };
            let raw = format!("(c.{not}eq.{},d.is.null)", quote(&v));
            let p = parse_query(&format!("or={}", encode(&raw))).unwrap();
            let expected = logic(false, LogicOp::Or, vec![
                cond("c", neg, Operation::Cmp(CmpOp::Eq, v.clone())),
                cond("d", false, Operation::Is(IsValue::Null)),
            ]);
            prop_assert_eq!(p.filters, vec![expected]);
        }

        #[test]
        fn depth_limit_is_exact(depth in 1usize..50) {
            let result = parse_query(&nested(depth));
            prop_assert_eq!(result.is_ok(), depth <= MAX_LOGIC_DEPTH);
        }

        #[test]
        fn limits_round_trip(n in any::<u64>()) {
            prop_assert_eq!(parse_query(&format!("limit={n}")).unwrap().limit, Some(n));
            prop_assert_eq!(parse_range(&format!("{n}-")).unwrap(), (n, None));
        }
    }
}
