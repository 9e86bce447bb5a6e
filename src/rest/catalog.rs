//! What `/rest` exposes, read from `pg_catalog` as the serving role (`rowcast_app`).
//!
//! Exposed tables: schema `public`, RLS enabled **and** forced, and some privilege of the
//! connected role on them. Exposed functions: schema `rpc`, executable by the connected role,
//! every input argument named. Column privileges are kept per column, so a column whose
//! SELECT is not granted (`webhooks.secret`) never appears in `select=*` or in OpenAPI.

use std::collections::HashMap;

use serde::Deserialize;

use super::ident::quote_ident;
use super::relationship::{ForeignKey, Relationships, UniqueKey};

/// Tables: one JSON array, so start-up and reload cost one round trip each.
const TABLES_SQL: &str = r#"
SELECT coalesce(json_agg(t ORDER BY t.name), '[]')::text FROM (
  SELECT c.relname AS name,
         obj_description(c.oid, 'pg_class') AS comment,
         has_any_column_privilege(c.oid, 'SELECT') AS can_select,
         has_any_column_privilege(c.oid, 'INSERT') AS can_insert,
         has_any_column_privilege(c.oid, 'UPDATE') AS can_update,
         has_table_privilege(c.oid, 'DELETE') AS can_delete,
         coalesce((SELECT array_agg(a.attname::text ORDER BY k.i)
                     FROM pg_constraint x
                     CROSS JOIN LATERAL unnest(x.conkey) WITH ORDINALITY AS k(n, i)
                     JOIN pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = k.n
                    WHERE x.conrelid = c.oid AND x.contype = 'p'), '{}') AS primary_key,
         coalesce((SELECT json_agg(json_build_object(
                     'name', a.attname,
                     'type', format_type(a.atttypid, NULL),
                     'category', coalesce(bt.typcategory, ty.typcategory),
                     'base', coalesce(bt.typname, ty.typname),
                     'nullable', NOT a.attnotnull,
                     'default', pg_get_expr(d.adbin, d.adrelid),
                     'generated', a.attgenerated <> '' OR a.attidentity = 'a',
                     'can_select', has_column_privilege(c.oid, a.attnum, 'SELECT'),
                     'can_insert', has_column_privilege(c.oid, a.attnum, 'INSERT'),
                     'can_update', has_column_privilege(c.oid, a.attnum, 'UPDATE'),
                     'comment', col_description(c.oid, a.attnum),
                     'enum_values', (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder)
                                       FROM pg_enum e WHERE e.enumtypid = a.atttypid)
                   ) ORDER BY a.attnum)
                     FROM pg_attribute a
                     JOIN pg_type ty ON ty.oid = a.atttypid
                     LEFT JOIN pg_type bt ON ty.typtype = 'd' AND bt.oid = ty.typbasetype
                     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     AND c.relrowsecurity AND c.relforcerowsecurity
     AND (has_any_column_privilege(c.oid, 'SELECT') OR has_any_column_privilege(c.oid, 'INSERT')
          OR has_any_column_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE'))
) t"#;

/// Functions of schema `rpc` the connected role may execute.
const FUNCTIONS_SQL: &str = r#"
SELECT coalesce(json_agg(f ORDER BY f.name), '[]')::text FROM (
  SELECT p.proname AS name,
         obj_description(p.oid, 'pg_proc') AS comment,
         coalesce(p.proargnames, '{}') AS arg_names,
         coalesce(p.proargmodes::text[], '{}') AS arg_modes,
         ARRAY(SELECT format_type(a.t, NULL)
                 FROM unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY AS a(t, i)
                ORDER BY a.i) AS arg_types,
         p.pronargdefaults AS n_defaults,
         format_type(p.prorettype, NULL) AS returns,
         p.proretset AS returns_set,
         (rt.typtype = 'c' OR p.prorettype = 'record'::regtype) AS returns_composite,
         p.prorettype = 'void'::regtype AS returns_void,
         p.provolatile::text AS volatility
    FROM pg_proc p
    JOIN pg_namespace n ON n.oid = p.pronamespace
    JOIN pg_type rt ON rt.oid = p.prorettype
   WHERE n.nspname = 'rpc' AND p.prokind = 'f' AND has_function_privilege(p.oid, 'EXECUTE')
) f"#;

/// Foreign keys and primary/unique keys of `public`, for relationship detection (one JSON
/// object `{fks, keys}`; only those between exposed tables are kept).
const KEYS_SQL: &str = r#"
SELECT json_build_object(
  'fks', coalesce((SELECT json_agg(json_build_object(
            'name', x.conname, 'table', c.relname, 'ref_table', r.relname,
            'columns', ARRAY(SELECT a.attname::text FROM unnest(x.conkey) WITH ORDINALITY AS k(n, i)
                               JOIN pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = k.n ORDER BY k.i),
            'ref_columns', ARRAY(SELECT a.attname::text FROM unnest(x.confkey) WITH ORDINALITY AS k(n, i)
                                   JOIN pg_attribute a ON a.attrelid = x.confrelid AND a.attnum = k.n ORDER BY k.i))
            ORDER BY c.relname, x.conname)
     FROM pg_constraint x
     JOIN pg_class c ON c.oid = x.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_class r ON r.oid = x.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
    WHERE x.contype = 'f' AND n.nspname = 'public' AND rn.nspname = 'public'), '[]'),
  'keys', coalesce((SELECT json_agg(json_build_object(
            'table', c.relname,
            'columns', ARRAY(SELECT a.attname::text FROM unnest(x.conkey) AS k(n)
                               JOIN pg_attribute a ON a.attrelid = x.conrelid AND a.attnum = k.n)))
     FROM pg_constraint x
     JOIN pg_class c ON c.oid = x.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE x.contype IN ('p', 'u') AND n.nspname = 'public'), '[]'))::text"#;

#[derive(Deserialize)]
struct RawKeys {
    fks: Vec<ForeignKey>,
    keys: Vec<UniqueKey>,
}

/// One column of an exposed table.
#[derive(Debug, Clone, Deserialize)]
pub struct Column {
    pub name: String,
    /// `format_type` without typmod: `uuid`, `timestamp with time zone`, `text[]`, …
    #[serde(rename = "type")]
    pub type_sql: String,
    /// `pg_type.typcategory` of the (base) type: `S` string, `N` numeric, `B` bool, `A` array, …
    pub category: String,
    /// `pg_type.typname` of the (base) type: `int4`, `jsonb`, `uuid`, …
    pub base: String,
    pub nullable: bool,
    /// The default expression, from the catalog (trusted SQL).
    pub default: Option<String>,
    pub generated: bool,
    pub can_select: bool,
    pub can_insert: bool,
    pub can_update: bool,
    pub comment: Option<String>,
    pub enum_values: Option<Vec<String>>,
    #[serde(skip)]
    pub ident: String,
}

impl Column {
    /// String-like columns compare with LIKE directly; others are cast to text first.
    pub fn is_text(&self) -> bool {
        self.category == "S"
    }
}

/// An exposed table.
#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    pub name: String,
    pub comment: Option<String>,
    pub can_select: bool,
    pub can_insert: bool,
    pub can_update: bool,
    pub can_delete: bool,
    pub primary_key: Vec<String>,
    pub columns: Vec<Column>,
    /// `"name"`: how statements refer to the table's rows.
    #[serde(skip)]
    pub ident: String,
    /// `public."name"`
    #[serde(skip)]
    pub qualified: String,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Tables with a `deleted_at` column are soft-delete tables.
    pub fn soft_delete(&self) -> Option<&Column> {
        self.column("deleted_at")
    }

    pub fn selectable(&self) -> impl Iterator<Item = &Column> {
        self.columns.iter().filter(|c| c.can_select)
    }

    /// Position of a column in catalog order (to keep generated SQL stable per shape).
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// One input argument of a function.
#[derive(Debug, Clone)]
pub struct Arg {
    pub name: String,
    pub ident: String,
    pub type_sql: String,
    pub has_default: bool,
}

/// What a function returns, which decides the response shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returns {
    Void,
    /// One scalar value (JSON value).
    Scalar,
    /// One row (JSON object).
    Row,
    /// A set of scalars or rows (JSON array).
    Set,
}

#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    /// `rpc."name"`
    pub qualified: String,
    pub comment: Option<String>,
    pub args: Vec<Arg>,
    pub returns: Returns,
    pub returns_type: String,
    /// `i`, `s` or `v`.
    pub volatility: String,
}

#[derive(Deserialize)]
struct RawFunction {
    name: String,
    comment: Option<String>,
    arg_names: Vec<String>,
    arg_modes: Vec<String>,
    arg_types: Vec<String>,
    n_defaults: usize,
    returns: String,
    returns_set: bool,
    returns_composite: bool,
    returns_void: bool,
    volatility: String,
}

impl RawFunction {
    /// `None` when an input argument has no name (it could not be called with named JSON).
    fn into_function(self) -> Option<Function> {
        let inputs: Vec<(String, String)> = (0..self.arg_types.len())
            .filter(|&i| self.arg_modes.is_empty() || matches!(self.arg_modes[i].as_str(), "i" | "b" | "v"))
            .map(|i| (self.arg_names.get(i).cloned().unwrap_or_default(), self.arg_types[i].clone()))
            .collect();
        if inputs.iter().any(|(name, _)| name.is_empty()) {
            return None;
        }
        let first_default = inputs.len().saturating_sub(self.n_defaults);
        let args = inputs
            .into_iter()
            .enumerate()
            .map(|(i, (name, type_sql))| Arg { ident: quote_ident(&name), name, type_sql, has_default: i >= first_default })
            .collect();
        let returns = match (self.returns_void, self.returns_set, self.returns_composite) {
            (true, _, _) => Returns::Void,
            (_, true, _) => Returns::Set,
            (_, false, true) => Returns::Row,
            _ => Returns::Scalar,
        };
        Some(Function {
            qualified: format!("rpc.{}", quote_ident(&self.name)),
            name: self.name,
            comment: self.comment,
            args,
            returns,
            returns_type: self.returns,
            volatility: self.volatility,
        })
    }
}

/// Everything `/rest` may reach, immutable once loaded; a reload builds a new one.
#[derive(Debug, Default)]
pub struct Catalog {
    pub tables: HashMap<String, Table>,
    /// Overloads by name.
    pub functions: HashMap<String, Vec<Function>>,
    /// Relationships between exposed tables, for resource embedding.
    pub relationships: Relationships,
    /// The OpenAPI document of this catalog, rendered on first use.
    pub openapi: std::sync::OnceLock<String>,
}

impl Catalog {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.get(name)
    }

    pub fn functions(&self, name: &str) -> Option<&[Function]> {
        self.functions.get(name).map(Vec::as_slice)
    }

    /// Table names, sorted.
    pub fn table_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tables.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Reads the catalog as the connected role.
    pub async fn load(client: &tokio_postgres::Client) -> Result<Catalog, CatalogError> {
        let tables: String = client.query_one(TABLES_SQL, &[]).await?.get(0);
        let functions: String = client.query_one(FUNCTIONS_SQL, &[]).await?.get(0);
        let keys: String = client.query_one(KEYS_SQL, &[]).await?.get(0);
        let mut catalog = Catalog::from_json(&tables, &functions)?;
        let keys: RawKeys = serde_json::from_str(&keys)?;
        catalog.set_keys(&keys.fks, &keys.keys);
        Ok(catalog)
    }

    /// Detects the relationships between this catalog's tables from their keys.
    pub fn set_keys(&mut self, fks: &[ForeignKey], keys: &[UniqueKey]) {
        self.relationships = Relationships::detect(fks, keys, |t| self.tables.contains_key(t));
    }

    /// Builds a catalog from the JSON the two catalog queries return.
    pub fn from_json(tables: &str, functions: &str) -> Result<Catalog, CatalogError> {
        let tables: Vec<Table> = serde_json::from_str(tables)?;
        let functions: Vec<RawFunction> = serde_json::from_str(functions)?;
        let tables = tables
            .into_iter()
            .map(|mut t| {
                t.ident = quote_ident(&t.name);
                t.qualified = format!("public.{}", t.ident);
                t.columns.iter_mut().for_each(|c| c.ident = quote_ident(&c.name));
                (t.name.clone(), t)
            })
            .collect();
        let mut by_name: HashMap<String, Vec<Function>> = HashMap::new();
        for f in functions.into_iter().filter_map(RawFunction::into_function) {
            by_name.entry(f.name.clone()).or_default().push(f);
        }
        Ok(Catalog { tables, functions: by_name, relationships: Relationships::default(), openapi: Default::default() })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read the catalog: {0}")]
    Db(#[from] tokio_postgres::Error),
    #[error("cannot decode the catalog: {0}")]
    Decode(#[from] serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLES: &str = r#"[{"name":"things","comment":null,"can_select":true,"can_insert":true,
        "can_update":true,"can_delete":true,"primary_key":["id"],"columns":[
        {"name":"id","type":"uuid","category":"U","base":"uuid","nullable":false,"default":"gen_random_uuid()",
         "generated":false,"can_select":true,"can_insert":true,"can_update":true,"comment":null,"enum_values":null},
        {"name":"secret","type":"text","category":"S","base":"text","nullable":true,"default":null,
         "generated":false,"can_select":false,"can_insert":false,"can_update":false,"comment":null,"enum_values":null},
        {"name":"deleted_at","type":"timestamp with time zone","category":"D","base":"timestamptz","nullable":true,
         "default":null,"generated":false,"can_select":true,"can_insert":true,"can_update":true,"comment":null,
         "enum_values":null}]}]"#;

    const FUNCTIONS: &str = r#"[
        {"name":"f","comment":null,"arg_names":["a","b","out1"],"arg_modes":["i","i","o"],
         "arg_types":["uuid","text","integer"],"n_defaults":1,"returns":"integer","returns_set":false,
         "returns_composite":false,"returns_void":false,"volatility":"v"},
        {"name":"anon","comment":null,"arg_names":[],"arg_modes":[],"arg_types":["jsonb"],"n_defaults":0,
         "returns":"void","returns_set":false,"returns_composite":false,"returns_void":true,"volatility":"v"},
        {"name":"rows","comment":null,"arg_names":[],"arg_modes":[],"arg_types":[],"n_defaults":0,
         "returns":"record","returns_set":true,"returns_composite":true,"returns_void":false,"volatility":"s"}]"#;

    #[test]
    fn catalog_json_becomes_tables_and_functions() {
        let c = Catalog::from_json(TABLES, FUNCTIONS).unwrap();
        let t = c.table("things").unwrap();
        assert_eq!(t.qualified, "public.\"things\"");
        assert_eq!(t.column("id").unwrap().ident, "\"id\"");
        assert!(t.soft_delete().is_some());
        assert_eq!(t.selectable().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["id", "deleted_at"]);
        let f = &c.functions("f").unwrap()[0];
        assert_eq!(f.args.len(), 2, "OUT arguments are not inputs");
        assert!(!f.args[0].has_default && f.args[1].has_default);
        assert_eq!(f.returns, Returns::Scalar);
        assert!(c.functions("anon").is_none(), "functions with unnamed arguments are not exposed");
        assert_eq!(c.functions("rows").unwrap()[0].returns, Returns::Set);
    }
}
