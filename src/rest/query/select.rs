//! `select=`: columns (with JSON paths `data->a->>b`), aliases and casts; resource embeds
//! (`alias:rel!hint!inner(items)`, spreads `...rel(items)`); aggregates (`count()`,
//! `col.sum()`, … with casts and aliases).
//! Embeds nest; parsing recurses at most [`MAX_EMBED_DEPTH`] levels.

use crate::grammar::lex::{Column, Cursor, Result, expect_end, parse_column, shorten, split_items, syntax, unquoted_bytes};
use crate::grammar::path::{JsonStep, default_name, parse_json_path};

/// Deepest nesting of embedded resources accepted (the top level is 0).
pub const MAX_EMBED_DEPTH: usize = 8;

/// One item of `select=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectItem {
    /// `*`
    Star,
    /// `[alias:]column[->path][::cast]`; `cast` is `[A-Za-z0-9_]+`, still to be whitelisted.
    /// `path` is empty for the column itself.
    Field { column: Column, path: Vec<JsonStep>, alias: Option<String>, cast: Option<String> },
    /// `[alias:]count()[::cast]` or `[alias:]column[::cast].fn()[::cast]`.
    Aggregate(Aggregate),
    /// `[alias:]rel[!hint][!inner|!left](items)` or `...rel(items)`.
    Embed(Box<Embed>),
}

impl SelectItem {
    /// A plain column, without path, alias or cast.
    pub fn column(name: &str) -> SelectItem {
        SelectItem::Field { column: Column(name.to_string()), path: Vec::new(), alias: None, cast: None }
    }

    /// The key of a field in the JSON object: the alias, else the last key of its JSON path
    /// (`data->a->>b` → `b`, `arr->0` → `0`), else the column name (PostgREST's rule).
    pub fn field_key(column: &str, path: &[JsonStep], alias: Option<&str>) -> String {
        alias.map_or_else(|| default_name(column, path), str::to_string)
    }

    /// Whether this list embeds anything or aggregates (then it needs the read planner).
    pub fn needs_plan(items: &[SelectItem]) -> bool {
        items.iter().any(|i| matches!(i, SelectItem::Aggregate(_) | SelectItem::Embed(_)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggregateFn {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl AggregateFn {
    pub fn name(self) -> &'static str {
        match self {
            AggregateFn::Count => "count",
            AggregateFn::Sum => "sum",
            AggregateFn::Avg => "avg",
            AggregateFn::Min => "min",
            AggregateFn::Max => "max",
        }
    }

    fn parse(word: &str) -> Option<AggregateFn> {
        [AggregateFn::Count, AggregateFn::Sum, AggregateFn::Avg, AggregateFn::Min, AggregateFn::Max].into_iter().find(|f| f.name() == word)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub func: AggregateFn,
    /// `None` for `count()` (every row).
    pub column: Option<Column>,
    pub alias: Option<String>,
    /// Cast of the column before aggregating (`amount::int.sum()`).
    pub input_cast: Option<String>,
    /// Cast of the result (`amount.sum()::text`).
    pub cast: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    Inner,
    Left,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Embed {
    /// A table, foreign key constraint or foreign key column name.
    pub name: String,
    pub alias: Option<String>,
    /// A constraint, column or junction table name.
    pub hint: Option<String>,
    pub join: Option<JoinType>,
    /// `...rel(…)`: the embedded columns are merged into the parent object.
    pub spread: bool,
    /// Empty for `rel()` (join and filter only, nothing shown).
    pub select: Vec<SelectItem>,
}

impl Embed {
    /// The key of the embed in the parent object and in `rel.filter=` paths.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }
}

/// A cast type name: `[A-Za-z0-9_]+`.
fn parse_cast(cur: &mut Cursor<'_>, stops: &[u8]) -> Result<Option<String>> {
    if !cur.eat("::") {
        return Ok(None);
    }
    let ty = cur.take_until(stops);
    if ty.is_empty() || !ty.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        let message = "cast type must be a simple type name such as 'text' or 'int'";
        return Err(syntax(message).detail(ty));
    }
    Ok(Some(ty.to_string()))
}

/// `*` | a column, aggregate or embed (see [`SelectItem`]).
pub(crate) fn parse_select_item(item: &str) -> Result<SelectItem> {
    parse_item(item, 0)
}

fn parse_item(item: &str, depth: usize) -> Result<SelectItem> {
    if item == "*" {
        return Ok(SelectItem::Star);
    }
    if let Some(rest) = item.strip_prefix("...") {
        let mut embed =
            parse_embed(rest, None, depth)?.ok_or_else(|| syntax("a spread needs an embedded resource: ...rel(cols)").detail(item))?;
        embed.spread = true;
        return Ok(SelectItem::Embed(Box::new(embed)));
    }
    let mut cur = Cursor::new(item);
    let first = parse_column(&mut cur)?;
    let (alias, name_start) = match !cur.rest().starts_with("::") && cur.eat(":") {
        true => (Some(first.0), cur.pos),
        false => (None, 0),
    };
    if let Some(embed) = parse_embed(&item[name_start..], alias.clone(), depth)? {
        return Ok(SelectItem::Embed(Box::new(embed)));
    }
    let mut cur = Cursor::new(&item[name_start..]);
    let column = parse_column(&mut cur)?;
    let path = parse_json_path(&mut cur)?;
    if !path.is_empty() {
        let cast = parse_cast(&mut cur, b"")?;
        expect_end(&cur, "the JSON path")?;
        return Ok(SelectItem::Field { column, path, alias, cast });
    }
    if cur.eat("()") {
        // `count()` is the only aggregate without a column
        return match column.as_str() {
            "count" => {
                let cast = parse_cast(&mut cur, b"")?;
                expect_end(&cur, "the aggregate")?;
                Ok(SelectItem::Aggregate(Aggregate { func: AggregateFn::Count, column: None, alias, input_cast: None, cast }))
            }
            other => Err(syntax(format!("'{}()' needs a column, as in amount.{}()", shorten(other), shorten(other)))),
        };
    }
    let input_cast = parse_cast(&mut cur, b".")?;
    if cur.eat(".") {
        let word = cur.take_until(b"(");
        let func = AggregateFn::parse(word)
            .filter(|_| cur.eat("()"))
            .ok_or_else(|| syntax("expected an aggregate function: count(), sum(), avg(), min() or max()").detail(word))?;
        let cast = parse_cast(&mut cur, b"")?;
        expect_end(&cur, "the aggregate")?;
        return Ok(SelectItem::Aggregate(Aggregate { func, column: Some(column), alias, input_cast, cast }));
    }
    expect_end(&cur, "the select item")?;
    Ok(SelectItem::Field { column, path, alias, cast: input_cast })
}

/// `name[!hint][!inner|!left](items)`; `None` when `text` is not an embed (no `(` or `!`).
fn parse_embed(text: &str, alias: Option<String>, depth: usize) -> Result<Option<Embed>> {
    let open = unquoted_bytes(text).find(|&(_, b)| b == b'(' || b == b'!').map(|(i, _)| i);
    let Some(open) = open else { return Ok(None) };
    let paren = unquoted_bytes(text).find(|&(_, b)| b == b'(').map(|(i, _)| i);
    let Some(paren) = paren else {
        return Err(syntax("an embedded resource needs its columns in parentheses: rel!hint(cols)").detail(text));
    };
    let head = &text[..paren];
    let mut cur = Cursor::new(head);
    let name = parse_column(&mut cur)?.0;
    if name == "count" && text[paren..].starts_with("()") {
        return Ok(None);
    }
    if cur.pos != open {
        // a column followed by something else than `!` or `(` (`a::int.sum()`): not an embed
        return Ok(None);
    }
    let (mut hint, mut join) = (None, None);
    while cur.eat("!") {
        let word = parse_column(&mut cur)?.0;
        match word.as_str() {
            "inner" if join.is_none() => join = Some(JoinType::Inner),
            "left" if join.is_none() => join = Some(JoinType::Left),
            _ if hint.is_none() && join.is_none() => hint = Some(word),
            _ => return Err(syntax("expected rel!hint!inner or rel!hint!left").detail(head)),
        }
    }
    expect_end(&cur, "the embedded resource name")?;
    if !text.ends_with(')') {
        return Err(syntax("unbalanced parentheses in the embedded resource").detail(text));
    }
    if depth + 1 > MAX_EMBED_DEPTH {
        return Err(syntax(format!("embedded resources are nested too deeply (at most {MAX_EMBED_DEPTH} levels)")));
    }
    let inner = text[paren + 1..text.len() - 1].trim_matches([' ', '\t']);
    let select = match inner.is_empty() {
        true => Vec::new(),
        false => split_items(inner, "select")?.into_iter().map(|i| parse_item(i, depth + 1)).collect::<Result<_>>()?,
    };
    Ok(Some(Embed { name, alias, hint, join, spread: false, select }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SelectItem {
        parse_select_item(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn field(c: &str) -> SelectItem {
        SelectItem::column(c)
    }

    fn embed(item: SelectItem) -> Embed {
        match item {
            SelectItem::Embed(e) => *e,
            other => panic!("not an embed: {other:?}"),
        }
    }

    #[test]
    fn embeds_with_aliases_hints_joins_and_spreads() {
        let e = embed(p("grp:groups!campaigns_group_id_fkey!inner(name,contacts(*))"));
        assert_eq!(e.name, "groups");
        assert_eq!(e.alias.as_deref(), Some("grp"));
        assert_eq!(e.key(), "grp");
        assert_eq!(e.hint.as_deref(), Some("campaigns_group_id_fkey"));
        assert_eq!(e.join, Some(JoinType::Inner));
        assert_eq!(e.select.len(), 2);
        let inner = embed(e.select[1].clone());
        assert_eq!((inner.name.as_str(), inner.select.clone()), ("contacts", vec![SelectItem::Star]));
        let s = embed(p("...groups(name)"));
        assert!(s.spread);
        assert_eq!(s.select, vec![field("name")]);
        assert_eq!(embed(p("groups!left(*)")).join, Some(JoinType::Left));
        assert_eq!(embed(p("groups!inner()")).select, vec![]);
        assert_eq!(embed(p("groups(  )")).select, vec![]);
    }

    #[test]
    fn aggregates_with_casts_and_aliases() {
        assert_eq!(
            p("count()"),
            SelectItem::Aggregate(Aggregate { func: AggregateFn::Count, column: None, alias: None, input_cast: None, cast: None })
        );
        assert_eq!(
            p("total:n::int.sum()::text"),
            SelectItem::Aggregate(Aggregate {
                func: AggregateFn::Sum,
                column: Some(Column("n".into())),
                alias: Some("total".into()),
                input_cast: Some("int".into()),
                cast: Some("text".into()),
            })
        );
        for f in ["avg", "min", "max", "count"] {
            assert!(matches!(p(&format!("n.{f}()")), SelectItem::Aggregate(a) if a.func.name() == f));
        }
        assert!(matches!(p("c:count()::int"), SelectItem::Aggregate(a) if a.cast.as_deref() == Some("int")));
        assert_eq!(embed(p("contacts(count)")).select, vec![field("count")]);
    }

    #[test]
    fn malformed_items_are_syntax_errors() {
        for bad in [
            "groups(name",
            "groups!(*)",
            "groups!a!b(*)",
            "groups!inner!left(*)",
            "groups!hint",
            "n.median()",
            "n.sum",
            "...groups",
            "groups(a,,b)",
            "groups(*)x",
        ] {
            assert!(parse_select_item(bad).is_err(), "{bad}");
        }
        for bad in ["data->", "data->>", "data->>a->b", "data->a.sum()", "data->a(x)", "data->a::", "data->a::int::text"] {
            assert!(parse_select_item(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_paths_with_aliases_and_casts() {
        let key = |k: &str, as_text| JsonStep { as_text, key: crate::grammar::path::JsonKey::Key(k.into()) };
        let SelectItem::Field { column, path, alias, cast } = p("alias:data->a->>b::int") else { panic!() };
        assert_eq!((column.as_str(), alias.as_deref(), cast.as_deref()), ("data", Some("alias"), Some("int")));
        assert_eq!(path, vec![key("a", false), key("b", true)]);
        let SelectItem::Field { path, alias, .. } = p("data->arr->0") else { panic!() };
        assert_eq!(SelectItem::field_key("data", &path, alias.as_deref()), "0");
        let SelectItem::Field { path, .. } = p("data->\"a,b\"") else { panic!() };
        assert_eq!(SelectItem::field_key("data", &path, None), "a,b");
        let e = embed(p("contacts(id,attributes->>city)"));
        assert!(matches!(&e.select[1], SelectItem::Field { path, .. } if path.len() == 1));
    }

    #[test]
    fn nesting_is_capped() {
        let nest = |n: usize| format!("{}*{}", "a(".repeat(n), ")".repeat(n));
        assert!(parse_select_item(&nest(MAX_EMBED_DEPTH)).is_ok());
        let e = parse_select_item(&nest(MAX_EMBED_DEPTH + 1)).unwrap_err();
        assert!(e.message.contains("nested too deeply"), "{e}");
        assert!(parse_select_item(&nest(100_000)).is_err());
    }
}
