//! JWT verification into a [`Principal`], and minting for `rowcast token`.
//!
//! The algorithm is pinned to the configured key (HS256 for a secret, RS256/ES256 for a public
//! key), `exp`, `aud` and `sub` are required, `nbf` is checked, with 30 s of leeway. Nothing
//! here touches the database: a bad token is refused before a pool connection is taken.
//!
//! Verified tokens are remembered (as PostgREST does) for their lifetime, keyed on the whole
//! token text, in a bounded cache: a client sending the same token on every request pays the
//! signature and JSON work once. A remembered token is still refused the second its `exp`
//! (plus the leeway) passes, with the verifier's own "token expired".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode, get_current_timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secret::Secret;

pub const LEEWAY_SECS: u64 = 30;

/// Verified tokens remembered at most; past it, expired entries go, then all of them.
pub const TOKEN_CACHE_MAX: usize = 4096;

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
    /// Shared by clones: they verify with the same key.
    verified: Arc<TokenCache>,
}

/// Tokens that passed verification, keyed on their whole text (signature included, so a
/// token differing in any byte is verified afresh), with what they said.
#[derive(Default)]
struct TokenCache {
    entries: Mutex<HashMap<Box<str>, Principal>>,
}

/// Whether a token expiring at `exp` is still accepted at `now`: the verifier's own rule
/// (`exp >= now - leeway`).
fn unexpired(exp: i64, now: u64) -> bool {
    i128::from(exp) >= i128::from(now) - i128::from(LEEWAY_SECS)
}

impl TokenCache {
    /// `Some(Ok)` for a remembered, unexpired token; `Some(Err)` for a remembered one that
    /// has expired since (forgotten now); `None` when it was never verified.
    fn get(&self, token: &str, now: u64) -> Option<Result<Principal, AuthError>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let principal = entries.get(token)?;
        if unexpired(principal.expires_at, now) {
            return Some(Ok(principal.clone()));
        }
        entries.remove(token);
        Some(Err(AuthError::Invalid(describe_kind(&jsonwebtoken::errors::ErrorKind::ExpiredSignature))))
    }

    fn put(&self, token: &str, principal: &Principal, now: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= TOKEN_CACHE_MAX {
            entries.retain(|_, p| unexpired(p.expires_at, now));
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(token.into(), principal.clone());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
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
        Ok(Self {
            decoding,
            validation,
            encoding,
            audience: settings.audience.clone(),
            issuer: settings.issuer.clone(),
            verified: Arc::default(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_at(token, get_current_timestamp())
    }

    /// [`Self::verify`] with the cache consulted at `now` (seconds since the epoch); a token
    /// not remembered is verified in full (against the real clock).
    fn verify_at(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        if let Some(known) = self.verified.get(token, now) {
            return known;
        }
        let principal = self.verify_uncached(token)?;
        self.verified.put(token, &principal, now);
        Ok(principal)
    }

    fn verify_uncached(&self, token: &str) -> Result<Principal, AuthError> {
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
    describe_kind(err.kind())
}

fn describe_kind(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
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
    fn a_remembered_token_is_refused_once_it_expires() {
        let v = verifier();
        let user = Uuid::new_v4();
        let token = v.mint(user, None, std::time::Duration::from_secs(60)).unwrap();
        let now = get_current_timestamp();
        let first = v.verify_at(&token, now).unwrap();
        assert_eq!(v.verified.len(), 1, "the verified token is remembered");
        let exp = u64::try_from(first.expires_at).unwrap();
        // From the cache, up to the last second the verifier itself accepts (exp + leeway)…
        assert_eq!(v.verify_at(&token, exp + LEEWAY_SECS).unwrap(), first);
        // …and refused, with the verifier's own message, one second later.
        match v.verify_at(&token, exp + LEEWAY_SECS + 1) {
            Err(AuthError::Invalid(why)) => assert_eq!(why, "token expired"),
            other => panic!("an expired token was accepted through the cache: {other:?}"),
        }
        assert_eq!(v.verified.len(), 0, "the expired token is forgotten");
    }

    #[test]
    fn the_cache_keys_on_the_whole_token_and_stays_bounded() {
        let v = verifier();
        let token = v.mint(Uuid::new_v4(), None, std::time::Duration::from_secs(60)).unwrap();
        v.verify(&token).unwrap();
        // Another signature on the same header and claims is verified afresh, and refused.
        let (head, sig) = token.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
        let forged = format!("{head}.{flipped}{}", &sig[1..]);
        assert!(matches!(v.verify(&forged), Err(AuthError::Invalid(_))));
        assert!(matches!(v.verify(&format!("{token} ")), Err(AuthError::Invalid(_))), "trailing bytes are another token");
        for _ in 0..TOKEN_CACHE_MAX + 10 {
            let t = v.mint(Uuid::new_v4(), None, std::time::Duration::from_secs(60)).unwrap();
            v.verify(&t).unwrap();
        }
        assert!(v.verified.len() <= TOKEN_CACHE_MAX);
    }

    #[test]
    fn header_needs_the_bearer_scheme() {
        let v = verifier();
        assert!(matches!(v.verify_header(None), Err(AuthError::Missing)));
        assert!(matches!(v.verify_header(Some("Basic abc")), Err(AuthError::Invalid(_))));
    }
}
