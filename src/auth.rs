//! JWT verification into a [`Principal`], and minting for `rowcast token`.
//!
//! The algorithm is pinned to the configured key (HS256 for a secret, RS256/ES256 for a public
//! key), `exp`, `aud` and `sub` are required, `nbf` is checked, with 30 s of leeway. Nothing
//! here touches the database: a bad token is refused before a pool connection is taken.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secret::Secret;

pub const LEEWAY_SECS: u64 = 30;

/// How tokens are verified.
#[derive(Clone, Debug)]
pub enum JwtKey {
    /// HS256 shared secret (≥ 32 bytes); also lets `rowcast token` mint tokens.
    Hs256(Secret<Vec<u8>>),
    /// RS256 or ES256 public key in PEM form.
    PublicPem(String),
}

#[derive(Clone, Debug)]
pub struct JwtSettings {
    pub key: JwtKey,
    pub audience: String,
    pub issuer: Option<String>,
}

/// Who is calling, as far as the token says. Roles are never taken from the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    /// The optional `tenant_id` claim: the token may only be used in that tenant.
    pub tenant_claim: Option<Uuid>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    aud: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_id: Option<Uuid>,
}

/// Why a token was refused. The message is safe to show: it never echoes the token or key.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

#[derive(Clone)]
pub struct JwtVerifier {
    decoding: DecodingKey,
    validation: Validation,
    encoding: Option<EncodingKey>,
    audience: String,
    issuer: Option<String>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").field("algorithms", &self.validation.algorithms).finish_non_exhaustive()
    }
}

/// Checks that a PEM holds an RSA or EC public key; returns a message naming the problem.
pub fn check_public_key(pem: &str) -> Result<Algorithm, String> {
    public_key(pem).map(|(_, alg)| alg)
}

fn public_key(pem: &str) -> Result<(DecodingKey, Algorithm), String> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem.as_bytes()) {
        return Ok((key, Algorithm::RS256));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem.as_bytes()) {
        return Ok((key, Algorithm::ES256));
    }
    Err("is not an RSA or EC (P-256) public key in PEM form".into())
}

impl JwtVerifier {
    pub fn new(settings: &JwtSettings) -> Result<Self, String> {
        let (decoding, algorithm, encoding) = match &settings.key {
            JwtKey::Hs256(secret) => {
                (DecodingKey::from_secret(secret.expose()), Algorithm::HS256, Some(EncodingKey::from_secret(secret.expose())))
            }
            JwtKey::PublicPem(pem) => {
                let (key, alg) = public_key(pem)?;
                (key, alg, None)
            }
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        if let Some(iss) = &settings.issuer {
            validation.set_issuer(&[iss.as_str()]);
        }
        Ok(Self { decoding, validation, encoding, audience: settings.audience.clone(), issuer: settings.issuer.clone() })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| AuthError::Invalid(describe(&e)))?;
        let user_id = Uuid::parse_str(&data.claims.sub).map_err(|_| AuthError::Invalid("sub is not a user id (uuid)".into()))?;
        Ok(Principal { user_id, tenant_claim: data.claims.tenant_id, expires_at: data.claims.exp })
    }

    /// Verifies an `Authorization` header value of the form `Bearer <jwt>`.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| AuthError::Invalid("expected `Authorization: Bearer <token>`".into()))?;
        self.verify(token.trim())
    }

    /// Mints a token (HS256 only: with a public key, tokens come from your identity provider).
    pub fn mint(&self, user_id: Uuid, tenant: Option<Uuid>, ttl: std::time::Duration) -> Result<String, String> {
        let key = self.encoding.as_ref().ok_or_else(|| {
            "minting needs ROWCAST_JWT_SECRET (HS256); with ROWCAST_JWT_PUBLIC_KEY, tokens come from your identity provider".to_string()
        })?;
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(ttl.as_secs()).map_err(|_| "ttl is too long".to_string())?;
        let claims = Claims {
            sub: user_id.to_string(),
            exp: now.saturating_add(ttl),
            aud: self.audience.clone(),
            iat: Some(now),
            nbf: None,
            iss: self.issuer.clone(),
            tenant_id: tenant,
        };
        encode(&Header::new(Algorithm::HS256), &claims, key).map_err(|e| format!("could not sign the token: {e}"))
    }
}

fn describe(err: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match err.kind() {
        K::ExpiredSignature => "token expired".into(),
        K::ImmatureSignature => "token not valid yet (nbf)".into(),
        K::InvalidAudience => "wrong audience (aud)".into(),
        K::InvalidIssuer => "wrong issuer (iss)".into(),
        K::InvalidSignature => "bad signature".into(),
        K::InvalidAlgorithm | K::InvalidAlgorithmName => "algorithm not accepted".into(),
        K::MissingRequiredClaim(c) => format!("missing claim {c}"),
        K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => "malformed token".into(),
        _ => "token rejected".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(&JwtSettings {
            key: JwtKey::Hs256(Secret::new(b"0123456789abcdef0123456789abcdef".to_vec())),
            audience: "rowcast".into(),
            issuer: None,
        })
        .unwrap()
    }

    #[test]
    fn minted_tokens_verify() {
        let v = verifier();
        let user = Uuid::new_v4();
        let tenant = Uuid::new_v4();
        let token = v.mint(user, Some(tenant), std::time::Duration::from_secs(60)).unwrap();
        let p = v.verify(&token).unwrap();
        assert_eq!(p.user_id, user);
        assert_eq!(p.tenant_claim, Some(tenant));
    }

    #[test]
    fn header_needs_the_bearer_scheme() {
        let v = verifier();
        assert!(matches!(v.verify_header(None), Err(AuthError::Missing)));
        assert!(matches!(v.verify_header(Some("Basic abc")), Err(AuthError::Invalid(_))));
    }
}
