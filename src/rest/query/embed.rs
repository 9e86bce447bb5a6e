//! Query parameters on embedded resources: `rel.col=op.v`, `rel.order=…`, `rel.limit=…`,
//! `rel.offset=…`, `rel.or=(…)`, `rel.not.and=(…)`, nested as `a.b.col=…`.

use super::QueryParams;
use crate::grammar::lex::{Result, syntax, unquoted_bytes};

/// Parameters allowed under an embed path besides column filters.
const EMBED_PARAMS: &[&str] = &["order", "limit", "offset", "or", "and", "not.or", "not.and"];

/// Splits `a.b.key` into the embed path `[a, b]` and `key`; `None` for a top-level key.
pub(crate) fn split_key(key: &str) -> Result<Option<(Vec<String>, &str)>> {
    if matches!(key, "or" | "and" | "not.or" | "not.and") {
        return Ok(None);
    }
    let dots: Vec<usize> = unquoted_bytes(key).filter(|&(_, b)| b == b'.').map(|(i, _)| i).collect();
    let Some(&last) = dots.last() else { return Ok(None) };
    // `a.not.or`: the logic key takes two segments
    let cut = match (dots.len(), &key[last + 1..]) {
        (n, "or" | "and") if n >= 2 && &key[dots[n - 2] + 1..last] == "not" => dots[n - 2],
        _ => last,
    };
    let rest = &key[cut + 1..];
    let path: Vec<String> = key[..cut].split('.').map(|s| s.trim().to_string()).collect();
    if path.iter().any(String::is_empty) {
        return Err(syntax("empty embedded resource name in the parameter path"));
    }
    match rest {
        "" => Err(syntax("expected a column name after the embedded resource path")),
        "select" | "on_conflict" | "columns" => Err(syntax(format!("'{rest}' is not allowed on an embedded resource"))),
        _ => Ok(Some((path, rest))),
    }
}

/// Applies `rest=value` to the parameters of the embed at `path`.
pub(crate) fn apply(qp: &mut QueryParams, seen: &mut Vec<String>, key: &str, path: Vec<String>, rest: &str, value: &str) -> Result<()> {
    if EMBED_PARAMS.contains(&rest) && !matches!(rest, "or" | "and" | "not.or" | "not.and") {
        if seen.iter().any(|k| k == key) {
            return Err(syntax("the parameter is given more than once"));
        }
        seen.push(key.to_string());
    }
    let sub = qp.embedded.entry(path).or_default();
    super::apply_param(sub, &mut Vec::new(), rest, value)
}
