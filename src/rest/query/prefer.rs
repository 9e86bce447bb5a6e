//! The `Prefer` header.

use crate::grammar::lex::{ErrorKind, ParseError, parse_u64};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnPref {
    Representation,
    Minimal,
    HeadersOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountPref {
    Exact,
    Planned,
    Estimated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    MergeDuplicates,
    IgnoreDuplicates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingPref {
    Default,
    Null,
}

/// `tx=commit` / `tx=rollback`: whether a write's transaction ends with COMMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxPref {
    Commit,
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handling {
    Lenient,
    Strict,
}

/// The recognised preferences; `None` where the client expressed none. A preference given
/// more than once keeps its first value, as in PostgREST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prefer {
    pub return_pref: Option<ReturnPref>,
    pub count: Option<CountPref>,
    pub resolution: Option<Resolution>,
    pub missing: Option<MissingPref>,
    pub handling: Option<Handling>,
    /// `max-affected=<n>` (PostgREST 13): a PATCH/DELETE touching more rows is refused.
    pub max_affected: Option<u64>,
    /// `tx=rollback`: run everything, answer as usual, then roll back.
    pub tx: Option<TxPref>,
}

/// Records `token` in `prefer` (first value wins); false if it is not recognised.
fn apply_preference(p: &mut Prefer, token: &str) -> bool {
    fn keep<T>(slot: &mut Option<T>, value: T) -> bool {
        slot.get_or_insert(value);
        true
    }
    match token {
        "return=representation" => keep(&mut p.return_pref, ReturnPref::Representation),
        "return=minimal" => keep(&mut p.return_pref, ReturnPref::Minimal),
        "return=headers-only" => keep(&mut p.return_pref, ReturnPref::HeadersOnly),
        "count=exact" => keep(&mut p.count, CountPref::Exact),
        "count=planned" => keep(&mut p.count, CountPref::Planned),
        "count=estimated" => keep(&mut p.count, CountPref::Estimated),
        "resolution=merge-duplicates" => keep(&mut p.resolution, Resolution::MergeDuplicates),
        "resolution=ignore-duplicates" => keep(&mut p.resolution, Resolution::IgnoreDuplicates),
        "missing=default" => keep(&mut p.missing, MissingPref::Default),
        "missing=null" => keep(&mut p.missing, MissingPref::Null),
        "handling=lenient" => keep(&mut p.handling, Handling::Lenient),
        "handling=strict" => keep(&mut p.handling, Handling::Strict),
        "tx=commit" => keep(&mut p.tx, TxPref::Commit),
        "tx=rollback" => keep(&mut p.tx, TxPref::Rollback),
        _ => match token.strip_prefix("max-affected=").map(parse_u64) {
            Some(Ok(n)) => keep(&mut p.max_affected, n),
            _ => false,
        },
    }
}

/// Parses a `Prefer` header value (several headers may be joined with `, `). Unknown or
/// invalid preferences are ignored, unless `handling=strict` is in force: then they are an
/// [`ErrorKind::InvalidPreference`] error listing them.
pub fn parse_prefer(header: &str) -> Result<Prefer, ParseError> {
    let mut prefer = Prefer::default();
    let tokens = header.split(',').map(str::trim).filter(|t| !t.is_empty());
    let invalid: Vec<&str> = tokens.filter(|t| !apply_preference(&mut prefer, t)).collect();
    if prefer.handling != Some(Handling::Strict) || invalid.is_empty() {
        return Ok(prefer);
    }
    let message = "invalid preferences given with handling=strict";
    let listed = invalid.iter().take(5).copied().collect::<Vec<_>>().join(", ");
    Err(ParseError::new(ErrorKind::InvalidPreference, message).detail(&listed))
}
