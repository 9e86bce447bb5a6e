//! JSON paths after a column, as PostgREST writes them: `attributes->key`, `attributes->>key`,
//! `arr->0`, `data->"a.b"->>c`. Shared by filters, `order=` and `select=`.

use super::lex::{Cursor, Result, parse_quoted, syntax};

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonStep {
    /// `->>` (the value as text) rather than `->` (the value as json).
    pub as_text: bool,
    pub key: JsonKey,
}

/// What a step selects: an object key or (an unquoted integer) an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JsonKey {
    Key(String),
    Index(i64),
}

/// Whether a JSON path starts at the cursor.
pub(crate) fn at_path(cur: &Cursor<'_>) -> bool {
    cur.rest().starts_with("->")
}

/// Parses `(->|->>)key` steps at the cursor (none when there is no `->`). A key is
/// double-quoted, or a run of characters other than `. , ( ) : ! "` and whitespace that
/// stops before the next `->`; an unquoted integer is an array index. Only the last step
/// may be `->>` (its result is text).
pub(crate) fn parse_json_path(cur: &mut Cursor<'_>) -> Result<Vec<JsonStep>> {
    let mut steps: Vec<JsonStep> = Vec::new();
    while at_path(cur) {
        if steps.last().is_some_and(|s| s.as_text) {
            return Err(syntax("malformed JSON path: '->>' gives text, so it must be the last step").detail(cur.rest()));
        }
        let as_text = cur.eat("->>") || {
            cur.eat("->");
            false
        };
        let key = match cur.peek() {
            Some(b'"') => JsonKey::Key(parse_quoted(cur)?),
            _ => {
                let rest = cur.rest();
                let stop = |(i, c): &(usize, char)| {
                    matches!(c, '.' | ',' | '(' | ')' | ':' | '!' | '"') || c.is_whitespace() || (*c == '-' && rest[*i..].starts_with("->"))
                };
                let end = rest.char_indices().find(stop).map_or(rest.len(), |(i, _)| i);
                let word = &rest[..end];
                if word.is_empty() {
                    return Err(syntax("malformed JSON path: expected a key or an index after '->'").detail(rest));
                }
                cur.pos += end;
                match word.parse::<i64>() {
                    Ok(i) => JsonKey::Index(i),
                    Err(_) => JsonKey::Key(word.to_string()),
                }
            }
        };
        steps.push(JsonStep { as_text, key });
    }
    Ok(steps)
}

/// The name PostgREST gives a selected path without an alias: its last key (`a->b->>c` → `c`).
pub fn default_name(column: &str, path: &[JsonStep]) -> String {
    match path.last() {
        Some(JsonStep { key: JsonKey::Key(k), .. }) => k.clone(),
        Some(JsonStep { key: JsonKey::Index(i), .. }) => i.to_string(),
        None => column.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> Result<(Vec<JsonStep>, String)> {
        let mut cur = Cursor::new(s);
        let p = parse_json_path(&mut cur)?;
        Ok((p, cur.rest().to_string()))
    }

    fn key(k: &str, as_text: bool) -> JsonStep {
        JsonStep { as_text, key: JsonKey::Key(k.into()) }
    }

    #[test]
    fn steps_keys_and_indexes() {
        assert_eq!(path("->a->>b.eq.1").unwrap(), (vec![key("a", false), key("b", true)], ".eq.1".into()));
        assert_eq!(
            path("->0->-1").unwrap().0,
            vec![JsonStep { as_text: false, key: JsonKey::Index(0) }, JsonStep { as_text: false, key: JsonKey::Index(-1) }]
        );
        assert_eq!(path("->\"a.b\"->>c").unwrap().0, vec![key("a.b", false), key("c", true)]);
        assert_eq!(path("->\"0\"").unwrap().0, vec![key("0", false)]);
        assert_eq!(path("->a::int").unwrap(), (vec![key("a", false)], "::int".into()));
        assert_eq!(path("").unwrap().0, vec![]);
        assert_eq!(default_name("c", &path("->a->>b").unwrap().0), "b");
    }

    #[test]
    fn malformed_paths_are_syntax_errors() {
        assert!(path("->").is_err());
        assert!(path("->>").is_err());
        assert!(path("->.x").is_err());
        assert!(path("->>a->b").is_err());
        assert!(path("->\"unterminated").is_err());
    }
}
