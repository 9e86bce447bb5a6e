//! `select=`: the items of the select list.

use super::check_unsupported;
use crate::grammar::lex::{Column, Cursor, Result, expect_end, parse_column, syntax};

/// One item of `select=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    /// `*`
    Star,
    /// `[alias:]column[::cast]`; `cast` is `[A-Za-z0-9_]+`, still to be whitelisted.
    Field { column: Column, alias: Option<String>, cast: Option<String> },
}

/// `*` | `[alias:]column[::cast]`
pub(crate) fn parse_select_item(item: &str) -> Result<SelectItem> {
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
