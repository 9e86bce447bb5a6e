//! A read-only request as ONE simple-protocol message: `EXECUTE` of the statements prepared
//! on this connection (`app.begin_request`, then the read), sent together, run by PostgreSQL
//! as one implicit transaction, answered with one flush.
//!
//! Why: the extended protocol needs a `Sync` per statement, so even pipelined, a request
//! made PostgreSQL parse eight messages and flush four replies, and woke the connection task
//! up to four times. One message is parsed once, runs the same cached plans (SQL-level
//! `PREPARE` shares PostgreSQL's plan cache with protocol-level statements) and is answered
//! in one write (docs/benchmarks.md, "One message per read").
//!
//! What it keeps: the statements run in order in one transaction, so the read sees the
//! context `app.begin_request` set (`set_config(…, true)`), and nothing outlives the message:
//! an error anywhere rolls the whole implicit transaction back and leaves the connection idle.
//! Prepared statements are not transactional, so which ones a connection holds is tracked
//! here per connection; a wrong guess (a `DISCARD ALL` by a proxy, a message cut short) shows
//! up as `26000` or `42P05` and is corrected by one more attempt. Past [`MAX_PREPARED`], the
//! connection's statements are all deallocated (`DEALLOCATE ALL`, which also drops the
//! protocol-level ones, so the connection's statement cache is emptied with them).
//!
//! Arguments are written as literals: every value as an escape string (`E'…'`, quotes and
//! backslashes doubled, NUL written `\000` so PostgreSQL refuses it with the `22021` the
//! extended protocol gives), coerced by `EXECUTE` to the parameter's type exactly as a text
//! parameter is by `Bind`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, Weak};

use deadpool_postgres::{Object, StatementCache};
use sha2::Digest;

/// Statements prepared this way per connection before they are all deallocated: bounds the
/// memory that many distinct request shapes could pin in a backend.
pub const MAX_PREPARED: usize = 512;

/// One argument of an `EXECUTE`.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    Text(&'a str),
    TextArray(&'a [String]),
    Int(i64),
    Null,
}

/// The name a statement is prepared under on every connection: `rc_` and 128 bits of the
/// SHA-256 of its text, so two texts never share a name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Name([u8; 16]);

impl Name {
    pub fn of(sql: &str) -> Self {
        let digest = sha2::Sha256::digest(sql.as_bytes());
        let mut name = [0; 16];
        name.copy_from_slice(&digest[..16]);
        Self(name)
    }

    fn push(&self, out: &mut String) {
        out.push_str("rc_");
        self.hex(out);
    }

    /// The 32 hex digits of the name (after its `rc_`).
    pub fn hex(&self, out: &mut String) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            out.push(DIGITS[usize::from(b >> 4)] as char);
            out.push(DIGITS[usize::from(b & 15)] as char);
        }
    }
}

/// Which statements each pooled connection holds. Keyed by the address of the connection's
/// statement cache, whose allocation the `Weak` keeps (so the address is not reused while the
/// entry lives); entries of closed connections are dropped as new connections come.
#[derive(Default)]
pub struct Prepared {
    conns: Mutex<HashMap<usize, Known>>,
}

struct Known {
    cache: Weak<StatementCache>,
    names: HashSet<Name>,
}

/// What a message must do before its `EXECUTE`s.
pub struct Plan {
    /// Deallocate everything first: the connection reached [`MAX_PREPARED`].
    pub reset: bool,
    /// Per statement of the message: prepare it first.
    pub prepare: Vec<bool>,
}

impl Prepared {
    fn key(conn: &Object) -> usize {
        Arc::as_ptr(&conn.statement_cache) as usize
    }

    fn with<T>(&self, conn: &Object, f: impl FnOnce(&mut HashSet<Name>) -> T) -> T {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let key = Self::key(conn);
        if !conns.contains_key(&key) {
            conns.retain(|_, k| k.cache.strong_count() > 0);
            conns.insert(key, Known { cache: Arc::downgrade(&conn.statement_cache), names: HashSet::new() });
        }
        let known = conns.get_mut(&key).expect("inserted above");
        f(&mut known.names)
    }

    /// What running `names` on `conn` needs first.
    pub fn plan(&self, conn: &Object, names: &[Name]) -> Plan {
        self.with(conn, |known| {
            let missing = names.iter().filter(|n| !known.contains(n)).count();
            let reset = known.len() + missing > MAX_PREPARED;
            let prepare = names.iter().map(|n| reset || !known.contains(n)).collect();
            Plan { reset, prepare }
        })
    }

    /// `names` are prepared on `conn` now.
    pub fn remember(&self, conn: &Object, names: impl IntoIterator<Item = Name>) {
        self.with(conn, |known| known.extend(names));
    }

    /// Nothing is known of `conn`'s statements any more.
    pub fn forget_all(&self, conn: &Object) {
        self.with(conn, HashSet::clear);
    }
}

/// `PREPARE <name> AS <sql>;`
pub fn push_prepare(out: &mut String, name: Name, sql: &str) {
    out.push_str("PREPARE ");
    name.push(out);
    out.push_str(" AS ");
    out.push_str(sql);
    out.push(';');
}

/// `EXECUTE <name>(<args>);`
pub fn push_execute(out: &mut String, name: Name, args: &[Arg<'_>]) {
    out.push_str("EXECUTE ");
    name.push(out);
    if !args.is_empty() {
        out.push('(');
        push_list(out, args, push_arg);
        out.push(')');
    }
    out.push(';');
}

/// `items`, each written by `push`, separated by commas.
fn push_list<T>(out: &mut String, items: &[T], push: impl Fn(&mut String, &T)) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push(out, item);
    }
}

fn push_arg(out: &mut String, arg: &Arg<'_>) {
    match arg {
        Arg::Null => out.push_str("NULL"),
        Arg::Text(s) => push_literal(out, s),
        Arg::Int(i) => {
            let _ = write!(out, "'{i}'");
        }
        Arg::TextArray(items) => {
            out.push_str("ARRAY[");
            push_list(out, items, |out, s| push_literal(out, s));
            out.push_str("]::text[]");
        }
    }
}

/// `s` as an escape-string literal: read back as exactly `s` whatever
/// `standard_conforming_strings` is; a NUL is written `\000`, which PostgreSQL refuses
/// (`22021`) as it refuses one in a bound text parameter.
pub fn push_literal(out: &mut String, s: &str) {
    out.reserve(s.len() + 3);
    out.push_str("E'");
    let mut rest = s;
    while let Some(at) = rest.find(['\'', '\\', '\0']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\'' => "''",
            b'\\' => "\\\\",
            _ => "\\000",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(s: &str) -> String {
        let mut out = String::new();
        push_literal(&mut out, s);
        out
    }

    #[test]
    fn literals_double_quotes_and_backslashes_and_spell_nul() {
        assert_eq!(literal("plain"), "E'plain'");
        assert_eq!(literal("it's"), "E'it''s'");
        assert_eq!(literal(r"a\b"), r"E'a\\b'");
        assert_eq!(literal("'; DROP TABLE x; --"), "E'''; DROP TABLE x; --'");
        assert_eq!(literal("a\0b"), r"E'a\000b'");
        assert_eq!(literal("é'\\"), r"E'é''\\'");
    }

    #[test]
    fn executes_spell_every_kind_of_argument() {
        let mut out = String::new();
        let items = ["x'".to_string(), "y".to_string()];
        let name = Name::of("SELECT 1");
        push_execute(&mut out, name, &[Arg::Text("a"), Arg::Int(-5), Arg::Null, Arg::TextArray(&items), Arg::TextArray(&[])]);
        let mut spelled = String::new();
        name.push(&mut spelled);
        assert_eq!(out, format!("EXECUTE {spelled}(E'a','-5',NULL,ARRAY[E'x''',E'y']::text[],ARRAY[]::text[]);"));
        assert_eq!(spelled.len(), 35, "within NAMEDATALEN");
    }

    #[test]
    fn names_differ_with_the_text() {
        assert_eq!(Name::of("SELECT 1"), Name::of("SELECT 1"));
        assert_ne!(Name::of("SELECT 1"), Name::of("SELECT 1 "));
    }
}
