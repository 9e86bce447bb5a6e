//! JSON paths as SQL: `"t"."attributes"->$1::text->>$2::text`. Keys and indexes are bind
//! parameters, so a path never puts client text into the SQL.

use super::{Param, Params};
use crate::grammar::path::{JsonKey, JsonStep};
use crate::rest::catalog::Column;

/// `lhs` followed by the path's steps, and the SQL type of the result: `text` after `->>`,
/// else the column's own (json or jsonb). On a column that is not json, PostgreSQL refuses
/// the operator (`42883`, 404 as in PostgREST).
pub fn json_path_sql(lhs: String, col: &Column, path: &[JsonStep], params: &mut Params) -> (String, String) {
    let mut expr = lhs;
    for step in path {
        let arrow = if step.as_text { "->>" } else { "->" };
        let key = match &step.key {
            JsonKey::Key(k) => format!("{}::text", params.push(Param::Text(k.clone()))),
            JsonKey::Index(i) => format!("{}::text::int", params.push(Param::Text(i.to_string()))),
        };
        expr = format!("{expr}{arrow}{key}");
    }
    let ty = match path.last() {
        Some(s) if s.as_text => "text".to_string(),
        _ => col.type_sql.clone(),
    };
    (expr, ty)
}
