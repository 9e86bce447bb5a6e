//! Pure parser for the PostgREST request dialect (no I/O, no database, no async).
//!
//! [`parse_query`] turns a raw URL query string into [`QueryParams`]; [`parse_prefer`] and
//! [`parse_range`] read the `Prefer` and `Range` headers; [`effective_range`] combines
//! `limit`/`offset` with a `Range`. Identifiers stay strings ([`Column`]) for the caller to
//! check against the catalog and quote; filter values stay strings for the SQL builder.
//!
//! `select=` carries embedding (`rel(cols)`, hints, `!inner`, spreads, aliases), aggregates,
//! JSON paths and casts (parsed in `select.rs`/`embed.rs`, planned in `rest::plan`); embedded
//! filters and orders (`rel.col=…`, `rel.order=…`) are keyed by their path. Rejected as
//! [`ErrorKind::UnsupportedFeature`]: embedding syntax where only columns are allowed
//! (`on_conflict=`, `columns=`) and operator modifiers an operator does not take. Parsing never
//! panics, recurses at most [`MAX_LOGIC_DEPTH`] levels deep and takes time linear in the input.

mod embed;
mod order;
mod prefer;
mod range;
mod select;
#[cfg(test)]
mod tests;

pub use crate::grammar::filter::{CmpOp, Condition, Filter, FtsOp, IsValue, LogicOp, LogicTree, MAX_LOGIC_DEPTH, Operation, Quantifier};
pub use crate::grammar::lex::{Column, ErrorKind, ParseError};
pub use crate::grammar::path::{JsonKey, JsonStep, default_name as json_default_name};
pub use order::{Direction, NullsOrder, OrderTerm};
pub use prefer::{CountPref, Handling, MissingPref, Prefer, Resolution, ReturnPref, TxPref, parse_prefer};
pub use range::{effective_range, parse_range};
pub use select::{Aggregate, AggregateFn, Embed, JoinType, MAX_EMBED_DEPTH, SelectItem};

pub use crate::grammar::filter::RESERVED_PARAMS;
use crate::grammar::filter::{filter_param, param_context};
use crate::grammar::lex::{
    Cursor, Result, decode_component, expect_end, parse_column, parse_u64, split_items, syntax, unquoted_bytes, unsupported,
};

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
    /// Parameters of embedded resources by path (`a.b.col=…` → `[a, b]`).
    pub embedded: std::collections::BTreeMap<Vec<String>, QueryParams>,
}

impl QueryParams {
    /// [`effective_range`] with this query's `limit` and `offset`.
    pub fn effective_range(&self, range: Option<(u64, Option<u64>)>) -> (u64, Option<u64>) {
        effective_range(self.limit, self.offset, range)
    }
}

/// Rejects embedding, spreads, hints and JSON paths found outside quotes in `item`.
pub(crate) fn check_unsupported(item: &str, param: &str) -> Result<()> {
    check_unsupported_except(item, param, false)
}

/// [`check_unsupported`], letting JSON paths through when `paths_ok`.
pub(crate) fn check_unsupported_except(item: &str, param: &str, paths_ok: bool) -> Result<()> {
    let what = match item.starts_with("..") {
        true => Some("spread embedding ('...rel(cols)') is"),
        false => unquoted_bytes(item).find_map(|(i, b)| match b {
            b'(' => Some("resource embedding (and aggregate functions) is"),
            b'!' => Some("resource embedding with hints ('rel!hint') is"),
            b'-' if !paths_ok && item.as_bytes().get(i + 1) == Some(&b'>') => Some("JSON paths ('->') are"),
            _ => None,
        }),
    };
    match what {
        Some(what) => Err(unsupported(format!("{what} not supported in '{param}'")).detail(item)),
        None => Ok(()),
    }
}

/// A comma list of column names (`on_conflict=`, `columns=`).
pub(crate) fn parse_column_list(value: &str, param: &str) -> Result<Vec<Column>> {
    let parse = |item| {
        check_unsupported(item, param)?;
        let mut cur = Cursor::new(item);
        let column = parse_column(&mut cur)?;
        expect_end(&cur, "the column name").map(|()| column)
    };
    split_items(value, "column")?.into_iter().map(parse).collect()
}

/// Parses a raw URL query string (without the `?`), such as
/// `select=id,name&id=gt.10&or=(a.eq.1,b.is.null)&order=name.desc&limit=5`.
pub fn parse_query(raw_query: &str) -> Result<QueryParams, ParseError> {
    let mut params = QueryParams::default();
    let mut seen = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (key, value) = (decode_component(key)?, decode_component(value)?);
        apply_param(&mut params, &mut seen, &key, &value).map_err(|e| param_context(e, &key, &value))?;
    }
    Ok(params)
}

fn apply_param(qp: &mut QueryParams, seen: &mut Vec<String>, key: &str, value: &str) -> Result<()> {
    if let Some((path, rest)) = embed::split_key(key)? {
        return embed::apply(qp, seen, key, path, rest, value);
    }
    if RESERVED_PARAMS.contains(&key) {
        return apply_reserved(qp, seen, key, value);
    }
    qp.filters.push(filter_param(key, value)?);
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
            qp.select = Some(items.map(select::parse_select_item).collect::<Result<_>>()?);
        }
        "order" => {
            let items = split_items(value, "order")?.into_iter();
            qp.order = items.map(order::parse_order_term).collect::<Result<_>>()?;
        }
        "limit" if value.strip_prefix('-').is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) => {
            // PostgREST: 416 PGRST103 (postgrest-js sends `.range(5, 2)` as limit=-2).
            let e = ParseError::new(ErrorKind::InvalidRange, "Requested range not satisfiable");
            return Err(e.detail("Limit should be greater than or equal to zero."));
        }
        "limit" => qp.limit = Some(parse_u64(value)?),
        "offset" => qp.offset = Some(parse_u64(value)?),
        "on_conflict" => qp.on_conflict = Some(parse_column_list(value, key)?),
        _ => qp.columns = Some(parse_column_list(value, key)?),
    }
    Ok(())
}
