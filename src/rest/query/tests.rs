use super::*;
use crate::grammar::lex::syntax;
use proptest::prelude::*;

fn q(s: &str) -> QueryParams {
    parse_query(s).unwrap_or_else(|e| panic!("{s:?} should parse, got: {e}"))
}

fn err(s: &str) -> ParseError {
    match parse_query(s) {
        Ok(p) => panic!("{s:?} should fail, got: {p:?}"),
        Err(e) => e,
    }
}

fn syntax_err(s: &str, needle: &str) {
    let e = err(s);
    assert_eq!(e.kind, ErrorKind::Syntax, "{s:?}: {e}");
    assert!(e.to_string().contains(needle), "{s:?}: {e:?} lacks {needle:?}");
}

fn unsupported_err(s: &str, needle: &str) {
    let e = err(s);
    assert_eq!(e.kind, ErrorKind::UnsupportedFeature, "{s:?}: {e}");
    assert!(e.message.contains(needle), "{s:?}: {e:?} lacks {needle:?}");
}

fn col(s: &str) -> Column {
    Column(s.to_string())
}

fn cond(c: &str, negated: bool, operation: Operation) -> Filter {
    Filter::Condition(Condition { column: col(c), path: vec![], negated, operation })
}

fn cmp(c: &str, op: CmpOp, v: &str) -> Filter {
    cond(c, false, Operation::Cmp(op, v.to_string()))
}

fn only_filter(s: &str) -> Filter {
    let mut p = q(s);
    assert_eq!(p.filters.len(), 1, "{s:?}");
    p.filters.remove(0)
}

fn field(c: &str, alias: Option<&str>, cast: Option<&str>) -> SelectItem {
    SelectItem::Field { column: col(c), path: Vec::new(), alias: alias.map(String::from), cast: cast.map(String::from) }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ----- select -----

#[test]
fn select_forms() {
    assert_eq!(q("select=*").select, Some(vec![SelectItem::Star]));
    assert_eq!(q("select=id,name").select, Some(vec![field("id", None, None), field("name", None, None)]));
    assert_eq!(q("select=n:name").select, Some(vec![field("name", Some("n"), None)]));
    assert_eq!(q("select=id::text").select, Some(vec![field("id", None, Some("text"))]));
    assert_eq!(q("select=a:id::int,*").select, Some(vec![field("id", Some("a"), Some("int")), SelectItem::Star]));
}

#[test]
fn select_quoted_and_spaced_identifiers() {
    assert_eq!(q("select=%22my%20col%22,%22a%5C%22b%22").select, Some(vec![field("my col", None, None), field("a\"b", None, None)]));
    assert_eq!(q("select=%22x,y%22:%22a:b%22::text").select, Some(vec![field("a:b", Some("x,y"), Some("text"))]));
    assert_eq!(q("select=+id+,+first+name").select, Some(vec![field("id", None, None), field("first name", None, None)]));
    assert_eq!(q("select=_x$1,%C3%A9t%C3%A9").select.unwrap().len(), 2);
}

#[test]
fn select_errors() {
    syntax_err("select=", "must not be empty");
    syntax_err("select=a,,b", "empty item");
    syntax_err("select=a,", "empty item");
    syntax_err("select=,", "empty item");
    syntax_err("select=col::", "simple type name");
    syntax_err("select=col::te;xt", "simple type name");
    syntax_err("select=a:", "column name");
    syntax_err("select=*::text", "column name");
    syntax_err("select=a:b:c", "unexpected");
    syntax_err("select=%22unterminated", "unterminated");
    syntax_err("select=%22%22", "empty quoted column");
    syntax_err("select=a&select=b", "more than once");
}

#[test]
fn select_embeds_aggregates_and_json_paths_parse() {
    assert!(matches!(&q("select=id,rel(a,b)").select.unwrap()[1], SelectItem::Embed(e) if e.name == "rel" && e.select.len() == 2));
    assert!(matches!(&q("select=...rel(*)").select.unwrap()[0], SelectItem::Embed(e) if e.spread));
    assert!(matches!(&q("select=count()").select.unwrap()[0], SelectItem::Aggregate(_)));
    assert!(matches!(&q("select=data->a").select.unwrap()[0], SelectItem::Field { path, cast: None, .. } if path.len() == 1));
    assert!(matches!(&q("select=x:data->>a::int").select.unwrap()[0], SelectItem::Field { cast: Some(c), .. } if c == "int"));
    syntax_err("select=data->", "malformed JSON path");
    // a quoted '(' is just part of a name
    assert_eq!(q("select=%22f(x)%22").select, Some(vec![field("f(x)", None, None)]));
}

#[test]
fn embedded_parameters_are_kept_by_path() {
    let p = q("a.b.name=eq.x&a.order=n.desc&a.limit=2&a.offset=1&a.or=(n.eq.1,n.eq.2)&a.b.not.and=(n.eq.1)&n=eq.3");
    assert_eq!(p.filters, vec![cmp("n", CmpOp::Eq, "3")]);
    let a = &p.embedded[&vec!["a".to_string()]];
    assert_eq!((a.limit, a.offset, a.order.len(), a.filters.len()), (Some(2), Some(1), 1, 1));
    let ab = &p.embedded[&vec!["a".to_string(), "b".to_string()]];
    assert_eq!(ab.filters.len(), 2);
    syntax_err("a.select=x", "not allowed on an embedded resource");
    syntax_err("a.limit=1&a.limit=2", "more than once");
    syntax_err("a.=eq.1", "column name");
}

// ----- order -----

#[test]
fn order_forms() {
    let p = q("order=a,b.desc,c.asc.nullslast,d.nullsfirst,%22e+f%22.desc.nullsfirst");
    let t = |c: &str, direction, nulls| OrderTerm { relation: None, column: col(c), path: vec![], direction, nulls };
    assert_eq!(
        p.order,
        vec![
            t("a", Direction::Asc, None),
            t("b", Direction::Desc, None),
            t("c", Direction::Asc, Some(NullsOrder::Last)),
            t("d", Direction::Asc, Some(NullsOrder::First)),
            t("e f", Direction::Desc, Some(NullsOrder::First)),
        ]
    );
}

#[test]
fn order_errors() {
    syntax_err("order=col.sideways", "sideways");
    syntax_err("order=col.desc.asc", "asc");
    syntax_err("order=col.nullsfirst.desc", "desc");
    syntax_err("order=col.nullsfirst.nullslast", "nullslast");
    syntax_err("order=col.descc", "descc");
    syntax_err("order=col.", "order modifier");
    syntax_err("order=", "must not be empty");
    syntax_err("order=a,,b", "empty item");
    syntax_err("order=a&order=b", "more than once");
    syntax_err("order=rel(col.desc", "rel(column)");
    syntax_err("order=rel().desc", "column name");
    syntax_err("order=rel(a,b)", "rel(column)");
    unsupported_err("order=rel!hint(col)", "hints");
    syntax_err("order=data->.desc", "malformed JSON path");
}

// ----- limit / offset -----

#[test]
fn limit_offset() {
    let p = q("limit=10&offset=20");
    assert_eq!((p.limit, p.offset), (Some(10), Some(20)));
    assert_eq!(q("limit=0").limit, Some(0));
    assert_eq!(q("limit=18446744073709551615").limit, Some(u64::MAX));
    assert_eq!(q("limit=007").limit, Some(7));
}

#[test]
fn limit_offset_errors() {
    assert_eq!(err("limit=-1").kind, ErrorKind::InvalidRange, "a negative limit is PostgREST's 416");
    syntax_err("offset=-5", "negative");
    syntax_err("limit=abc", "non-negative integer");
    syntax_err("limit=", "must not be empty");
    syntax_err("limit", "must not be empty");
    assert_eq!(err("limit=").details, None);
    syntax_err("limit=1.5", "non-negative integer");
    syntax_err("limit=+5", "non-negative integer");
    syntax_err("limit=5+", "non-negative integer");
    syntax_err("limit=18446744073709551616", "too large");
    syntax_err("limit=99999999999999999999999999999", "too large");
    syntax_err("limit=1&limit=2", "more than once");
    syntax_err("offset=1&offset=1", "more than once");
    let e = err("limit=abc");
    assert!(e.message.contains("'limit'"), "{e}");
    assert_eq!(e.details.as_deref(), Some("abc"));
}

// ----- on_conflict / columns -----

#[test]
fn column_lists() {
    let p = q("on_conflict=a,b&columns=x,%22y+z%22,+w");
    assert_eq!(p.on_conflict, Some(vec![col("a"), col("b")]));
    assert_eq!(p.columns, Some(vec![col("x"), col("y z"), col("w")]));
    syntax_err("columns=", "must not be empty");
    syntax_err("on_conflict=", "must not be empty");
    syntax_err("columns=a,,b", "empty item in column list");
    syntax_err("columns=a.b", "unexpected");
    syntax_err("on_conflict=a&on_conflict=b", "more than once");
    unsupported_err("columns=rel(a)", "embedding");
}

// ----- filters -----

#[test]
fn comparison_operators() {
    for (name, op) in
        [("eq", CmpOp::Eq), ("neq", CmpOp::Neq), ("gt", CmpOp::Gt), ("gte", CmpOp::Gte), ("lt", CmpOp::Lt), ("lte", CmpOp::Lte)]
    {
        assert_eq!(only_filter(&format!("age={name}.42")), cmp("age", op, "42"));
    }
    assert_eq!(CmpOp::Neq.sql(), "<>");
    assert_eq!(CmpOp::ILike.sql(), "ILIKE");
}

#[test]
fn filter_values_are_verbatim() {
    assert_eq!(only_filter("v=eq.a.b.c"), cmp("v", CmpOp::Eq, "a.b.c"));
    assert_eq!(only_filter("v=eq."), cmp("v", CmpOp::Eq, ""));
    assert_eq!(only_filter("v=eq.*x*"), cmp("v", CmpOp::Eq, "*x*"));
    assert_eq!(only_filter("v=eq.%22a,b%22"), cmp("v", CmpOp::Eq, "\"a,b\""));
    assert_eq!(only_filter("v=eq.a+b%2Bc%26d%3D"), cmp("v", CmpOp::Eq, "a b+c&d="));
    assert_eq!(only_filter("v=eq.(x)"), cmp("v", CmpOp::Eq, "(x)"));
}

#[test]
fn like_star_becomes_percent() {
    assert_eq!(only_filter("n=like.*ab*c"), cmp("n", CmpOp::Like, "%ab%c"));
    assert_eq!(only_filter("n=ilike.A*"), cmp("n", CmpOp::ILike, "A%"));
    assert_eq!(only_filter("n=like.a%25b"), cmp("n", CmpOp::Like, "a%b"));
}

#[test]
fn negation() {
    assert_eq!(only_filter("a=not.eq.5"), cond("a", true, Operation::Cmp(CmpOp::Eq, "5".into())));
    assert_eq!(only_filter("a=not.is.null"), cond("a", true, Operation::Is(IsValue::Null)));
    assert_eq!(only_filter("a=not.in.(1,2)"), cond("a", true, Operation::In(strs(&["1", "2"]))));
}

#[test]
fn in_lists() {
    let f = |s: &str| match only_filter(s) {
        Filter::Condition(Condition { operation: Operation::In(v), .. }) => v,
        other => panic!("{other:?}"),
    };
    assert_eq!(f("id=in.(1,2,3)"), strs(&["1", "2", "3"]));
    assert_eq!(f("id=in.(a)"), strs(&["a"]));
    assert_eq!(f("id=in.()"), Vec::<String>::new());
    assert_eq!(f("id=in.(+)"), Vec::<String>::new());
    assert_eq!(f("n=in.(%22a,b%22,c,%22d)e%22)"), strs(&["a,b", "c", "d)e"]));
    assert_eq!(f("n=in.(%22a%5C%22b%22,%22c%5C%5Cd%22)"), strs(&["a\"b", "c\\d"]));
    assert_eq!(f("n=in.(,)"), strs(&["", ""]));
    assert_eq!(f("n=in.(a.b,c(d)"), strs(&["a.b", "c(d"]));
    assert_eq!(f("n=in.(%22%22)"), strs(&[""]));
}

#[test]
fn in_list_errors() {
    syntax_err("id=in.(1,2", "no closing");
    syntax_err("id=in.1,2", "'('");
    syntax_err("id=in.(1)x", "unexpected characters");
    syntax_err("id=in.(%22a%22x)", "expected ',' or ')' in the 'in' list");
    syntax_err("id=in.(%22a", "unterminated");
    syntax_err("id=in.(%22a%5C", "unterminated");
}

#[test]
fn is_values() {
    for (v, expected) in [
        ("null", IsValue::Null),
        ("NULL", IsValue::Null),
        ("true", IsValue::True),
        ("TRUE", IsValue::True),
        ("False", IsValue::False),
        ("unknown", IsValue::Unknown),
    ] {
        assert_eq!(only_filter(&format!("a=is.{v}")), cond("a", false, Operation::Is(expected)));
    }
    assert_eq!(IsValue::Unknown.sql(), "UNKNOWN");
    syntax_err("a=is.maybe", "null, true, false or unknown");
    syntax_err("a=is.not_null", "null, true, false or unknown");
    syntax_err("a=is.", "null, true, false or unknown");
    syntax_err("a=is.nullx", "null, true, false or unknown");
}

#[test]
fn operator_errors() {
    syntax_err("a=foo.1", "unknown operator 'foo'");
    syntax_err("a=EQ.1", "unknown operator 'EQ'");
    syntax_err("a=eq", "after operator 'eq'");
    syntax_err("a=", "missing operator");
    syntax_err("a", "missing operator");
    syntax_err("a=.1", "missing operator");
    syntax_err("a=not.", "missing operator");
    syntax_err("a=not.foo.1", "unknown operator 'foo'");
    syntax_err("n=like(some).{a}", "expected (any) or (all)");
    syntax_err("n=eq(any.{a}", "unbalanced");
    syntax_err("t=fts(eng;lish).cat", "text search configuration");
    unsupported_err("n=neq(any).{a}", "takes no modifier");
    unsupported_err("n=in(any).(1)", "takes no modifier");
    unsupported_err("n=cs(english).{a}", "takes no modifier");
    let e = err("name=foo.1");
    assert!(e.message.contains("filter 'name'"), "{e}");
}

#[test]
fn filter_keys() {
    assert_eq!(only_filter("%22my+col%22=eq.1"), cmp("my col", CmpOp::Eq, "1"));
    assert_eq!(only_filter("%22a.b%22=eq.1"), cmp("a.b", CmpOp::Eq, "1"));
    assert_eq!(only_filter("not=eq.1"), cmp("not", CmpOp::Eq, "1"));
    assert_eq!(q("rel.col=eq.1").embedded[&vec!["rel".to_string()]].filters, vec![cmp("col", CmpOp::Eq, "1")]);
    syntax_err("data->=eq.1", "malformed JSON path");
    syntax_err("data->>a->b=eq.1", "must be the last step");
    syntax_err("=eq.1", "empty parameter name");
    syntax_err("a;b=eq.1", "unexpected");
    syntax_err("%22%22=eq.1", "empty quoted column");
}

#[test]
fn several_filters_and_params_together() {
    let p = q("select=id&a=gt.1&a=lt.5&order=id.desc&limit=3&offset=6&b=is.true");
    assert_eq!(p.filters, vec![cmp("a", CmpOp::Gt, "1"), cmp("a", CmpOp::Lt, "5"), cond("b", false, Operation::Is(IsValue::True)),]);
    assert_eq!(p.select, Some(vec![field("id", None, None)]));
    assert_eq!((p.limit, p.offset, p.order.len()), (Some(3), Some(6), 1));
    assert_eq!(p.on_conflict, None);
}

// ----- logic trees -----

fn logic(negated: bool, op: LogicOp, children: Vec<Filter>) -> Filter {
    Filter::Logic(LogicTree { negated, op, children })
}

#[test]
fn logic_trees() {
    assert_eq!(only_filter("or=(a.eq.1,b.gt.2)"), logic(false, LogicOp::Or, vec![cmp("a", CmpOp::Eq, "1"), cmp("b", CmpOp::Gt, "2")]));
    assert_eq!(
        only_filter("and=(a.eq.1,or(b.eq.2,not.and(c.lt.3,d.is.null)))"),
        logic(
            false,
            LogicOp::And,
            vec![
                cmp("a", CmpOp::Eq, "1"),
                logic(
                    false,
                    LogicOp::Or,
                    vec![
                        cmp("b", CmpOp::Eq, "2"),
                        logic(true, LogicOp::And, vec![cmp("c", CmpOp::Lt, "3"), cond("d", false, Operation::Is(IsValue::Null)),]),
                    ]
                ),
            ]
        )
    );
    assert_eq!(only_filter("not.or=(a.eq.1)"), logic(true, LogicOp::Or, vec![cmp("a", CmpOp::Eq, "1")]));
    assert_eq!(
        only_filter("not.and=(a.not.eq.1,not.or(b.eq.2))"),
        logic(
            true,
            LogicOp::And,
            vec![cond("a", true, Operation::Cmp(CmpOp::Eq, "1".into())), logic(true, LogicOp::Or, vec![cmp("b", CmpOp::Eq, "2")]),]
        )
    );
}

#[test]
fn logic_values() {
    let Filter::Logic(t) = only_filter(
        "or=(n.eq.%22a,b%22,n.eq.%22x)y.z%22,n.eq.%22q%5C%22r%5C%5Cs%22,n.like.*x*,\
         id.in.(1,%222,3%22),tags.eq.{a,b},n.eq.,n.eq.a.b,or.eq.1)",
    ) else {
        panic!("not a logic tree")
    };
    assert_eq!(
        t.children,
        vec![
            cmp("n", CmpOp::Eq, "a,b"),
            cmp("n", CmpOp::Eq, "x)y.z"),
            cmp("n", CmpOp::Eq, "q\"r\\s"),
            cmp("n", CmpOp::Like, "%x%"),
            cond("id", false, Operation::In(strs(&["1", "2,3"]))),
            cmp("tags", CmpOp::Eq, "{a,b}"),
            cmp("n", CmpOp::Eq, ""),
            cmp("n", CmpOp::Eq, "a.b"),
            cmp("or", CmpOp::Eq, "1"),
        ]
    );
}

#[test]
fn logic_whitespace_and_repeats() {
    assert_eq!(only_filter("or=(+a.eq.1+,+b.eq.2)+"), logic(false, LogicOp::Or, vec![cmp("a", CmpOp::Eq, "1 "), cmp("b", CmpOp::Eq, "2")]));
    assert_eq!(q("or=(a.eq.1)&or=(b.eq.2)&and=(c.eq.3)").filters.len(), 3);
}

#[test]
fn logic_errors() {
    syntax_err("or=", "'('");
    syntax_err("or=()", "empty logic group");
    syntax_err("or=(a.eq.1,and())", "empty logic group");
    syntax_err("or=(a.eq.1", "no closing");
    syntax_err("or=(a.eq.1))", "unexpected characters");
    syntax_err("or=a.eq.1", "'('");
    syntax_err("or=(a.eq.%22abc)", "unterminated");
    syntax_err("or=(a.eq.%22a%22b)", "expected ',' or ')' in a logic group");
    syntax_err("or=(a.foo.1)", "unknown operator 'foo'");
    syntax_err("or=(a)", "operator after column 'a'");
    syntax_err("or=(a.eq)", "after operator 'eq'");
    syntax_err("or=(a.eq.1,)", "column name");
    syntax_err("or=(,a.eq.1)", "column name");
    syntax_err("or=(xor(a.eq.1))", "after column 'xor'");
    syntax_err("or=(a.in.(1,2)", "no closing");
    syntax_err("or=(a.in.1)", "'('");
    syntax_err("or=(a.is.maybe)", "null, true, false or unknown");
    syntax_err("or=(t.eq.{a,b)", "'}'");
    syntax_err("or=(a->.eq.1)", "malformed JSON path");
    syntax_err("or=(a.eq(none).{1})", "(any) or (all)");
    let e = err("or=(a.foo.1)");
    assert!(e.message.contains("'or'"), "{e}");
}

fn nested(depth: usize) -> String {
    let mut s = String::from("or=(");
    for _ in 1..depth {
        s.push_str("or(");
    }
    s.push_str("a.eq.1");
    s.push_str(&")".repeat(depth));
    s
}

#[test]
fn logic_depth_limit() {
    assert!(parse_query(&nested(MAX_LOGIC_DEPTH)).is_ok());
    syntax_err(&nested(MAX_LOGIC_DEPTH + 1), "nested too deeply");
    syntax_err(&nested(100_000), "nested too deeply");
    let bomb = format!("and=({}", "not.and(".repeat(1_000_000));
    syntax_err(&bomb, "nested too deeply");
}

// ----- decoding -----

#[test]
fn decoding() {
    assert_eq!(q(""), QueryParams::default());
    assert_eq!(q("&&&"), QueryParams::default());
    assert_eq!(only_filter("a=eq.%zz"), cmp("a", CmpOp::Eq, "%zz"));
    assert_eq!(only_filter("a=eq.100%"), cmp("a", CmpOp::Eq, "100%"));
    assert_eq!(only_filter("a=eq.%4"), cmp("a", CmpOp::Eq, "%4"));
    assert_eq!(only_filter("a=eq.%C3%A9"), cmp("a", CmpOp::Eq, "é"));
    assert_eq!(only_filter("a=eq.x=y"), cmp("a", CmpOp::Eq, "x=y"));
    assert_eq!(only_filter("%61=eq.1"), cmp("a", CmpOp::Eq, "1"));
    assert_eq!(q("select=%2A").select, Some(vec![SelectItem::Star]));
    syntax_err("a=eq.%FF", "UTF-8");
    syntax_err("a=eq.%C3", "UTF-8");
    syntax_err("%FF=eq.1", "UTF-8");
    syntax_err("a=eq.x%00y", "NUL");
    syntax_err("a=eq.x\0y", "NUL");
}

#[test]
fn huge_inputs_are_linear() {
    let list = vec!["%22x,y%22"; 200_000].join(",");
    let p = q(&format!("id=in.({list})"));
    match &p.filters[0] {
        Filter::Condition(Condition { operation: Operation::In(v), .. }) => assert_eq!(v.len(), 200_000),
        other => panic!("{other:?}"),
    }
    let conds = vec!["a.eq.1"; 100_000].join(",");
    assert!(parse_query(&format!("or=({conds})")).is_ok());
    let sel = vec!["a"; 100_000].join(",");
    assert_eq!(q(&format!("select={sel}")).select.unwrap().len(), 100_000);
    let e = err(&format!("a=foo{}.1", "x".repeat(1_000_000)));
    assert!(e.to_string().len() < 1_000, "error text should be shortened");
    syntax_err(&format!("select=\"{}", "a".repeat(1_000_000)), "unterminated");
}

// ----- errors -----

#[test]
fn error_display() {
    let e = err("order=col.sideways");
    assert_eq!(e.details.as_deref(), Some("col.sideways"));
    assert_eq!(e.to_string(), format!("{} (at: col.sideways)", e.message), "Display shows message then details");
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(boxed.to_string().starts_with("invalid 'order' parameter"));
    let plain = syntax("x");
    assert_eq!(plain.to_string(), "x");
}

// ----- Prefer -----

#[test]
fn prefer_basic() {
    let p = parse_prefer("return=representation, count=exact,resolution=merge-duplicates ,missing=default").unwrap();
    assert_eq!(
        p,
        Prefer {
            return_pref: Some(ReturnPref::Representation),
            count: Some(CountPref::Exact),
            resolution: Some(Resolution::MergeDuplicates),
            missing: Some(MissingPref::Default),
            handling: None,
            max_affected: None,
            tx: None,
        }
    );
    assert_eq!(parse_prefer("").unwrap(), Prefer::default());
    assert_eq!(parse_prefer(" , ,").unwrap(), Prefer::default());
    let p = parse_prefer("return=minimal, count=planned, resolution=ignore-duplicates").unwrap();
    assert_eq!(p.return_pref, Some(ReturnPref::Minimal));
    assert_eq!(p.count, Some(CountPref::Planned));
    assert_eq!(p.resolution, Some(Resolution::IgnoreDuplicates));
    let p = parse_prefer("return=headers-only,count=estimated,missing=null,handling=lenient").unwrap();
    assert_eq!(p.return_pref, Some(ReturnPref::HeadersOnly));
    assert_eq!(p.count, Some(CountPref::Estimated));
    assert_eq!(p.missing, Some(MissingPref::Null));
    assert_eq!(p.handling, Some(Handling::Lenient));
}

#[test]
fn prefer_first_wins_and_unknown_ignored() {
    let p = parse_prefer("return=minimal, return=representation").unwrap();
    assert_eq!(p.return_pref, Some(ReturnPref::Minimal));
    let p = parse_prefer("tx=rollback, foo, return=bogus, count=exact").unwrap();
    assert_eq!(p.return_pref, None);
    assert_eq!(p.count, Some(CountPref::Exact));
    assert!(parse_prefer("handling=lenient, whatever").is_ok());
    assert_eq!(parse_prefer("RETURN=MINIMAL").unwrap().return_pref, None);
}

#[test]
fn prefer_max_affected() {
    assert_eq!(parse_prefer("handling=strict,max-affected=5").unwrap().max_affected, Some(5));
    assert_eq!(parse_prefer("max-affected=5, max-affected=9").unwrap().max_affected, Some(5));
    assert_eq!(parse_prefer("max-affected=-1").unwrap().max_affected, None);
    assert!(parse_prefer("handling=strict, max-affected=x").is_err());
}

#[test]
fn prefer_strict() {
    let ok = parse_prefer("handling=strict, return=minimal").unwrap();
    assert_eq!(ok.handling, Some(Handling::Strict));
    for h in
        ["handling=strict, foo", "foo=bar, handling=strict", "handling=strict, return=bogus", "return=minimal, handling=strict, tx=maybe"]
    {
        let e = parse_prefer(h).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidPreference, "{h}");
    }
    let e = parse_prefer("handling=strict, foo, bar").unwrap_err();
    assert_eq!(e.details.as_deref(), Some("foo, bar"));
    // first handling wins
    assert!(parse_prefer("handling=lenient, handling=strict, foo").is_ok());
}

// ----- Range -----

#[test]
fn range_forms() {
    assert_eq!(parse_range("0-9").unwrap(), (0, Some(9)));
    assert_eq!(parse_range("10-").unwrap(), (10, None));
    assert_eq!(parse_range("items=0-24").unwrap(), (0, Some(24)));
    assert_eq!(parse_range(" 5-5 ").unwrap(), (5, Some(5)));
    assert_eq!(parse_range("18446744073709551615-").unwrap(), (u64::MAX, None));
}

#[test]
fn range_errors() {
    let e = parse_range("9-3").unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidRange);
    assert!(e.message.contains("not satisfiable"), "{e}");
    for bad in ["", "abc", "5", "-5", "a-b", "0-9-1", "1.5-2", "0-x", "items=", "bytes=0-9"] {
        let e = parse_range(bad).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax, "{bad:?}: {e}");
    }
    let e = parse_range("0-18446744073709551616").unwrap_err();
    assert!(e.message.contains("too large"), "{e}");
}

#[test]
fn effective_range_intersection() {
    assert_eq!(effective_range(None, None, None), (0, None));
    assert_eq!(effective_range(Some(10), None, None), (0, Some(10)));
    assert_eq!(effective_range(None, Some(5), None), (5, None));
    assert_eq!(effective_range(Some(10), Some(5), None), (5, Some(10)));
    assert_eq!(effective_range(None, None, Some((0, Some(9)))), (0, Some(10)));
    assert_eq!(effective_range(None, None, Some((10, None))), (10, None));
    // header 0-9 ∩ offset 5 limit 10 (rows 5..14) = rows 5..9
    assert_eq!(effective_range(Some(10), Some(5), Some((0, Some(9)))), (5, Some(5)));
    // header 20- ∩ limit 25 (rows 0..24) = rows 20..24
    assert_eq!(effective_range(Some(25), None, Some((20, None))), (20, Some(5)));
    // disjoint windows: nothing
    assert_eq!(effective_range(Some(5), None, Some((10, Some(20)))), (10, Some(0)));
    assert_eq!(effective_range(Some(0), None, None), (0, Some(0)));
    assert_eq!(effective_range(Some(0), Some(7), Some((0, Some(3)))), (7, Some(0)));
    assert_eq!(effective_range(Some(u64::MAX), Some(u64::MAX), Some((0, Some(u64::MAX)))), (u64::MAX, Some(0)));
    let p = q("limit=10&offset=5");
    assert_eq!(p.effective_range(Some((0, Some(9)))), (5, Some(5)));
}

// ----- properties -----

const FRAGMENTS: &[&str] = &[
    "select=",
    "order=",
    "limit=",
    "offset=",
    "on_conflict=",
    "columns=",
    "or=",
    "and=",
    "not.or=",
    "not.and=",
    "a=",
    "%22a b%22=",
    "rel.col=",
    "&",
    "=",
    ".",
    ",",
    "(",
    ")",
    "\"",
    "\\",
    "%22",
    "%2C",
    "%28",
    "%29",
    "%5C",
    "%FF",
    "%00",
    "%",
    "+",
    "*",
    ":",
    "::",
    "->",
    "->>",
    "!",
    "...",
    "{",
    "}",
    "not.",
    "eq.",
    "neq.",
    "gt.",
    "like.",
    "ilike.",
    "in.",
    "is.",
    "null",
    "true",
    "cs.",
    "or(",
    "and(",
    "not.or(",
    "a.eq.1",
    "asc",
    "desc",
    ".nullsfirst",
    "-1",
    "0",
    "18446744073709551616",
    "text",
    "col",
    "é",
    " ",
    "\0",
];

fn near_valid() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..40).prop_map(|v| v.concat())
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = parse_query(&s);
        let _ = parse_prefer(&s);
        let _ = parse_range(&s);
    }

    #[test]
    fn near_valid_queries_never_panic(s in near_valid()) {
        if let Err(e) = parse_query(&s) {
            prop_assert!(!e.message.is_empty());
        }
        let _ = parse_prefer(&s);
        let _ = parse_range(&s);
    }

    #[test]
    fn eq_values_round_trip(v in "[^\u{0}]*") {
        let p = parse_query(&format!("c=eq.{}", encode(&v))).unwrap();
        prop_assert_eq!(p.filters, vec![cmp("c", CmpOp::Eq, &v)]);
    }

    #[test]
    fn quoted_in_lists_round_trip(items in prop::collection::vec("[^\u{0}]*", 0..6)) {
        let list: Vec<String> = items.iter().map(|s| quote(s)).collect();
        let raw = format!("c=in.({})", list.join(","));
        let p = parse_query(&format!("c={}", encode(&raw[2..]))).unwrap();
        prop_assert_eq!(p.filters, vec![cond("c", false, Operation::In(items))]);
    }

    #[test]
    fn quoted_logic_values_round_trip(v in "[^\u{0}]*", neg in any::<bool>()) {
        let not = if neg { "not." } else { "" };
        let raw = format!("(c.{not}eq.{},d.is.null)", quote(&v));
        let p = parse_query(&format!("or={}", encode(&raw))).unwrap();
        let expected = logic(false, LogicOp::Or, vec![
            cond("c", neg, Operation::Cmp(CmpOp::Eq, v.clone())),
            cond("d", false, Operation::Is(IsValue::Null)),
        ]);
        prop_assert_eq!(p.filters, vec![expected]);
    }

    #[test]
    fn depth_limit_is_exact(depth in 1usize..50) {
        let result = parse_query(&nested(depth));
        prop_assert_eq!(result.is_ok(), depth <= MAX_LOGIC_DEPTH);
    }

    #[test]
    fn limits_round_trip(n in any::<u64>()) {
        prop_assert_eq!(parse_query(&format!("limit={n}")).unwrap().limit, Some(n));
        prop_assert_eq!(parse_range(&format!("{n}-")).unwrap(), (n, None));
    }
}

// ----- operators of PostgREST 13, JSON paths -----

fn json_cond(c: &str, path: &[(&str, bool)], operation: Operation) -> Filter {
    let path = path.iter().map(|(k, t)| JsonStep { as_text: *t, key: JsonKey::Key(k.to_string()) }).collect();
    Filter::Condition(Condition { column: col(c), path, negated: false, operation })
}

#[test]
fn every_operator() {
    for (name, op) in [
        ("match", CmpOp::Match),
        ("imatch", CmpOp::IMatch),
        ("isdistinct", CmpOp::IsDistinct),
        ("cs", CmpOp::Cs),
        ("cd", CmpOp::Cd),
        ("ov", CmpOp::Ov),
        ("sl", CmpOp::Sl),
        ("sr", CmpOp::Sr),
        ("nxr", CmpOp::Nxr),
        ("nxl", CmpOp::Nxl),
        ("adj", CmpOp::Adj),
    ] {
        assert_eq!(only_filter(&format!("v={name}.{{1,2}}")), cmp("v", op, "{1,2}"), "{name}");
    }
    assert_eq!(CmpOp::Adj.sql(), "-|-");
    assert_eq!(only_filter("t=fts.cat"), cond("t", false, Operation::Fts(FtsOp::Fts, None, "cat".into())));
    assert_eq!(
        only_filter("t=not.wfts(english).a+b"),
        cond("t", true, Operation::Fts(FtsOp::Websearch, Some("english".into()), "a b".into()))
    );
    assert_eq!(only_filter("t=plfts.a").to_owned(), cond("t", false, Operation::Fts(FtsOp::Plain, None, "a".into())));
    assert_eq!(
        only_filter("t=phfts(simple).a").to_owned(),
        cond("t", false, Operation::Fts(FtsOp::Phrase, Some("simple".into()), "a".into()))
    );
    assert_eq!(only_filter("n=like(any).{a*,*b}"), cond("n", false, Operation::Quant(CmpOp::Like, Quantifier::Any, "{a%,%b}".into())));
    assert_eq!(only_filter("n=eq(all).{1,2}"), cond("n", false, Operation::Quant(CmpOp::Eq, Quantifier::All, "{1,2}".into())));
}

#[test]
fn json_paths_in_filters_logic_and_order() {
    assert_eq!(
        only_filter("attributes->>plan=eq.pro"),
        json_cond("attributes", &[("plan", true)], Operation::Cmp(CmpOp::Eq, "pro".into()))
    );
    assert_eq!(
        only_filter("attributes->a->>b=like.x*"),
        json_cond("attributes", &[("a", false), ("b", true)], Operation::Cmp(CmpOp::Like, "x%".into()))
    );
    let Filter::Logic(t) = only_filter("or=(attributes->>plan.eq.pro,attributes->n.gt.3)") else { panic!() };
    assert_eq!(t.children[0], json_cond("attributes", &[("plan", true)], Operation::Cmp(CmpOp::Eq, "pro".into())));
    let p = q("order=rel(name).desc.nullslast,r2(attributes->>x),id");
    assert_eq!((p.order[0].relation.as_deref(), p.order[0].column.as_str()), (Some("rel"), "name"));
    assert_eq!((p.order[0].direction, p.order[0].nulls), (Direction::Desc, Some(NullsOrder::Last)));
    assert_eq!((p.order[1].relation.as_deref(), p.order[1].path.len()), (Some("r2"), 1));
    assert_eq!(p.order[2].relation, None);
    let p = q("order=attributes->>score.desc.nullslast,arr->0");
    assert_eq!(p.order[0].path, vec![JsonStep { as_text: true, key: JsonKey::Key("score".into()) }]);
    assert_eq!(p.order[0].direction, Direction::Desc);
    assert_eq!(p.order[1].path, vec![JsonStep { as_text: false, key: JsonKey::Index(0) }]);
}
