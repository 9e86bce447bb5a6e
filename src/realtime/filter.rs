//! Subscription filters: the PostgREST filter grammar (parsed by `grammar::filter`) evaluated
//! against an event's row JSON, with SQL's three-valued logic (a missing or null column
//! compares as NULL, so `status=neq.x` does not match a row without `status`).

use std::cmp::Ordering;

use serde_json::Value;

use crate::grammar::filter::{CmpOp, Condition, Filter, IsValue, LogicOp, Operation, parse_filter_query};
use crate::grammar::lex::{ErrorKind, ParseError};

/// Parses `filter` (e.g. `status=eq.running&or=(a.eq.1,b.gt.2)`); only filters are allowed.
pub fn parse(filter: &str) -> Result<Vec<Filter>, String> {
    let only_filters = |_: &str| {
        let message = "a subscription filter takes filters only (no select, order, limit, offset, columns)";
        ParseError::new(ErrorKind::Syntax, message)
    };
    let filters = parse_filter_query(filter, only_filters).map_err(|e| e.to_string())?;
    match filters.iter().all(Filter::is_basic) {
        true => Ok(filters),
        false => Err("a subscription filter takes eq, neq, gt, gte, lt, lte, like, ilike, in and is on columns (no JSON paths, \
                      modifiers or other operators)"
            .into()),
    }
}

/// True when every filter holds for the row.
pub fn matches(filters: &[Filter], row: &Value) -> bool {
    filters.iter().all(|f| eval(f, row) == Some(true))
}

fn eval(filter: &Filter, row: &Value) -> Option<bool> {
    match filter {
        Filter::Condition(c) => condition(c, row),
        Filter::Logic(tree) => {
            let mut acc = Some(tree.op == LogicOp::And);
            for child in &tree.children {
                acc = match tree.op {
                    LogicOp::And => and(acc, eval(child, row)),
                    LogicOp::Or => or(acc, eval(child, row)),
                };
            }
            negate(acc, tree.negated)
        }
    }
}

fn and(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(false), _) | (_, Some(false)) => Some(false),
        (Some(true), Some(true)) => Some(true),
        _ => None,
    }
}

fn or(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

fn negate(v: Option<bool>, negated: bool) -> Option<bool> {
    if negated { v.map(|b| !b) } else { v }
}

fn condition(c: &Condition, row: &Value) -> Option<bool> {
    let value = row.get(c.column.as_str()).unwrap_or(&Value::Null);
    let result = match &c.operation {
        Operation::Is(is) => Some(match (is, value) {
            (IsValue::Null, v) => v.is_null(),
            (IsValue::True, v) => v.as_bool() == Some(true),
            (IsValue::False, v) => v.as_bool() == Some(false),
            (IsValue::Unknown, v) => v.is_null(),
        }),
        Operation::In(items) => {
            if value.is_null() {
                None
            } else {
                Some(items.iter().any(|item| compare(value, item) == Some(Ordering::Equal)))
            }
        }
        Operation::Cmp(op, operand) => cmp(*op, value, operand),
        // Refused by `parse`.
        Operation::Quant(..) | Operation::Fts(..) => None,
    };
    negate(result, c.negated)
}

fn cmp(op: CmpOp, value: &Value, operand: &str) -> Option<bool> {
    if value.is_null() {
        return None;
    }
    match op {
        CmpOp::Like => Some(like(&text(value), operand, false)),
        CmpOp::ILike => Some(like(&text(value), operand, true)),
        _ => {
            let ord = compare(value, operand)?;
            Some(match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Neq => ord != Ordering::Equal,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Gte => ord != Ordering::Less,
                CmpOp::Lt => ord == Ordering::Less,
                _ => ord != Ordering::Greater,
            })
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Orders a JSON value against a query-string operand: numerically for numbers, as
/// booleans for booleans, as JSON for objects and arrays, as text otherwise.
fn compare(value: &Value, operand: &str) -> Option<Ordering> {
    match value {
        Value::Number(n) => n.as_f64()?.partial_cmp(&operand.trim().parse::<f64>().ok()?),
        Value::Bool(b) => {
            let o = match operand.to_ascii_lowercase().as_str() {
                "true" | "t" => true,
                "false" | "f" => false,
                _ => return None,
            };
            Some(b.cmp(&o))
        }
        Value::String(s) => Some(s.as_str().cmp(operand)),
        Value::Null => None,
        other => {
            let o: Value = serde_json::from_str(operand).ok()?;
            (other == &o).then_some(Ordering::Equal).or(Some(Ordering::Less))
        }
    }
}

/// SQL LIKE: `%` any run, `_` one character, `\` escapes.
fn like(value: &str, pattern: &str, fold: bool) -> bool {
    let lower = |s: &str| if fold { s.to_lowercase() } else { s.to_string() };
    let v: Vec<char> = lower(value).chars().collect();
    let p: Vec<Tok> = tokens(&lower(pattern));
    let (mut vi, mut pi) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while vi < v.len() {
        match p.get(pi) {
            Some(Tok::Any) => {
                backtrack = Some((pi, vi));
                pi += 1;
            }
            Some(Tok::One) => {
                vi += 1;
                pi += 1;
            }
            Some(Tok::Char(c)) if *c == v[vi] => {
                vi += 1;
                pi += 1;
            }
            _ => match backtrack {
                Some((bp, bv)) => {
                    backtrack = Some((bp, bv + 1));
                    pi = bp + 1;
                    vi = bv + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|t| *t == Tok::Any)
}

#[derive(PartialEq)]
enum Tok {
    Any,
    One,
    Char(char),
}

fn tokens(pattern: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Char(chars.next().unwrap_or('\\')),
            c => Tok::Char(c),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(filter: &str, row: Value) -> bool {
        matches(&parse(filter).unwrap(), &row)
    }

    #[test]
    fn comparisons_follow_sql() {
        let row = json!({"status": "running", "n": 10, "ok": true, "gone": null});
        assert!(m("status=eq.running", row.clone()));
        assert!(!m("status=eq.draft", row.clone()));
        assert!(m("n=gt.9&n=lte.10", row.clone()));
        assert!(!m("n=gt.10", row.clone()));
        assert!(m("ok=is.true", row.clone()));
        assert!(m("gone=is.null", row.clone()));
        assert!(!m("gone=eq.x", row.clone()), "NULL = x is not true");
        assert!(!m("gone=not.eq.x", row.clone()), "NOT (NULL = x) is not true either");
        assert!(!m("missing=neq.x", row.clone()));
        assert!(m("status=in.(draft,running)", row.clone()));
        assert!(m("status=not.in.(draft)", row.clone()));
        assert!(m("or=(status.eq.draft,n.eq.10)", row.clone()));
        assert!(!m("not.or=(status.eq.draft,n.eq.10)", row.clone()));
    }

    #[test]
    fn like_patterns() {
        assert!(like("running", "run%", false));
        assert!(like("running", "%NN%", true));
        assert!(!like("running", "%NN%", false));
        assert!(like("abc", "a_c", false));
        assert!(!like("abcd", "a_c", false));
        assert!(like("a%b", "a\\%b", false));
        assert!(like("", "%", false));
        assert!(m("status=like.run*", json!({"status": "running"})));
    }

    #[test]
    fn only_filters_are_accepted() {
        assert!(parse("select=id").is_err());
        assert!(parse("status=eq.x&order=id").is_err());
        assert!(parse("status=zz.x").is_err());
    }
}
