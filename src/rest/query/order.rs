//! `order=`: ordering terms, on the resource's columns or (`rel(col)`) on an embedded
//! to-one resource's.

use super::check_unsupported_except;
use crate::grammar::lex::{Column, Cursor, Result, expect_end, parse_column, shorten, syntax};
use crate::grammar::path::{JsonStep, parse_json_path};

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

/// One item of `order=`: `[relation(]column[->path][)][.asc|.desc][.nullsfirst|.nullslast]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    /// `rel(col)`: a column of an embedded to-one resource (by its key: alias or name).
    pub relation: Option<String>,
    pub column: Column,
    /// A JSON path after the column (`attributes->>score`); empty for the column itself.
    pub path: Vec<JsonStep>,
    pub direction: Direction,
    /// `None`: PostgreSQL's default for the direction.
    pub nulls: Option<NullsOrder>,
}

/// `[relation(]column[->path][)][.asc|.desc][.nullsfirst|.nullslast]`
pub(crate) fn parse_order_term(item: &str) -> Result<OrderTerm> {
    let mut cur = Cursor::new(item);
    let first = parse_column(&mut cur)?;
    let (relation, column, path) = match cur.eat("(") {
        true => {
            let column = parse_column(&mut cur)?;
            let path = parse_json_path(&mut cur)?;
            if !cur.eat(")") {
                return Err(syntax("expected a related order as rel(column)[.asc|.desc]").detail(item));
            }
            (Some(first.0), column, path)
        }
        false => {
            check_unsupported_except(item, "order", true)?;
            let path = parse_json_path(&mut cur)?;
            (None, first, path)
        }
    };
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
    Ok(OrderTerm { relation, column, path, direction, nulls })
}
