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
    ConstraintMessage {
        name: "tenants_name_key",
        status: StatusCode::CONFLICT,
        en: "a tenant with this name already exists",
        fr: "un locataire porte déjà ce nom",
    },
    ConstraintMessage {
        name: "users_email_key",
        status: StatusCode::CONFLICT,
        en: "a user with this email already exists",
        fr: "un utilisateur a déjà cette adresse e-mail",
    },
    ConstraintMessage {
        name: "memberships_tenant_user_key",
        status: StatusCode::CONFLICT,
        en: "this user is already a member of the tenant",
        fr: "cet utilisateur est déjà membre du locataire",
    },
    ConstraintMessage {
        name: "users_email_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "email is not a valid address",
        fr: "l'adresse e-mail n'est pas valide",
    },
    ConstraintMessage {
        name: "tenants_name_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a tenant name must have 1 to 200 characters",
        fr: "le nom d'un locataire doit compter de 1 à 200 caractères",
    },
    ConstraintMessage {
        name: "users_name_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a user name must have 1 to 200 characters",
        fr: "le nom d'un utilisateur doit compter de 1 à 200 caractères",
    },
    ConstraintMessage {
        name: "users_platform_role_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "platform_role must be platform_admin or null",
        fr: "platform_role doit valoir platform_admin ou null",
    },
    ConstraintMessage {
        name: "memberships_role_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a membership role must be tenant_admin or tenant_user",
        fr: "le rôle d'un membre doit être tenant_admin ou tenant_user",
    },
    ConstraintMessage {
        name: "memberships_user_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this user does not exist",
        fr: "cet utilisateur n'existe pas",
    },
    ConstraintMessage {
        name: "plans_pkey",
        status: StatusCode::CONFLICT,
        en: "a plan with this id already exists",
        fr: "un forfait porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "plans_code_key",
        status: StatusCode::CONFLICT,
        en: "a plan with this code already exists",
        fr: "un forfait porte déjà ce code",
    },
    ConstraintMessage {
        name: "plans_code_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a plan code is 1 to 63 lowercase letters, digits, - or _",
        fr: "le code d'un forfait compte de 1 à 63 minuscules, chiffres, - ou _",
    },
    ConstraintMessage {
        name: "plans_name_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a plan name must have 1 to 200 characters",
        fr: "le nom d'un forfait doit compter de 1 à 200 caractères",
    },
    ConstraintMessage {
        name: "plans_price_cents_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a plan price cannot be negative",
        fr: "le prix d'un forfait ne peut pas être négatif",
    },
    ConstraintMessage {
        name: "plans_currency_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "currency must be an ISO 4217 code such as EUR",
        fr: "la devise doit être un code ISO 4217, par exemple EUR",
    },
    ConstraintMessage {
        name: "plans_billing_interval_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "billing_interval must be month or year",
        fr: "billing_interval doit valoir month ou year",
    },
    ConstraintMessage {
        name: "limit_policies_pkey",
        status: StatusCode::CONFLICT,
        en: "a limit with this id already exists",
        fr: "une limite porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "limit_policies_plan_metric_key",
        status: StatusCode::CONFLICT,
        en: "this plan already has a limit for this metric",
        fr: "ce forfait a déjà une limite pour cette mesure",
    },
    ConstraintMessage {
        name: "limit_policies_plan_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this plan does not exist",
        fr: "ce forfait n'existe pas",
    },
    ConstraintMessage {
        name: "limit_policies_metric_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a metric name is lowercase letters, digits and _",
        fr: "le nom d'une mesure s'écrit en minuscules, chiffres et _",
    },
    ConstraintMessage {
        name: "limit_policies_limit_value_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a limit cannot be negative",
        fr: "une limite ne peut pas être négative",
    },
    ConstraintMessage {
        name: "limit_policies_period_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "period must be day, month or lifetime",
        fr: "period doit valoir day, month ou lifetime",
    },
    ConstraintMessage {
        name: "subscriptions_pkey",
        status: StatusCode::CONFLICT,
        en: "a subscription with this id already exists",
        fr: "un abonnement porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "subscriptions_plan_id_fkey",
        status: StatusCode::CONFLICT,
        en: "the plan does not exist, or subscriptions still use it",
        fr: "le forfait n'existe pas, ou des abonnements l'utilisent encore",
    },
    ConstraintMessage {
        name: "subscriptions_tenant_live_key",
        status: StatusCode::CONFLICT,
        en: "this tenant already has a live subscription: cancel it first",
        fr: "ce locataire a déjà un abonnement en cours : résiliez-le d'abord",
    },
    ConstraintMessage {
        name: "subscriptions_status_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "status must be trialing, active, past_due or cancelled",
        fr: "status doit valoir trialing, active, past_due ou cancelled",
    },
    ConstraintMessage {
        name: "subscriptions_period_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "the period must end after it starts",
        fr: "la période doit finir après son début",
    },
    ConstraintMessage {
        name: "subscriptions_cancelled_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "cancelled_at is set exactly when the status is cancelled",
        fr: "cancelled_at est renseigné si et seulement si le statut est cancelled",
    },
    ConstraintMessage {
        name: "usages_pkey",
        status: StatusCode::CONFLICT,
        en: "a usage record with this id already exists",
        fr: "un relevé de consommation porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "usages_tenant_metric_period_key",
        status: StatusCode::CONFLICT,
        en: "usage for this metric and period is already recorded",
        fr: "la consommation de cette mesure pour cette période est déjà enregistrée",
    },
    ConstraintMessage {
        name: "usages_metric_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a metric name is lowercase letters, digits and _",
        fr: "le nom d'une mesure s'écrit en minuscules, chiffres et _",
    },
    ConstraintMessage {
        name: "usages_period_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "the period must end after it starts",
        fr: "la période doit finir après son début",
    },
    ConstraintMessage {
        name: "usages_quantity_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a quantity cannot be negative",
        fr: "une quantité ne peut pas être négative",
    },
    ConstraintMessage {
        name: "contacts_pkey",
        status: StatusCode::CONFLICT,
        en: "a contact with this id already exists",
        fr: "un contact porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "contacts_tenant_phone_key",
        status: StatusCode::CONFLICT,
        en: "a contact with this phone number already exists",
        fr: "un contact a déjà ce numéro de téléphone",
    },
    ConstraintMessage {
        name: "contacts_phone_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "phone must be an E.164 number such as +33612345678",
        fr: "le téléphone doit être un numéro E.164, par exemple +33612345678",
    },
    ConstraintMessage {
        name: "contacts_first_name_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a first name has at most 200 characters",
        fr: "un prénom compte au plus 200 caractères",
    },
    ConstraintMessage {
        name: "contacts_last_name_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a last name has at most 200 characters",
        fr: "un nom compte au plus 200 caractères",
    },
    ConstraintMessage {
        name: "contacts_email_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "email is not a valid address",
        fr: "l'adresse e-mail n'est pas valide",
    },
    ConstraintMessage {
        name: "contacts_language_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "language must be a language tag such as en or fr-CA",
        fr: "la langue doit être une étiquette comme en ou fr-CA",
    },
    ConstraintMessage {
        name: "contacts_attributes_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "attributes must be a JSON object",
        fr: "attributes doit être un objet JSON",
    },
    ConstraintMessage {
        name: "groups_pkey",
        status: StatusCode::CONFLICT,
        en: "a group with this id already exists",
        fr: "un groupe porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "groups_tenant_name_key",
        status: StatusCode::CONFLICT,
        en: "a group with this name already exists",
        fr: "un groupe porte déjà ce nom",
    },
    ConstraintMessage {
        name: "groups_name_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a group name must have 1 to 200 characters",
        fr: "le nom d'un groupe doit compter de 1 à 200 caractères",
    },
    ConstraintMessage {
        name: "group_contacts_pkey",
        status: StatusCode::CONFLICT,
        en: "a group membership with this id already exists",
        fr: "une appartenance à un groupe porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "group_contacts_group_contact_key",
        status: StatusCode::CONFLICT,
        en: "this contact is already in the group",
        fr: "ce contact est déjà dans le groupe",
    },
    ConstraintMessage {
        name: "group_contacts_group_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this group does not exist in your tenant",
        fr: "ce groupe n'existe pas chez ce locataire",
    },
    ConstraintMessage {
        name: "group_contacts_contact_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this contact does not exist in your tenant",
        fr: "ce contact n'existe pas chez ce locataire",
    },
    ConstraintMessage {
        name: "message_templates_pkey",
        status: StatusCode::CONFLICT,
        en: "a template with this id already exists",
        fr: "un modèle porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "message_templates_tenant_name_language_key",
        status: StatusCode::CONFLICT,
        en: "a template with this name and language already exists",
        fr: "un modèle porte déjà ce nom dans cette langue",
    },
    ConstraintMessage {
        name: "message_templates_name_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a template name must have 1 to 200 characters",
        fr: "le nom d'un modèle doit compter de 1 à 200 caractères",
    },
    ConstraintMessage {
        name: "message_templates_language_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "language must be a language tag such as en or fr-CA",
        fr: "la langue doit être une étiquette comme en ou fr-CA",
    },
    ConstraintMessage {
        name: "message_templates_category_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "category must be marketing, utility or authentication",
        fr: "category doit valoir marketing, utility ou authentication",
    },
    ConstraintMessage {
        name: "message_templates_body_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a template body must have 1 to 4096 characters",
        fr: "le corps d'un modèle doit compter de 1 à 4096 caractères",
    },
    ConstraintMessage {
        name: "message_templates_variables_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "variables must be at most 50 names made of letters, digits and _",
        fr: "variables doit contenir au plus 50 noms faits de lettres, chiffres et _",
    },
    ConstraintMessage {
        name: "campaigns_pkey",
        status: StatusCode::CONFLICT,
        en: "a campaign with this id already exists",
        fr: "une campagne porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "campaigns_group_id_fkey",
        status: StatusCode::CONFLICT,
        en: "the group does not exist in your tenant, or campaigns still use it",
        fr: "le groupe n'existe pas chez ce locataire, ou des campagnes l'utilisent encore",
    },
    ConstraintMessage {
        name: "campaigns_template_id_fkey",
        status: StatusCode::CONFLICT,
        en: "the template is neither yours nor shared, or campaigns still use it",
        fr: "le modèle n'est ni à vous ni partagé, ou des campagnes l'utilisent encore",
    },
    ConstraintMessage {
        name: "campaigns_name_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a campaign name must have 1 to 200 characters",
        fr: "le nom d'une campagne doit compter de 1 à 200 caractères",
    },
    ConstraintMessage {
        name: "campaigns_status_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "status must be draft, scheduled, running, completed or cancelled",
        fr: "status doit valoir draft, scheduled, running, completed ou cancelled",
    },
    ConstraintMessage {
        name: "campaigns_scheduled_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a scheduled campaign needs scheduled_at",
        fr: "une campagne planifiée doit avoir scheduled_at",
    },
    ConstraintMessage {
        name: "campaigns_ready_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a campaign needs a group and a template before it is scheduled or started",
        fr: "une campagne doit avoir un groupe et un modèle avant d'être planifiée ou lancée",
    },
    ConstraintMessage {
        name: "campaign_recipients_pkey",
        status: StatusCode::CONFLICT,
        en: "a recipient with this id already exists",
        fr: "un destinataire porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "campaign_recipients_campaign_contact_key",
        status: StatusCode::CONFLICT,
        en: "this contact is already a recipient of the campaign",
        fr: "ce contact est déjà destinataire de la campagne",
    },
    ConstraintMessage {
        name: "campaign_recipients_campaign_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this campaign does not exist in your tenant",
        fr: "cette campagne n'existe pas chez ce locataire",
    },
    ConstraintMessage {
        name: "campaign_recipients_contact_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this contact does not exist in your tenant",
        fr: "ce contact n'existe pas chez ce locataire",
    },
    ConstraintMessage {
        name: "campaign_recipients_phone_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "phone must be an E.164 number such as +33612345678",
        fr: "le téléphone doit être un numéro E.164, par exemple +33612345678",
    },
    ConstraintMessage {
        name: "campaign_recipients_variables_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "variables must be a JSON object",
        fr: "variables doit être un objet JSON",
    },
    ConstraintMessage {
        name: "messages_history_pkey",
        status: StatusCode::CONFLICT,
        en: "a message with this id already exists",
        fr: "un message porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "messages_history_tenant_provider_message_id_key",
        status: StatusCode::CONFLICT,
        en: "a message with this provider message id already exists",
        fr: "un message porte déjà cet identifiant de fournisseur",
    },
    ConstraintMessage {
        name: "messages_history_campaign_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this campaign does not exist in your tenant",
        fr: "cette campagne n'existe pas chez ce locataire",
    },
    ConstraintMessage {
        name: "messages_history_recipient_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this campaign recipient does not exist in your tenant",
        fr: "ce destinataire de campagne n'existe pas chez ce locataire",
    },
    ConstraintMessage {
        name: "messages_history_contact_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this contact does not exist in your tenant",
        fr: "ce contact n'existe pas chez ce locataire",
    },
    ConstraintMessage {
        name: "messages_history_direction_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "direction must be outbound or inbound",
        fr: "direction doit valoir outbound ou inbound",
    },
    ConstraintMessage {
        name: "messages_history_status_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "unknown message status",
        fr: "statut de message inconnu",
    },
    ConstraintMessage {
        name: "messages_history_direction_status_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "inbound messages are received; outbound ones never are",
        fr: "un message entrant est reçu ; un message sortant ne l'est jamais",
    },
    ConstraintMessage {
        name: "messages_history_phone_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "phone must be an E.164 number such as +33612345678",
        fr: "le téléphone doit être un numéro E.164, par exemple +33612345678",
    },
    ConstraintMessage {
        name: "messages_history_body_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a message body has at most 65536 characters",
        fr: "le corps d'un message compte au plus 65536 caractères",
    },
    ConstraintMessage {
        name: "messages_history_error_message_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "an error message has at most 4096 characters",
        fr: "un message d'erreur compte au plus 4096 caractères",
    },
    ConstraintMessage {
        name: "webhooks_pkey",
        status: StatusCode::CONFLICT,
        en: "a webhook with this id already exists",
        fr: "un webhook porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "webhooks_name_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a webhook name must have 1 to 200 characters",
        fr: "le nom d'un webhook doit compter de 1 à 200 caractères",
    },
    ConstraintMessage {
        name: "webhooks_url_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "url must be an http(s) URL of at most 2048 characters",
        fr: "url doit être une URL http(s) d'au plus 2048 caractères",
    },
    ConstraintMessage {
        name: "webhooks_events_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "events must list 1 to 100 event types (or *)",
        fr: "events doit lister de 1 à 100 types d'événements (ou *)",
    },
    ConstraintMessage {
        name: "webhooks_secret_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a webhook secret must have 32 to 256 characters",
        fr: "le secret d'un webhook doit compter de 32 à 256 caractères",
    },
    ConstraintMessage {
        name: "webhook_logs_pkey",
        status: StatusCode::CONFLICT,
        en: "a webhook log with this id already exists",
        fr: "un journal de webhook porte déjà cet identifiant",
    },
    ConstraintMessage {
        name: "webhook_logs_webhook_id_fkey",
        status: StatusCode::CONFLICT,
        en: "this webhook does not exist in your tenant",
        fr: "ce webhook n'existe pas chez ce locataire",
    },
    ConstraintMessage {
        name: "webhook_logs_event_type_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "an event type is lowercase letters, digits and _",
        fr: "un type d'événement s'écrit en minuscules, chiffres et _",
    },
    ConstraintMessage {
        name: "webhook_logs_attempt_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "attempt must be between 1 and 100",
        fr: "attempt doit être compris entre 1 et 100",
    },
    ConstraintMessage {
        name: "webhook_logs_status_code_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "status_code must be an HTTP status (100 to 599)",
        fr: "status_code doit être un statut HTTP (100 à 599)",
    },
    ConstraintMessage {
        name: "webhook_logs_duration_ms_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a duration cannot be negative",
        fr: "une durée ne peut pas être négative",
    },
    ConstraintMessage {
        name: "webhook_logs_response_body_check",
        status: StatusCode::UNPROCESSABLE_ENTITY,
        en: "a response body has at most 65536 characters",
        fr: "le corps d'une réponse compte au plus 65536 caractères",
    },
];

pub fn lookup(name: &str) -> Option<&'static ConstraintMessage> {
    CONSTRAINTS.iter().find(|c| c.name == name)
}

/// Every mapped constraint (the catalog test checks each one exists in the schema).
pub fn all() -> &'static [ConstraintMessage] {
    CONSTRAINTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_constraint_is_mapped_once_to_409_or_422() {
        for (i, c) in CONSTRAINTS.iter().enumerate() {
            assert!(CONSTRAINTS[i + 1..].iter().all(|d| d.name != c.name), "{} is mapped twice", c.name);
            assert!(matches!(c.status, StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY), "{}: {}", c.name, c.status);
            let unique_or_fk = ["_key", "_pkey", "_fkey"].iter().any(|s| c.name.ends_with(s));
            assert_eq!(unique_or_fk, c.status == StatusCode::CONFLICT, "{}: unique/FK → 409, check → 422", c.name);
            assert!(!c.en.is_empty() && !c.fr.is_empty(), "{} needs both languages", c.name);
        }
    }
}
