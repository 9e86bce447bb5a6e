//! `GET /rest/`: an OpenAPI 3 document generated from the catalog — the exposed tables
//! (readable columns only), their operations as the serving role's privileges allow, and
//! the `rpc` functions with their arguments.

use serde_json::{Map, Value, json};

use super::catalog::{Catalog, Column, Function, Returns, Table};

/// JSON Schema of a column, from its PostgreSQL type.
fn column_schema(c: &Column) -> Value {
    let mut schema = type_schema(&c.base, &c.category);
    if let (Some(values), Value::Object(map)) = (&c.enum_values, &mut schema) {
        map.insert("enum".into(), json!(values));
    }
    if let Value::Object(map) = &mut schema {
        map.insert("x-postgres-type".into(), json!(c.type_sql));
        if c.nullable {
            map.insert("nullable".into(), json!(true));
        }
        if let Some(comment) = &c.comment {
            map.insert("description".into(), json!(comment));
        }
        if c.default.is_some() || c.generated {
            map.insert("x-has-default".into(), json!(true));
        }
    }
    schema
}

fn type_schema(base: &str, category: &str) -> Value {
    let base = base.trim_start_matches('_');
    let item = match base {
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "int2" | "int4" => json!({"type": "integer", "format": "int32"}),
        "int8" => json!({"type": "integer", "format": "int64"}),
        "numeric" | "float4" | "float8" | "money" => json!({"type": "number"}),
        "bool" => json!({"type": "boolean"}),
        "timestamptz" | "timestamp" => json!({"type": "string", "format": "date-time"}),
        "date" => json!({"type": "string", "format": "date"}),
        "json" | "jsonb" => json!({}),
        _ => json!({"type": "string"}),
    };
    match category {
        "A" => json!({"type": "array", "items": item}),
        _ => item,
    }
}

fn table_schema(t: &Table) -> Value {
    let properties: Map<String, Value> = t.selectable().map(|c| (c.name.clone(), column_schema(c))).collect();
    let required: Vec<&str> =
        t.selectable().filter(|c| !c.nullable && c.default.is_none() && !c.generated).map(|c| c.name.as_str()).collect();
    let mut schema = json!({"type": "object", "properties": properties, "required": required});
    if let Some(comment) = &t.comment {
        schema["description"] = json!(comment);
    }
    schema
}

fn param(name: &str) -> Value {
    json!({"$ref": format!("#/components/parameters/{name}")})
}

fn table_path(t: &Table) -> Value {
    let schema_ref = json!({"$ref": format!("#/components/schemas/{}", t.name)});
    let rows = json!({"application/json": {"schema": {"type": "array", "items": schema_ref}}});
    let filters: Vec<Value> = t
        .selectable()
        .map(|c| json!({"name": c.name, "in": "query", "required": false, "schema": {"type": "string"}, "description": format!("Filter, e.g. eq.value ({})", c.type_sql)}))
        .collect();
    let with_filters = |mut base: Vec<Value>| {
        base.extend(filters.iter().cloned());
        base
    };
    let tag = json!([t.name]);
    let mut ops = Map::new();
    if t.can_select {
        let params =
            with_filters(vec![param("select"), param("order"), param("limit"), param("offset"), param("range"), param("preferCount")]);
        ops.insert("get".into(), json!({"tags": tag, "parameters": params, "responses": {"200": {"description": "OK", "content": rows}, "206": {"description": "Partial Content"}}}));
    }
    if t.can_insert {
        let params = vec![param("select"), param("columns"), param("onConflict"), param("preferWrite")];
        let body = json!({"content": {"application/json": {"schema": {"oneOf": [schema_ref, {"type": "array", "items": schema_ref}]}}}});
        ops.insert(
            "post".into(),
            json!({"tags": tag, "parameters": params, "requestBody": body, "responses": {"201": {"description": "Created"}}}),
        );
    }
    if t.can_update {
        let params = with_filters(vec![param("select"), param("preferWrite")]);
        let body = json!({"content": {"application/json": {"schema": schema_ref}}});
        ops.insert("patch".into(), json!({"tags": tag, "parameters": params, "requestBody": body, "responses": {"200": {"description": "OK"}, "204": {"description": "No Content"}}}));
    }
    if t.can_delete || t.soft_delete().is_some_and(|c| c.can_update) {
        let params = with_filters(vec![param("select"), param("preferWrite")]);
        let summary = if t.soft_delete().is_some() { "Soft delete: sets deleted_at" } else { "Delete" };
        ops.insert("delete".into(), json!({"tags": tag, "summary": summary, "parameters": params, "responses": {"200": {"description": "OK"}, "204": {"description": "No Content"}}}));
    }
    Value::Object(ops)
}

/// JSON Schema of an rpc argument from its SQL type name (`format_type`: `uuid`, `text`,
/// `integer`, `timestamp with time zone`, `text[]`, …).
fn sql_type_schema(type_sql: &str) -> Value {
    let (base, array) = match type_sql.strip_suffix("[]") {
        Some(base) => (base, true),
        None => (type_sql, false),
    };
    let item = match base {
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "smallint" | "integer" => json!({"type": "integer", "format": "int32"}),
        "bigint" => json!({"type": "integer", "format": "int64"}),
        "real" | "double precision" | "money" => json!({"type": "number"}),
        b if b.starts_with("numeric") => json!({"type": "number"}),
        "boolean" => json!({"type": "boolean"}),
        b if b.starts_with("timestamp") => json!({"type": "string", "format": "date-time"}),
        "date" => json!({"type": "string", "format": "date"}),
        "json" | "jsonb" => json!({}),
        _ => json!({"type": "string"}),
    };
    let mut schema = if array { json!({"type": "array", "items": item}) } else { item };
    if let Value::Object(map) = &mut schema {
        map.insert("x-postgres-type".into(), json!(type_sql));
    }
    schema
}

/// Every operation may answer an error in PostgREST's shape.
const ERROR_SCHEMA: &str = "PostgrestError";

fn error_schema() -> Value {
    let text = json!({"type": "string"});
    let nullable = json!({"type": "string", "nullable": true});
    json!({
        "type": "object",
        "description": "An error, as PostgREST answers it: a PGRST code, or the SQLSTATE when the database decided.",
        "properties": {"code": text, "message": text, "details": nullable, "hint": nullable},
        "required": ["code", "message", "details", "hint"],
    })
}

/// Adds the error schema as the `default` response of every operation.
fn with_error_responses(paths: &mut Map<String, Value>) {
    let default = json!({
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{ERROR_SCHEMA}")}}},
    });
    for ops in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in ops.values_mut() {
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                responses.insert("default".into(), default.clone());
            }
        }
    }
}

fn rpc_path(f: &Function) -> Value {
    let properties: Map<String, Value> = f.args.iter().map(|a| (a.name.clone(), sql_type_schema(&a.type_sql))).collect();
    let required: Vec<&str> = f.args.iter().filter(|a| !a.has_default).map(|a| a.name.as_str()).collect();
    let response = match f.returns {
        Returns::Void => json!({"204": {"description": "No Content"}}),
        _ => json!({"200": {"description": format!("OK ({})", f.returns_type)}}),
    };
    let mut op = json!({
        "tags": ["(rpc) functions"],
        "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": properties, "required": required}}}},
        "responses": response,
    });
    if let Some(comment) = &f.comment {
        op["description"] = json!(comment);
    }
    json!({"post": op})
}

fn parameters() -> Value {
    let q = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": description});
    let h = |name: &str, description: &str| json!({"name": name, "in": "header", "required": false, "schema": {"type": "string"}, "description": description});
    json!({
        "select": q("select", "Columns to return: col1,alias:col2,col3::text"),
        "order": q("order", "col.asc|desc[.nullsfirst|.nullslast],…"),
        "limit": q("limit", "At most this many rows (≤ 10000)"),
        "offset": q("offset", "Skip this many rows"),
        "columns": q("columns", "Columns to take from the JSON body"),
        "onConflict": q("on_conflict", "Conflict target of an upsert (Prefer: resolution=merge-duplicates)"),
        "range": h("Range", "Rows window, e.g. 0-24 (Range-Unit: items)"),
        "preferCount": h("Prefer", "count=exact"),
        "preferWrite": h("Prefer", "return=representation|minimal, resolution=merge-duplicates|ignore-duplicates, missing=default, count=exact"),
    })
}

/// The OpenAPI 3 document of everything the catalog exposes.
pub fn document(catalog: &Catalog) -> Value {
    let mut paths = Map::new();
    paths.insert("/".into(), json!({"get": {"summary": "This OpenAPI document", "responses": {"200": {"description": "OK"}}}}));
    let mut schemas = Map::new();
    for name in catalog.table_names() {
        let t = &catalog.tables[name];
        paths.insert(format!("/{name}"), table_path(t));
        schemas.insert(name.to_string(), table_schema(t));
    }
    let mut functions: Vec<&Function> = catalog.functions.values().flatten().collect();
    functions.sort_by(|a, b| a.name.cmp(&b.name));
    for f in functions {
        paths.entry(format!("/rpc/{}", f.name)).or_insert_with(|| rpc_path(f));
    }
    with_error_responses(&mut paths);
    schemas.insert(ERROR_SCHEMA.into(), error_schema());
    json!({
        "openapi": "3.0.3",
        "info": {"title": "rowcast REST API", "version": env!("CARGO_PKG_VERSION"), "description": "PostgREST dialect over row-level-secured tables. See docs/rest.md."},
        "servers": [{"url": "/rest"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": parameters(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
        "security": [{"bearer": []}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_readable_columns_and_allowed_operations_only() {
        let doc = document(&crate::rest::sql::tests::catalog());
        assert_eq!(doc["openapi"], "3.0.3");
        let props = &doc["components"]["schemas"]["things"]["properties"];
        assert!(props.get("name").is_some());
        assert!(props.get("secret").is_none(), "unreadable columns stay out of the document");
        assert_eq!(props["id"]["format"], "uuid");
        assert_eq!(props["tags"]["type"], "array");
        let ops = doc["paths"]["/things"].as_object().unwrap();
        assert!(["get", "post", "patch", "delete"].iter().all(|m| ops.contains_key(*m)));
    }

    #[test]
    fn errors_are_the_default_response_and_rpc_arguments_have_json_types() {
        let doc = document(&crate::rest::sql::tests::catalog());
        let default = &doc["paths"]["/things"]["get"]["responses"]["default"];
        assert_eq!(default["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/PostgrestError");
        assert_eq!(doc["components"]["schemas"]["PostgrestError"]["required"], json!(["code", "message", "details", "hint"]));
        assert_eq!(sql_type_schema("uuid")["format"], "uuid");
        assert_eq!(sql_type_schema("integer")["type"], "integer");
        assert_eq!(sql_type_schema("text[]")["items"]["type"], "string");
        assert_eq!(sql_type_schema("timestamp with time zone")["format"], "date-time");
        assert_eq!(sql_type_schema("boolean")["type"], "boolean");
    }
}
