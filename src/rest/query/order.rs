//! `order=`: ordering terms.

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

/// One item of `order=`: `column[->path][.asc|.desc][.nullsfirst|.nullslast]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerm {
    pub column: Column,
    /// A JSON path after the column (`attributes->>score`); empty for the column itself.
    pub path: Vec<JsonStep>,
    pub direction: Direction,
    /// `None`: PostgreSQL's default for the direction.
    pub nulls: Option<NullsOrder>,
}

/// `column[->path][.asc|.desc][.nullsfirst|.nullslast]`
pub(crate) fn parse_order_term(item: &str) -> Result<OrderTerm> {
    check_unsupported_except(item, "order", true)?;
    let mut cur = Cursor::new(item);
    let column = parse_column(&mut cur)?;
    let path = parse_json_path(&mut cur)?;
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
    Ok(OrderTerm { column, path, direction, nulls })
}
