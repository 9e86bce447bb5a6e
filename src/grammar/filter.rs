//! The PostgREST filter grammar: `column=[not.]op.value` parameters and `or=(…)`/`and=(…)`
//! logic trees. Shared by the REST layer (`rest::query`) and realtime subscription filters.
//! Parsing never panics, recurses at most [`MAX_LOGIC_DEPTH`] levels deep and takes time
//! linear in the input.

use super::lex::{
    Column, Cursor, ParseError, Result, decode_component, expect_end, list_separator, parse_column, parse_quoted, shorten, syntax,
    unexpected, unsupported,
};

/// Deepest nesting of `or`/`and` groups accepted (the outermost group counts as 1).
pub const MAX_LOGIC_DEPTH: usize = 32;
/// Operators PostgREST knows that rowcast does not support.
const UNSUPPORTED_OPERATORS: &str = "cs cd ov sl sr nxr nxl adj match imatch fts plfts phfts wfts isdistinct";
const OPERATORS: &str = "eq, neq, gt, gte, lt, lte, like, ilike, in, is";

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
pub(crate) fn parse_filter(key: &str, value: &str) -> Result<Condition> {
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
pub(crate) fn parse_group(cur: &mut Cursor<'_>, negated: bool, op: LogicOp, depth: usize) -> Result<LogicTree> {
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

/// Query parameters that are not filters (`select`, `order`, …).
pub const RESERVED_PARAMS: &[&str] = &["select", "order", "limit", "offset", "on_conflict", "columns"];

/// One filter parameter (`or`, `and`, `not.or`, `not.and` or `column`), without context.
pub fn filter_param(key: &str, value: &str) -> Result<Filter> {
    let logic = |negated, op| parse_logic_param(value, negated, op);
    Ok(match key {
        "or" => logic(false, LogicOp::Or)?,
        "and" => logic(false, LogicOp::And)?,
        "not.or" => logic(true, LogicOp::Or)?,
        "not.and" => logic(true, LogicOp::And)?,
        _ => Filter::Condition(parse_filter(key, value)?),
    })
}

/// Prefixes a parameter's parse error with which parameter it was.
pub fn param_context(e: ParseError, key: &str, value: &str) -> ParseError {
    match key {
        "or" | "and" | "not.or" | "not.and" => e.context(&format!("invalid '{key}' parameter"), value),
        k if RESERVED_PARAMS.contains(&k) => e.context(&format!("invalid '{key}' parameter"), value),
        _ => e.context(&format!("invalid filter '{}'", shorten(key)), value),
    }
}

/// Parses a query string made only of filter parameters (`a=eq.1&or=(…)`): `reserved` is
/// called with the name of any non-filter parameter and gives the error for it.
pub fn parse_filter_query(raw: &str, reserved: impl Fn(&str) -> ParseError) -> Result<Vec<Filter>> {
    let mut filters = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode_component(key)?, decode_component(value)?);
        if RESERVED_PARAMS.contains(&key.as_str()) {
            return Err(reserved(&key));
        }
        filters.push(filter_param(&key, &value).map_err(|e| param_context(e, &key, &value))?);
    }
    Ok(filters)
}

/// The value of an `or`/`and`/`not.or`/`not.and` parameter: one logic tree.
pub(crate) fn parse_logic_param(value: &str, negated: bool, op: LogicOp) -> Result<Filter> {
    let mut cur = Cursor::new(value);
    let tree = parse_group(&mut cur, negated, op, 1)?;
    cur.skip_ws();
    expect_end(&cur, "the logic tree").map(|()| Filter::Logic(tree))
}
