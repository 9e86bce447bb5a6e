//! Relationships between exposed tables, detected from the catalog's foreign keys as
//! PostgREST's schema cache does, and resolved by name and hint for `select=…rel(…)`.
//!
//! Every foreign key `T(cols) → R(ref)` between two exposed tables gives two relationships:
//! many-to-one `T → R` and one-to-many `R → T` — or one-to-one both ways when `cols` are a
//! primary or unique key of `T`. A table `J` with two different foreign keys `J → A` and
//! `J → B` whose columns together are exactly a primary or unique key of `J` is a junction:
//! `A → B` and `B → A` are many-to-many through `J`. (PostgREST asks for the primary key;
//! rowcast's junctions have an `id` key and a composite `UNIQUE (tenant_id, a_id, b_id)`,
//! so a unique key counts too. "Exactly" keeps `tenant_id → tenants` from making every
//! tenant table a junction to `tenants`.)
//!
//! Composite tenant keys: a foreign key `(tenant_id, group_id) → groups(tenant_id, id)` is
//! named in a column hint (`groups!group_id`) or as an embed target (`group_id(*)`) by its
//! one column that is not `tenant_id`.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use warp::http::StatusCode;

use crate::error::ApiError;

/// The shared column of composite tenant keys, ignored when a foreign key is named by column.
const TENANT_COLUMN: &str = "tenant_id";

/// A foreign key as read from `pg_constraint`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub table: String,
    pub columns: Vec<String>,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
}

/// A primary or unique key constraint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct UniqueKey {
    pub table: String,
    pub columns: Vec<String>,
}

/// Column pairs `(origin column, target column)` of a direct relationship, or
/// `(junction column, side column)` of one side of a junction.
pub type Pairs = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Junction {
    pub table: String,
    /// Junction → origin.
    pub source_constraint: String,
    pub source: Pairs,
    /// Junction → target.
    pub target_constraint: String,
    pub target: Pairs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cardinality {
    /// The origin holds the foreign key: at most one target row.
    ManyToOne {
        constraint: String,
        pairs: Pairs,
    },
    /// The target holds the foreign key.
    OneToMany {
        constraint: String,
        pairs: Pairs,
    },
    /// A foreign key over a unique key; `parent`: the origin is the referenced side.
    OneToOne {
        constraint: String,
        pairs: Pairs,
        parent: bool,
    },
    ManyToMany(Junction),
}

/// A way to reach `target` rows from one `origin` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    pub origin: String,
    pub target: String,
    pub cardinality: Cardinality,
}

impl Relationship {
    pub fn is_to_one(&self) -> bool {
        matches!(self.cardinality, Cardinality::ManyToOne { .. } | Cardinality::OneToOne { .. })
    }

    fn is_self(&self) -> bool {
        self.origin == self.target
    }

    /// The constraint name of a direct relationship.
    fn constraint(&self) -> Option<&str> {
        match &self.cardinality {
            Cardinality::ManyToOne { constraint, .. }
            | Cardinality::OneToMany { constraint, .. }
            | Cardinality::OneToOne { constraint, .. } => Some(constraint),
            Cardinality::ManyToMany(_) => None,
        }
    }

    fn pairs(&self) -> Option<&Pairs> {
        match &self.cardinality {
            Cardinality::ManyToOne { pairs, .. } | Cardinality::OneToMany { pairs, .. } | Cardinality::OneToOne { pairs, .. } => {
                Some(pairs)
            }
            Cardinality::ManyToMany(_) => None,
        }
    }

    /// The one column pair of the key that is not the tenant column (or the only pair).
    fn key_pair(&self) -> Option<&(String, String)> {
        let pairs = self.pairs()?;
        let mut own = pairs.iter().filter(|(a, b)| !(a == TENANT_COLUMN && b == TENANT_COLUMN));
        match (own.next(), own.next()) {
            (Some(p), None) => Some(p),
            _ => None,
        }
    }

    /// The key column on the side that holds the foreign key.
    fn fk_column(&self) -> Option<&str> {
        let (origin, target) = self.key_pair()?;
        match &self.cardinality {
            Cardinality::ManyToOne { .. } | Cardinality::OneToOne { parent: false, .. } => Some(origin),
            _ => Some(target),
        }
    }

    /// The key column on the referenced side.
    fn referenced_column(&self) -> Option<&str> {
        let (origin, target) = self.key_pair()?;
        match &self.cardinality {
            Cardinality::ManyToOne { .. } | Cardinality::OneToOne { parent: false, .. } => Some(target),
            _ => Some(origin),
        }
    }

    /// PostgREST's compressed description, for the details of a `PGRST201`.
    fn describe(&self) -> serde_json::Value {
        let list = |v: Vec<&str>| format!("({})", v.join(", "));
        let (cardinality, relationship) = match &self.cardinality {
            Cardinality::ManyToMany(j) => (
                "many-to-many",
                format!(
                    "{} using {}{} and {}{}",
                    j.table,
                    j.source_constraint,
                    list(j.source.iter().map(|p| p.0.as_str()).collect()),
                    j.target_constraint,
                    list(j.target.iter().map(|p| p.0.as_str()).collect())
                ),
            ),
            other => {
                let (name, constraint, pairs) = match other {
                    Cardinality::ManyToOne { constraint, pairs } => ("many-to-one", constraint, pairs),
                    Cardinality::OneToMany { constraint, pairs } => ("one-to-many", constraint, pairs),
                    Cardinality::OneToOne { constraint, pairs, .. } => ("one-to-one", constraint, pairs),
                    Cardinality::ManyToMany(_) => unreachable!("handled above"),
                };
                let origin = list(pairs.iter().map(|p| p.0.as_str()).collect());
                let target = list(pairs.iter().map(|p| p.1.as_str()).collect());
                (name, format!("{constraint} using {}{origin} and {}{target}", self.origin, self.target))
            }
        };
        serde_json::json!({
            "cardinality": cardinality,
            "embedding": format!("{} with {}", self.origin, self.target),
            "relationship": relationship,
        })
    }

    /// `'target!hint'` that picks this relationship.
    fn hint_text(&self) -> String {
        match &self.cardinality {
            Cardinality::ManyToMany(j) => format!("'{}!{}'", self.target, j.table),
            _ => format!("'{}!{}'", self.target, self.constraint().unwrap_or_default()),
        }
    }
}

/// Every relationship between exposed tables, by origin table.
#[derive(Debug, Default)]
pub struct Relationships {
    by_origin: HashMap<String, Vec<Relationship>>,
}

fn zip(a: &[String], b: &[String]) -> Pairs {
    a.iter().cloned().zip(b.iter().cloned()).collect()
}

impl Relationships {
    /// Detects relationships from the foreign keys and keys of the `exposed` tables.
    pub fn detect(fks: &[ForeignKey], keys: &[UniqueKey], exposed: impl Fn(&str) -> bool) -> Relationships {
        let fks: Vec<&ForeignKey> = fks.iter().filter(|f| exposed(&f.table) && exposed(&f.ref_table)).collect();
        let is_key = |table: &str, cols: &BTreeSet<&str>| {
            keys.iter().any(|k| k.table == table && k.columns.len() == cols.len() && k.columns.iter().all(|c| cols.contains(c.as_str())))
        };
        let mut rels = Vec::new();
        for fk in &fks {
            let forward = zip(&fk.columns, &fk.ref_columns);
            let backward = zip(&fk.ref_columns, &fk.columns);
            let cols: BTreeSet<&str> = fk.columns.iter().map(String::as_str).collect();
            let constraint = fk.name.clone();
            let (there, back) = match is_key(&fk.table, &cols) {
                true => (
                    Cardinality::OneToOne { constraint: constraint.clone(), pairs: forward, parent: false },
                    Cardinality::OneToOne { constraint, pairs: backward, parent: true },
                ),
                false => (
                    Cardinality::ManyToOne { constraint: constraint.clone(), pairs: forward },
                    Cardinality::OneToMany { constraint, pairs: backward },
                ),
            };
            rels.push(Relationship { origin: fk.table.clone(), target: fk.ref_table.clone(), cardinality: there });
            rels.push(Relationship { origin: fk.ref_table.clone(), target: fk.table.clone(), cardinality: back });
        }
        for a in &fks {
            for b in fks.iter().filter(|b| b.table == a.table && b.name != a.name) {
                let union: BTreeSet<&str> = a.columns.iter().chain(&b.columns).map(String::as_str).collect();
                if !is_key(&a.table, &union) {
                    continue;
                }
                let junction = Junction {
                    table: a.table.clone(),
                    source_constraint: a.name.clone(),
                    source: zip(&a.columns, &a.ref_columns),
                    target_constraint: b.name.clone(),
                    target: zip(&b.columns, &b.ref_columns),
                };
                rels.push(Relationship {
                    origin: a.ref_table.clone(),
                    target: b.ref_table.clone(),
                    cardinality: Cardinality::ManyToMany(junction),
                });
            }
        }
        let mut by_origin: HashMap<String, Vec<Relationship>> = HashMap::new();
        for r in rels {
            by_origin.entry(r.origin.clone()).or_default().push(r);
        }
        Relationships { by_origin }
    }

    pub fn from_origin(&self, origin: &str) -> &[Relationship] {
        self.by_origin.get(origin).map(Vec::as_slice).unwrap_or_default()
    }

    /// The one relationship `origin → name` (a table, constraint or column name), narrowed
    /// by `hint` (a constraint, a column of either side, or a junction table), as PostgREST.
    pub fn find(&self, origin: &str, name: &str, hint: Option<&str>) -> Result<&Relationship, ApiError> {
        let found: Vec<&Relationship> = self.from_origin(origin).iter().filter(|r| matches(r, name, hint)).collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => Err(no_relationship(origin, name, hint)),
            many => Err(ambiguous(origin, name, many)),
        }
    }
}

fn matches(r: &Relationship, name: &str, hint: Option<&str>) -> bool {
    let direct = r.constraint().is_some();
    let m2o = matches!(r.cardinality, Cardinality::ManyToOne { .. });
    let o2m = matches!(r.cardinality, Cardinality::OneToMany { .. });
    if r.is_self() {
        // One foreign key, two relationships: the table name gives the children (one-to-many),
        // the foreign key column the parent (many-to-one).
        return match hint {
            None => (name == r.target && o2m) || (m2o && r.fk_column() == Some(name)),
            Some(h) => name == r.target && o2m && (r.constraint() == Some(h) || r.fk_column() == Some(h)),
        };
    }
    match hint {
        None => name == r.target || (direct && (r.constraint() == Some(name) || (m2o && r.fk_column() == Some(name)))),
        Some(h) => {
            name == r.target
                && (r.constraint() == Some(h)
                    || r.fk_column() == Some(h)
                    || r.referenced_column() == Some(h)
                    || matches!(&r.cardinality, Cardinality::ManyToMany(j) if j.table == h))
        }
    }
}

/// 400 `PGRST200`.
pub fn no_relationship(origin: &str, name: &str, hint: Option<&str>) -> ApiError {
    let using = hint.map(|h| format!("' using the hint '{h}")).unwrap_or_default();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "PGRST200",
        format!("Could not find a relationship between '{origin}' and '{name}' in the schema cache"),
        format!("aucune relation trouvée entre '{origin}' et '{name}'"),
    )
    .with_details(format!(
        "Searched for a foreign key relationship between '{origin}' and '{name}{using}' in the schema 'public', but no matches were found."
    ))
}

/// 300 `PGRST201`, the candidates in the details: a JSON array of
/// `{cardinality, embedding, relationship}`, as PostgREST.
fn ambiguous(origin: &str, name: &str, rels: &[&Relationship]) -> ApiError {
    let details: Vec<serde_json::Value> = rels.iter().map(|r| r.describe()).collect();
    let hints: Vec<String> = rels.iter().map(|r| r.hint_text()).collect();
    ApiError::new(
        StatusCode::MULTIPLE_CHOICES,
        "PGRST201",
        format!("Could not embed because more than one relationship was found for '{origin}' and '{name}'"),
        format!("plusieurs relations possibles entre '{origin}' et '{name}'"),
    )
    .with_details_json(serde_json::Value::from(details))
    .with_hint(format!(
        "Try changing '{name}' to one of the following: {}. Find the desired relationship in the 'details' key.",
        hints.join(", ")
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn fk(name: &str, table: &str, cols: &[&str], ref_table: &str, ref_cols: &[&str]) -> ForeignKey {
        let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect();
        ForeignKey { name: name.into(), table: table.into(), columns: s(cols), ref_table: ref_table.into(), ref_columns: s(ref_cols) }
    }

    fn key(table: &str, cols: &[&str]) -> UniqueKey {
        UniqueKey { table: table.into(), columns: cols.iter().map(|c| c.to_string()).collect() }
    }

    /// rowcast's own shape: composite tenant keys, a junction with an `id` primary key.
    pub fn rowcast_keys() -> (Vec<ForeignKey>, Vec<UniqueKey>) {
        let tid = |t: &str| fk(&format!("{t}_tenant_id_fkey"), t, &["tenant_id"], "tenants", &["id"]);
        let fks = vec![
            tid("contacts"),
            tid("groups"),
            tid("group_contacts"),
            tid("campaigns"),
            tid("campaign_recipients"),
            tid("messages_history"),
            tid("webhooks"),
            fk("group_contacts_group_id_fkey", "group_contacts", &["tenant_id", "group_id"], "groups", &["tenant_id", "id"]),
            fk("group_contacts_contact_id_fkey", "group_contacts", &["tenant_id", "contact_id"], "contacts", &["tenant_id", "id"]),
            fk("campaigns_group_id_fkey", "campaigns", &["tenant_id", "group_id"], "groups", &["tenant_id", "id"]),
            fk("campaigns_template_id_fkey", "campaigns", &["template_id"], "message_templates", &["id"]),
            fk(
                "campaign_recipients_campaign_id_fkey",
                "campaign_recipients",
                &["tenant_id", "campaign_id"],
                "campaigns",
                &["tenant_id", "id"],
            ),
            fk(
                "campaign_recipients_contact_id_fkey",
                "campaign_recipients",
                &["tenant_id", "contact_id"],
                "contacts",
                &["tenant_id", "id"],
            ),
            fk("messages_history_campaign_id_fkey", "messages_history", &["tenant_id", "campaign_id"], "campaigns", &["tenant_id", "id"]),
            fk("messages_history_contact_id_fkey", "messages_history", &["tenant_id", "contact_id"], "contacts", &["tenant_id", "id"]),
            fk("employees_manager_id_fkey", "employees", &["tenant_id", "manager_id"], "employees", &["tenant_id", "id"]),
            fk("profiles_contact_id_fkey", "profiles", &["contact_id"], "contacts", &["id"]),
            fk("hidden_fkey", "contacts", &["x"], "secret_table", &["id"]),
        ];
        let mut keys = vec![
            key("group_contacts", &["tenant_id", "group_id", "contact_id"]),
            key("campaign_recipients", &["tenant_id", "campaign_id", "contact_id"]),
            key("profiles", &["contact_id"]),
        ];
        for t in ["tenants", "contacts", "groups", "group_contacts", "campaigns", "campaign_recipients", "messages_history", "employees"] {
            keys.push(key(t, &["id"]));
            keys.push(key(t, &["tenant_id", "id"]));
        }
        (fks, keys)
    }

    fn rels() -> Relationships {
        let (fks, keys) = rowcast_keys();
        Relationships::detect(&fks, &keys, |t| t != "secret_table")
    }

    fn kind(r: &Relationship) -> &'static str {
        match r.cardinality {
            Cardinality::ManyToOne { .. } => "m2o",
            Cardinality::OneToMany { .. } => "o2m",
            Cardinality::OneToOne { .. } => "o2o",
            Cardinality::ManyToMany(_) => "m2m",
        }
    }

    #[test]
    fn foreign_keys_give_many_to_one_and_one_to_many() {
        let r = rels();
        let up = r.find("campaigns", "groups", None).unwrap();
        assert_eq!(kind(up), "m2o");
        assert!(up.is_to_one());
        assert_eq!(
            up.cardinality,
            Cardinality::ManyToOne {
                constraint: "campaigns_group_id_fkey".into(),
                pairs: vec![("tenant_id".into(), "tenant_id".into()), ("group_id".into(), "id".into())]
            }
        );
        let down = r.find("groups", "campaigns", None).unwrap();
        assert_eq!(kind(down), "o2m");
        assert!(!down.is_to_one());
        assert_eq!(kind(r.find("campaigns", "message_templates", None).unwrap()), "m2o");
    }

    #[test]
    fn junctions_with_a_composite_unique_key_give_many_to_many() {
        let r = rels();
        let m = r.find("groups", "contacts", None).unwrap();
        let Cardinality::ManyToMany(j) = &m.cardinality else { panic!("{m:?}") };
        assert_eq!(j.table, "group_contacts");
        assert_eq!(j.source, vec![("tenant_id".into(), "tenant_id".into()), ("group_id".into(), "id".into())]);
        assert_eq!(j.target, vec![("tenant_id".into(), "tenant_id".into()), ("contact_id".into(), "id".into())]);
        assert_eq!(kind(r.find("contacts", "groups", None).unwrap()), "m2m");
        // tenant_id → tenants is not a junction side: groups → tenants stays the direct key
        assert_eq!(kind(r.find("groups", "tenants", None).unwrap()), "m2o");
        // messages_history has no key over (campaign, contact): not a junction
        assert_eq!(kind(r.find("campaigns", "contacts", None).unwrap()), "m2m");
    }

    #[test]
    fn unique_foreign_keys_are_one_to_one_both_ways() {
        let r = rels();
        assert_eq!(kind(r.find("profiles", "contacts", None).unwrap()), "o2o");
        let back = r.find("contacts", "profiles", None).unwrap();
        assert_eq!(kind(back), "o2o");
        assert!(back.is_to_one());
    }

    #[test]
    fn constraint_and_column_names_pick_a_relationship() {
        let r = rels();
        assert_eq!(kind(r.find("campaigns", "campaigns_group_id_fkey", None).unwrap()), "m2o");
        assert_eq!(r.find("campaigns", "group_id", None).unwrap().target, "groups");
        assert_eq!(kind(r.find("campaigns", "groups", Some("campaigns_group_id_fkey")).unwrap()), "m2o");
        assert_eq!(kind(r.find("campaigns", "groups", Some("group_id")).unwrap()), "m2o");
        assert_eq!(kind(r.find("groups", "contacts", Some("group_contacts")).unwrap()), "m2m");
        assert_eq!(kind(r.find("groups", "campaigns", Some("campaigns_group_id_fkey")).unwrap()), "o2m");
    }

    #[test]
    fn ambiguous_relationships_are_a_300_listing_the_candidates() {
        let r = rels();
        // contacts → campaigns: through campaign_recipients (m2m) only — messages_history is no junction
        assert_eq!(kind(r.find("contacts", "campaigns", None).unwrap()), "m2m");
        // campaigns → campaign_recipients: one foreign key, fine; contacts → tenants: direct only
        assert_eq!(kind(r.find("contacts", "tenants", None).unwrap()), "m2o");
        let (fks, keys) = rowcast_keys();
        let mut fks = fks;
        fks.push(fk("campaigns_backup_group_id_fkey", "campaigns", &["tenant_id", "backup_group_id"], "groups", &["tenant_id", "id"]));
        let r = Relationships::detect(&fks, &keys, |_| true);
        let e = r.find("campaigns", "groups", None).unwrap_err();
        assert_eq!(e.status.as_u16(), 300);
        assert_eq!(e.code, "PGRST201");
        let details = e.details_json.clone().unwrap();
        assert!(e.details.is_none());
        assert_eq!(details.as_array().unwrap().len(), 2);
        assert_eq!(details[0]["cardinality"], "many-to-one");
        assert_eq!(details[0]["embedding"], "campaigns with groups");
        assert_eq!(details[0]["relationship"], "campaigns_group_id_fkey using campaigns(tenant_id, group_id) and groups(tenant_id, id)");
        assert!(e.hint.unwrap().contains("'groups!campaigns_backup_group_id_fkey'"));
        assert_eq!(kind(r.find("campaigns", "groups", Some("backup_group_id")).unwrap()), "m2o");
        // tenant_id names no key of its own
        assert_eq!(r.find("campaigns", "groups", Some("tenant_id")).unwrap_err().code, "PGRST200");
    }

    #[test]
    fn self_references_give_parent_by_column_and_children_by_table() {
        let r = rels();
        assert_eq!(kind(r.find("employees", "manager_id", None).unwrap()), "m2o");
        assert_eq!(kind(r.find("employees", "employees", None).unwrap()), "o2m");
        assert_eq!(kind(r.find("employees", "employees", Some("manager_id")).unwrap()), "o2m");
        assert_eq!(kind(r.find("employees", "employees", Some("employees_manager_id_fkey")).unwrap()), "o2m");
    }

    #[test]
    fn unknown_and_unexposed_relationships_are_pgrst200() {
        let r = rels();
        let e = r.find("contacts", "secret_table", None).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_str()), (400, "PGRST200"));
        assert!(e.message.contains("'contacts' and 'secret_table'"), "{}", e.message);
        let e = r.find("campaigns", "groups", Some("nope")).unwrap_err();
        assert!(e.details.unwrap().contains("using the hint 'nope'"));
        assert_eq!(r.find("webhooks", "contacts", None).unwrap_err().code, "PGRST200");
    }
}
