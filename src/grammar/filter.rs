//! The PostgREST filter grammar: `column=[not.]op.value` parameters and `or=(…)`/`and=(…)`
//! logic trees. Shared by the REST layer (`rest::query`) and realtime subscription filters.
//! Parsing never panics, recurses at most [`MAX_LOGIC_DEPTH`] levels deep and takes time
//! linear in the input.

use super::lex::{
    Column, Cursor, ParseError, Result, decode_component, expect_end, list_separator, parse_column, parse_quoted, shorten, syntax,
    unexpected, unsupported,
};
use super::path::{JsonStep, at_path, parse_json_path};

/// Deepest nesting of `or`/`and` groups accepted (the outermost group counts as 1).
pub const MAX_LOGIC_DEPTH: usize = 32;
const OPERATORS: &str =
    "eq, neq, gt, gte, lt, lte, like, ilike, match, imatch, in, is, isdistinct, cs, cd, ov, sl, sr, nxr, nxl, adj, fts, plfts, phfts, wfts";

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
    /// `match`: POSIX regular expression (`~`).
    Match,
    /// `imatch`: case-insensitive POSIX regular expression (`~*`).
    IMatch,
    /// `isdistinct`: `IS DISTINCT FROM`.
    IsDistinct,
    /// `cs`: contains (`@>`).
    Cs,
    /// `cd`: contained in (`<@`).
    Cd,
    /// `ov`: overlaps (`&&`).
    Ov,
    /// `sl`: strictly left of (`<<`).
    Sl,
    /// `sr`: strictly right of (`>>`).
    Sr,
    /// `nxr`: does not extend to the right of (`&<`).
    Nxr,
    /// `nxl`: does not extend to the left of (`&>`).
    Nxl,
    /// `adj`: adjacent to (`-|-`).
    Adj,
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
            CmpOp::Match => "~",
            CmpOp::IMatch => "~*",
            CmpOp::IsDistinct => "IS DISTINCT FROM",
            CmpOp::Cs => "@>",
            CmpOp::Cd => "<@",
            CmpOp::Ov => "&&",
            CmpOp::Sl => "<<",
            CmpOp::Sr => ">>",
            CmpOp::Nxr => "&<",
            CmpOp::Nxl => "&>",
            CmpOp::Adj => "-|-",
        }
    }

    /// Operators that compare the text form of the value (`like`, `ilike`, `match`, `imatch`).
    pub fn is_textual(self) -> bool {
        matches!(self, CmpOp::Like | CmpOp::ILike | CmpOp::Match | CmpOp::IMatch)
    }

    /// Operators realtime subscription filters evaluate (the original eight).
    pub fn is_basic(self) -> bool {
        matches!(self, CmpOp::Eq | CmpOp::Neq | CmpOp::Gt | CmpOp::Gte | CmpOp::Lt | CmpOp::Lte | CmpOp::Like | CmpOp::ILike)
    }

    /// Operators that take the `(any)`/`(all)` modifiers, as in PostgREST.
    fn quantifiable(self) -> bool {
        matches!(
            self,
            CmpOp::Eq | CmpOp::Gt | CmpOp::Gte | CmpOp::Lt | CmpOp::Lte | CmpOp::Like | CmpOp::ILike | CmpOp::Match | CmpOp::IMatch
        )
    }
}

/// `(any)` / `(all)` after an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

impl Quantifier {
    pub fn sql(self) -> &'static str {
        match self {
            Quantifier::Any => "ANY",
            Quantifier::All => "ALL",
        }
    }
}

/// The full-text search operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtsOp {
    /// `fts`: `to_tsquery`.
    Fts,
    /// `plfts`: `plainto_tsquery`.
    Plain,
    /// `phfts`: `phraseto_tsquery`.
    Phrase,
    /// `wfts`: `websearch_to_tsquery`.
    Websearch,
}

impl FtsOp {
    /// The tsquery constructor.
    pub fn function(self) -> &'static str {
        match self {
            FtsOp::Fts => "to_tsquery",
            FtsOp::Plain => "plainto_tsquery",
            FtsOp::Phrase => "phraseto_tsquery",
            FtsOp::Websearch => "websearch_to_tsquery",
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
    /// `op(any).{a,b}` / `op(all).{a,b}`: the value is a PostgreSQL array literal (for the
    /// textual operators, `*` already replaced by `%`).
    Quant(CmpOp, Quantifier, String),
    /// `fts(config).query` and friends; the config is a text search configuration name.
    Fts(FtsOp, Option<String>, String),
}

/// `column [NOT] operation`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub column: Column,
    /// A JSON path after the column (`attributes->>key`); empty for the column itself.
    pub path: Vec<JsonStep>,
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

impl Filter {
    /// True when every condition is a plain column with one of the original operators
    /// (`eq neq gt gte lt lte like ilike in is`): what realtime subscriptions evaluate.
    pub fn is_basic(&self) -> bool {
        match self {
            Filter::Condition(c) => {
                c.path.is_empty()
                    && match c.operation {
                        Operation::Cmp(op, _) => op.is_basic(),
                        Operation::In(_) | Operation::Is(_) => true,
                        Operation::Quant(..) | Operation::Fts(..) => false,
                    }
            }
            Filter::Logic(t) => t.children.iter().all(Filter::is_basic),
        }
    }
}

// ----- Filters and logic trees -----

#[derive(Clone, Copy)]
enum OpKind {
    Cmp(CmpOp),
    Quant(CmpOp, Quantifier),
    Fts(FtsOp),
    In,
    Is,
}

/// `[not.]op[(modifier)].` at the cursor, which is left on the operand. The modifier is
/// `any`/`all` for the quantifiable operators, a text search configuration for `fts` & co.
fn parse_operator_head(cur: &mut Cursor<'_>) -> Result<(bool, OpKind, Option<String>)> {
    let negated = cur.eat("not.");
    let word = cur.take_until(b".,()");
    let modifier = match cur.eat("(") {
        true => {
            let m = cur.take_until(b")");
            if !cur.eat(")") {
                return Err(syntax(format!("unbalanced parentheses after operator '{}'", shorten(word))));
            }
            Some(m.trim().to_string())
        }
        false => None,
    };
    let cmp = |op| OpKind::Cmp(op);
    let kind = match word {
        "eq" => cmp(CmpOp::Eq),
        "neq" => cmp(CmpOp::Neq),
        "gt" => cmp(CmpOp::Gt),
        "gte" => cmp(CmpOp::Gte),
        "lt" => cmp(CmpOp::Lt),
        "lte" => cmp(CmpOp::Lte),
        "like" => cmp(CmpOp::Like),
        "ilike" => cmp(CmpOp::ILike),
        "match" => cmp(CmpOp::Match),
        "imatch" => cmp(CmpOp::IMatch),
        "isdistinct" => cmp(CmpOp::IsDistinct),
        "cs" => cmp(CmpOp::Cs),
        "cd" => cmp(CmpOp::Cd),
        "ov" => cmp(CmpOp::Ov),
        "sl" => cmp(CmpOp::Sl),
        "sr" => cmp(CmpOp::Sr),
        "nxr" => cmp(CmpOp::Nxr),
        "nxl" => cmp(CmpOp::Nxl),
        "adj" => cmp(CmpOp::Adj),
        "fts" => OpKind::Fts(FtsOp::Fts),
        "plfts" => OpKind::Fts(FtsOp::Plain),
        "phfts" => OpKind::Fts(FtsOp::Phrase),
        "wfts" => OpKind::Fts(FtsOp::Websearch),
        "in" => OpKind::In,
        "is" => OpKind::Is,
        "" => return Err(syntax(format!("missing operator (expected one of {OPERATORS})"))),
        w => return Err(syntax(format!("unknown operator '{}' (expected one of {OPERATORS})", shorten(w)))),
    };
    let (kind, config) = match (kind, modifier) {
        (kind, None) => (kind, None),
        (OpKind::Cmp(op), Some(m)) if op.quantifiable() => match m.as_str() {
            "any" => (OpKind::Quant(op, Quantifier::Any), None),
            "all" => (OpKind::Quant(op, Quantifier::All), None),
            other => return Err(syntax(format!("unknown modifier '{}': expected (any) or (all)", shorten(other)))),
        },
        (OpKind::Fts(op), Some(m)) => {
            let valid = !m.is_empty() && m.len() <= 63 && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
            if !valid {
                return Err(syntax("a text search configuration is a name such as 'english'").detail(&m));
            }
            (OpKind::Fts(op), Some(m))
        }
        (_, Some(m)) => {
            let message = format!("operator '{}' takes no modifier '({})'", shorten(word), shorten(&m));
            return Err(unsupported(message));
        }
    };
    if !cur.eat(".") {
        return Err(unexpected(cur, &format!("'.' and a value after operator '{word}'")));
    }
    Ok((negated, kind, config))
}

/// The operation for a value-taking operator.
fn value_operation(kind: OpKind, config: Option<String>, value: &str) -> Operation {
    let wild = |op: CmpOp, v: &str| if matches!(op, CmpOp::Like | CmpOp::ILike) { v.replace('*', "%") } else { v.to_string() };
    match kind {
        OpKind::Cmp(op) => Operation::Cmp(op, wild(op, value)),
        OpKind::Quant(op, q) => Operation::Quant(op, q, wild(op, value)),
        OpKind::Fts(op) => Operation::Fts(op, config, value.to_string()),
        OpKind::In | OpKind::Is => unreachable!("in and is have their own operands"),
    }
}

fn parse_is_value(token: &str) -> Result<IsValue> {
    let values = [IsValue::Null, IsValue::True, IsValue::False, IsValue::Unknown];
    let names = ["null", "true", "false", "unknown"];
    let found = names.iter().position(|n| token.eq_ignore_ascii_case(n));
    let error = || syntax("'is' expects null, true, false or unknown").detail(token);
    found.map(|i| values[i]).ok_or_else(error)
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
    let (column, path) = parse_filter_key(key)?;
    let mut cur = Cursor::new(value);
    let (negated, kind, config) = parse_operator_head(&mut cur)?;
    let operation = match kind {
        OpKind::In => {
            let list = parse_in_list(&mut cur)?;
            cur.skip_ws();
            expect_end(&cur, "the 'in' list")?;
            Operation::In(list)
        }
        OpKind::Is => Operation::Is(parse_is_value(cur.rest())?),
        kind => value_operation(kind, config, cur.rest()),
    };
    Ok(Condition { column, path, negated, operation })
}

fn parse_filter_key(key: &str) -> Result<(Column, Vec<JsonStep>)> {
    if key.is_empty() {
        return Err(syntax("empty parameter name"));
    }
    let mut cur = Cursor::new(key);
    let column = parse_column(&mut cur)?;
    let path = parse_json_path(&mut cur)?;
    if cur.peek() == Some(b'.') {
        let message = "resource embedding is not supported (no filters on 'rel.column' keys)";
        return Err(unsupported(message));
    }
    expect_end(&cur, "the column name").map(|()| (column, path))
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
    let path = if at_path(cur) { parse_json_path(cur)? } else { Vec::new() };
    if !cur.eat(".") {
        let column = shorten(&column.0);
        return Err(unexpected(cur, &format!("'.' and an operator after column '{column}'")));
    }
    let (negated, kind, config) = parse_operator_head(cur)?;
    let operation = match kind {
        OpKind::In => Operation::In(parse_in_list(cur)?),
        OpKind::Is => Operation::Is(parse_is_value(&parse_logic_value(cur)?)?),
        kind => value_operation(kind, config, &parse_logic_value(cur)?),
    };
    Ok(Filter::Condition(Condition { column, path, negated, operation }))
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
