//! The `Range` header and its combination with `limit`/`offset`.

use crate::grammar::lex::{ErrorKind, ParseError, parse_u64, syntax};

/// Parses a `Range` header value for `Range-Unit: items`: `0-9`, `10-`, optionally prefixed
/// with `items=`. Gives `(first, Some(last))` (`last` inclusive) or `(first, None)` for an open
/// end. An end before the start is [`ErrorKind::InvalidRange`] (answer 416).
pub fn parse_range(range: &str) -> Result<(u64, Option<u64>), ParseError> {
    let context = |e: ParseError| e.context("invalid Range header", range);
    let s = range.trim();
    let s = s.strip_prefix("items=").unwrap_or(s).trim();
    let Some((first, last)) = s.split_once('-') else {
        return Err(context(syntax("expected 'first-last' or 'first-', as in 0-9")));
    };
    let first = parse_u64(first.trim()).map_err(context)?;
    let last = match last.trim() {
        "" => None,
        last => Some(parse_u64(last).map_err(context)?),
    };
    match last {
        Some(l) if l < first => {
            Err(ParseError::new(ErrorKind::InvalidRange, format!("requested range not satisfiable: end {l} is before start {first}"))
                .detail(range))
        }
        _ => Ok((first, last)),
    }
}

/// Combines `limit`/`offset` with a parsed `Range` header as PostgREST does: the rows served
/// are the intersection of both windows. Gives `(offset, limit)`; `limit` is `None` for no
/// limit, and `Some(0)` when the windows do not overlap (or `limit=0` was asked for).
pub fn effective_range(limit: Option<u64>, offset: Option<u64>, range: Option<(u64, Option<u64>)>) -> (u64, Option<u64>) {
    // Half-open windows [start, end); a `None` end is unbounded.
    let query_start = offset.unwrap_or(0);
    let query_end = limit.map(|l| query_start.saturating_add(l));
    let (header_start, header_end) = range.map_or((0, None), |(first, last)| (first, last.map(|l| l.saturating_add(1))));
    let start = query_start.max(header_start);
    let end = match (query_end, header_end) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    (start, end.map(|e| e.saturating_sub(start)))
}
