//! Property tests across the parser and the SQL builders: whatever the query string, the
//! result is SQL or a 4xx — never a panic — and the SQL text never carries a client value
//! (no string literal; placeholders exactly match the bound parameters).

use proptest::prelude::*;

use super::query::parse_query;
use super::sql::{BodyShape, Params, ReadSql};
use super::write::{Returning, delete_sql, update_sql};

/// Pieces that make near-valid PostgREST query strings over the test catalog.
const FRAGMENTS: &[&str] = &[
    "select=",
    "order=",
    "limit=",
    "offset=",
    "or=",
    "and=",
    "not.or=",
    "id=",
    "name=",
    "n=",
    "tags=",
    "secret=",
    "deleted_at=",
    "nope=",
    "&",
    "=",
    ".",
    ",",
    "(",
    ")",
    "%22",
    "*",
    ":",
    "::",
    "text",
    "regclass",
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
    "1",
    "-1",
    "'",
    "';drop table x;--",
    "a",
    "{a,b}",
    "asc",
    "desc",
    ".nullsfirst",
    "name.eq.x",
    "n.gt.1",
    "or(",
    "and(",
    "id",
    "name",
    "é",
    " ",
    "$1",
    "\\",
];

fn near_valid() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..30).prop_map(|v| v.concat())
}

/// Every `$k` in the text is a bound parameter, and every bound parameter is used.
fn placeholders_match(sql: &str, params: &Params) -> bool {
    let mut used = vec![false; params.len()];
    let bytes = sql.as_bytes();
    for (i, _) in sql.match_indices('$') {
        let digits: String = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
        match digits.parse::<usize>() {
            Ok(k) if (1..=params.len()).contains(&k) => used[k - 1] = true,
            _ => return false,
        }
    }
    used.into_iter().all(|u| u)
}

/// The only quotes the builders write are the fixed `'[]'` of the JSON aggregate.
fn no_literals(sql: &str) -> bool {
    !sql.replace("'[]'", "").contains('\'')
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn reads_build_parameterised_sql_or_a_client_error(raw in near_valid(), count in any::<bool>()) {
        let catalog = super::sql::tests::catalog();
        let table = catalog.table("things").unwrap();
        let Ok(q) = parse_query(&raw) else { return Ok(()) };
        let read = ReadSql {
            table, select: q.select.as_deref(), filters: &q.filters, order: &q.order,
            offset: 0, limit: 10, count, shape: BodyShape::default(),
        };
        match read.build() {
            Ok((sql, params)) => {
                prop_assert!(placeholders_match(&sql, &params), "{sql}");
                prop_assert!(no_literals(&sql), "{sql}");
            }
            Err(e) => prop_assert!(e.status.is_client_error(), "{e}"),
        }
    }

    #[test]
    fn writes_build_parameterised_sql_or_a_client_error(raw in near_valid(), rows in any::<bool>()) {
        let catalog = super::sql::tests::catalog();
        let table = catalog.table("things").unwrap();
        let Ok(q) = parse_query(&raw) else { return Ok(()) };
        let ret = match rows {
            true => Returning::Rows { select: q.select.as_deref(), shape: BodyShape::default(), plan: None },
            false => Returning::Minimal,
        };
        let name = table.column("name").unwrap();
        for built in [update_sql(table, "{}".into(), &[name], &q.filters, ret), delete_sql(table, &q.filters, ret)] {
            match built {
                Ok((sql, params)) => {
                    prop_assert!(placeholders_match(&sql, &params), "{sql}");
                    prop_assert!(no_literals(&sql), "{sql}");
                }
                Err(e) => prop_assert!(e.status.is_client_error(), "{e}"),
            }
        }
    }
}
