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

fn rpc_path(f: &Function) -> Value {
    let properties: Map<String, Value> = f.args.iter().map(|a| (a.name.clone(), json!({"x-postgres-type": a.type_sql}))).collect();
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
}
