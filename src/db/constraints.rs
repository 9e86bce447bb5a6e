//! Named constraints and the client messages (English, French) and statuses they map to.
//! One entry per constraint a client can trip; unnamed ones fall back to the SQLSTATE.

use warp::http::StatusCode;

/// A named constraint and the client message it maps to.
pub struct ConstraintMessage {
    pub name: &'static str,
    pub status: StatusCode,
    pub en: &'static str,
    pub fr: &'static str,
}

const CONSTRAINTS: &[ConstraintMessage] = &[
    ConstraintMessage { name: "tenants_name_key", status: StatusCode::CONFLICT, en: "a tenant with this name already exists", fr: "un locataire porte déjà ce nom" },
    ConstraintMessage { name: "users_email_key", status: StatusCode::CONFLICT, en: "a user with this email already exists", fr: "un utilisateur a déjà cette adresse e-mail" },
    ConstraintMessage { name: "memberships_tenant_user_key", status: StatusCode::CONFLICT, en: "this user is already a member of the tenant", fr: "cet utilisateur est déjà membre du locataire" },
    ConstraintMessage { name: "users_email_check", status: StatusCode::UNPROCESSABLE_ENTITY, en: "email is not a valid address", fr: "l'adresse e-mail n'est pas valide" },
];


pub fn lookup(name: &str) -> Option<&'static ConstraintMessage> {
    CONSTRAINTS.iter().find(|c| c.name == name)
}
