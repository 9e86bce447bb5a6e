//! Quoting for SQL identifiers the server writes itself (database and table names checked
//! against the catalog). Values never go through here — they are bind parameters.

/// `"name"`, with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn doubles_embedded_quotes() {
        assert_eq!(super::quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
