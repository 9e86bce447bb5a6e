use super::*;
use crate::rest::catalog::Catalog;
use crate::rest::query::parse_query;

pub fn catalog() -> Catalog {
    let col = |name: &str, ty: &str, cat: &str, select: bool| {
        format!(
            r#"{{"name":"{name}","type":"{ty}","category":"{cat}","base":"{ty}","nullable":true,"default":null,
            "generated":false,"can_select":{select},"can_insert":true,"can_update":true,"comment":null,"enum_values":null}}"#
        )
    };
    let cols = [
        col("id", "uuid", "U", true),
        col("tenant_id", "uuid", "U", true),
        col("name", "text", "S", true),
        col("n", "integer", "N", true),
        col("tags", "text[]", "A", true),
        col("secret", "text", "S", false),
        col("deleted_at", "timestamp with time zone", "D", true),
    ]
    .join(",");
    let tables = format!(
        r#"[{{"name":"things","comment":null,"can_select":true,"can_insert":true,"can_update":true,
        "can_delete":true,"primary_key":["id"],"columns":[{cols}]}}]"#
    );
    Catalog::from_json(&tables, "[]").unwrap()
}

fn read(query: &str, count: bool) -> Result<(String, Params), ApiError> {
    let c = catalog();
    let q = parse_query(query).unwrap();
    let read = ReadSql {
        table: c.table("things").unwrap(),
        select: q.select.as_deref(),
        filters: &q.filters,
        order: &q.order,
        offset: 0,
        limit: 10,
        count,
        shape: BodyShape::default(),
    };
    read.build()
}

#[test]
fn star_expands_to_readable_columns_and_hides_soft_deleted_rows() {
    let (sql, params) = read("", false).unwrap();
    assert_eq!(
        sql,
        "SELECT NULL::bigint, count(*), coalesce(json_agg(pgrst_s), '[]')::text FROM (SELECT \"things\".\"id\", \
         \"things\".\"tenant_id\", \"things\".\"name\", \"things\".\"n\", \"things\".\"tags\", \"things\".\"deleted_at\" \
         FROM public.\"things\" WHERE \"things\".\"deleted_at\" IS NULL LIMIT $1 OFFSET $2) pgrst_s"
    );
    assert_eq!(params.values(), &[Param::Int(10), Param::Int(0)]);
}

#[test]
fn filters_bind_values_as_text_cast_to_the_column_type() {
    let (sql, params) = read("id=eq.abc&n=not.gt.5&name=ilike.*x*&tags=eq.{a,b}&n=in.(1,2)&name=is.null", false).unwrap();
    assert!(sql.contains("(\"things\".\"id\" = $1::text::uuid)"), "{sql}");
    assert!(sql.contains("NOT (\"things\".\"n\" > $2::text::integer)"), "{sql}");
    assert!(sql.contains("(\"things\".\"name\" ILIKE $3::text)"), "{sql}");
    assert!(sql.contains("(\"things\".\"tags\" = $4::text::text[])"), "{sql}");
    assert!(sql.contains("(\"things\".\"n\" = ANY($5::text[]::integer[]))"), "{sql}");
    assert!(sql.contains("(\"things\".\"name\" IS NULL)"), "{sql}");
    assert_eq!(params.values()[0], Param::Text("abc".into()));
    assert_eq!(params.values()[2], Param::Text("%x%".into()));
    assert_eq!(params.values()[4], Param::TextArray(vec!["1".into(), "2".into()]));
}

#[test]
fn like_on_a_non_text_column_compares_its_text_form() {
    let (sql, _) = read("n=like.1*", false).unwrap();
    assert!(sql.contains("(\"things\".\"n\"::text LIKE $1::text)"), "{sql}");
}

#[test]
fn logic_trees_nest_and_negate() {
    let (sql, _) = read("or=(n.eq.1,not.and(name.eq.a,n.lt.3))", false).unwrap();
    assert!(
        sql.contains(
            "((\"things\".\"n\" = $1::text::integer) OR NOT ((\"things\".\"name\" = $2::text) AND (\"things\".\"n\" < $3::text::integer)))"
        ),
        "{sql}"
    );
}

#[test]
fn filtering_on_deleted_at_shows_soft_deleted_rows() {
    let (sql, _) = read("deleted_at=not.is.null", false).unwrap();
    assert!(!sql.contains("IS NULL LIMIT"), "{sql}");
    let (sql, _) = read("or=(deleted_at.is.null,n.eq.1)", false).unwrap();
    assert_eq!(sql.matches("deleted_at").count(), 2, "select list and the filter only: {sql}");
}

#[test]
fn counts_reuse_the_filter_parameters() {
    let (sql, params) = read("n=eq.1", true).unwrap();
    assert!(sql.starts_with("SELECT (SELECT count(*) FROM public.\"things\" WHERE (\"things\".\"n\" = $1::text::integer)"), "{sql}");
    assert_eq!(params.len(), 3);
}

#[test]
fn select_aliases_casts_and_order() {
    let (sql, _) = read("select=label:name,n::text&order=n.desc.nullslast,name", false).unwrap();
    assert!(sql.contains("\"things\".\"name\" AS \"label\", \"things\".\"n\"::text AS \"n\""), "{sql}");
    assert!(sql.contains("ORDER BY \"things\".\"n\" DESC NULLS LAST, \"things\".\"name\" ASC"), "{sql}");
}

#[test]
fn unknown_unreadable_and_uncastable_columns_are_refused() {
    assert_eq!(read("select=nope", false).unwrap_err().status.as_u16(), 400);
    assert_eq!(read("nope=eq.1", false).unwrap_err().status.as_u16(), 400);
    assert_eq!(read("order=nope", false).unwrap_err().status.as_u16(), 400);
    assert_eq!(read("select=secret", false).unwrap_err().status.as_u16(), 403);
    assert_eq!(read("secret=eq.x", false).unwrap_err().status.as_u16(), 403);
    assert_eq!(read("select=n::regclass", false).unwrap_err().status.as_u16(), 400);
}

#[test]
fn hostile_names_never_reach_the_sql_text() {
    let err = read("select=%22a\\%22;drop table x;--%22", false).unwrap_err();
    assert_eq!(err.status.as_u16(), 400);
    let (sql, params) = read("name=eq.');drop table things;--", false).unwrap();
    assert!(!sql.contains("drop"), "{sql}");
    assert_eq!(params.values()[0], Param::Text("');drop table things;--".into()));
}

#[test]
fn postgrest_13_operators_render_with_bound_values() {
    let (sql, params) =
        read("tags=cs.{a}&name=imatch.x&n=isdistinct.3&name=like(any).{a*}&n=gt(all).{1,2}&name=fts(english).cat", false).unwrap();
    assert!(sql.contains("(\"things\".\"tags\" @> $1::text::text[])"), "{sql}");
    assert!(sql.contains("(\"things\".\"name\" ~* $2::text)"), "{sql}");
    assert!(sql.contains("(\"things\".\"n\" IS DISTINCT FROM $3::text::integer)"), "{sql}");
    assert!(sql.contains("(\"things\".\"name\" LIKE ANY($4::text::text[]))"), "{sql}");
    assert!(sql.contains("(\"things\".\"n\" > ALL($5::text::integer[]))"), "{sql}");
    assert!(sql.contains("(to_tsvector($6::text::regconfig, \"things\".\"name\") @@ to_tsquery($6::text::regconfig, $7::text))"), "{sql}");
    assert_eq!(params.values()[3], Param::Text("{a%}".into()));
    assert_eq!(params.values()[5], Param::Text("english".into()));
}

#[test]
fn json_paths_bind_their_keys() {
    let (sql, params) = read("name->a->>b=eq.x&order=name->0.desc", false).unwrap();
    assert!(sql.contains("(\"things\".\"name\"->$1::text->>$2::text = $3::text)"), "{sql}");
    assert!(sql.contains("ORDER BY \"things\".\"name\"->$4::text::int DESC"), "{sql}");
    assert_eq!(params.values()[0], Param::Text("a".into()));
    assert_eq!(params.values()[3], Param::Text("0".into()));
    assert_eq!(read("secret->>a=eq.x", false).unwrap_err().status.as_u16(), 403);
    assert_eq!(read("order=secret->a", false).unwrap_err().status.as_u16(), 403);
}
