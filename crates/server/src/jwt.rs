//! JSON Web Tokens as Bearer credentials: HS256 with a shared secret, RS256 and ES256 with the
//! public keys of a JWKS file (read again when it changes). A token's scopes and models come
//! from claims ([`JwtConfig::scopes_claim`], [`JwtConfig::models_claim`]); `exp` is required,
//! `nbf`, `aud` and `iss` are checked when configured or present.
//!
//! Only the algorithm a key is for is accepted with it (an RS256 public key is never taken as
//! an HS256 secret), and `none` never is.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

/// How tokens are checked (`ferroserve serve --jwt-*`).
#[derive(Debug, Clone, Default)]
pub struct JwtConfig {
    /// `--jwt-secret-file`: the HS256 secret.
    pub secret_file: Option<PathBuf>,
    /// `--jwt-jwks`: RS256 / ES256 public keys.
    pub jwks_file: Option<PathBuf>,
    /// Audiences one of which a token must name; empty: `aud` is not checked.
    pub audience: Vec<String>,
    /// Issuers one of which a token must name; empty: `iss` is not checked.
    pub issuer: Vec<String>,
    /// The claim holding the scopes.
    pub scopes_claim: String,
    /// The claim holding the models a token may use; `None`: every model.
    pub models_claim: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
}

/// What a valid token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Scope names the token holds (unknown ones kept out by the caller).
    pub scopes: Vec<String>,
    /// The models it may use; `None`: every model.
    pub models: Option<Vec<String>>,
    /// Its `sub` claim.
    pub subject: Option<String>,
}

/// A file as last read: modification time, length, SHA-256 of the content.
type Stamp = (Option<SystemTime>, u64, [u8; 32]);

/// One public key of the JWKS file.
struct PublicKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// The token checker of a server.
pub struct Jwt {
    cfg: JwtConfig,
    secret: Option<DecodingKey>,
    keys: RwLock<Arc<Vec<PublicKey>>>,
    seen: Mutex<Option<Stamp>>,
}

fn shown(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Shortest HS256 secret accepted: the hash's size (RFC 7518, 3.2).
const MIN_SECRET: usize = 32;

fn parse_jwks(text: &str) -> Result<Vec<PublicKey>, String> {
    let set: JwkSet = serde_json::from_str(text)
        .map_err(|e| format!("not a JWKS document ({{\"keys\": [...]}}): {e}"))?;
    let mut keys = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
            (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_)) => Algorithm::RS256,
            (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(_)) => Algorithm::ES256,
            (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
            (None, AlgorithmParameters::EllipticCurve(ec)) if ec.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => {
                return Err(format!(
                    "key {i}: only RS256 (kty RSA) and ES256 (kty EC, crv P-256) keys are accepted"
                ))
            }
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {i}: {e}"))?;
        keys.push(PublicKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        });
    }
    if keys.is_empty() {
        return Err("holds no key".into());
    }
    Ok(keys)
}

/// Names or lists in a claim: a space-separated string (OAuth's `scope`) or an array of strings.
fn names(v: &serde_json::Value) -> Option<Vec<String>> {
    match v {
        serde_json::Value::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
        serde_json::Value::Array(a) => Some(
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

impl Jwt {
    /// Reads the secret and the JWKS file; an error names the flag and what is wrong.
    pub fn new(cfg: JwtConfig) -> Result<Jwt, String> {
        let secret = match &cfg.secret_file {
            Some(p) => {
                let mut bytes =
                    std::fs::read(p).map_err(|e| format!("--jwt-secret-file {}: {e}", shown(p)))?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                if bytes.len() < MIN_SECRET {
                    return Err(format!(
                        "--jwt-secret-file {}: the secret has {} bytes; HS256 needs at least {MIN_SECRET}",
                        shown(p),
                        bytes.len()
                    ));
                }
                Some(DecodingKey::from_secret(&bytes))
            }
            None => None,
        };
        let jwt = Jwt {
            cfg,
            secret,
            keys: RwLock::new(Arc::new(Vec::new())),
            seen: Mutex::new(None),
        };
        jwt.reload()?;
        Ok(jwt)
    }

    /// Whether the JWKS file is followed.
    pub fn follows_file(&self) -> bool {
        self.cfg.jwks_file.is_some()
    }

    /// Reads the JWKS file again if it changed. `Ok(true)`: new keys are in force. An error
    /// leaves the keys in force.
    pub fn reload(&self) -> Result<bool, String> {
        let Some(path) = &self.cfg.jwks_file else {
            return Ok(false);
        };
        let err = |e: &dyn std::fmt::Display| format!("--jwt-jwks {}: {e}", shown(path));
        let meta = std::fs::metadata(path).map_err(|e| err(&e))?;
        let stamp = (meta.modified().ok(), meta.len());
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen
            .as_ref()
            .is_some_and(|(m, l, _)| (*m, *l) == stamp && stamp.0.is_some())
        {
            return Ok(false);
        }
        let text = std::fs::read_to_string(path).map_err(|e| err(&e))?;
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if seen.as_ref().is_some_and(|(_, _, d)| *d == digest) {
            *seen = Some((stamp.0, stamp.1, digest));
            return Ok(false);
        }
        let keys = parse_jwks(&text).map_err(|e| err(&e))?;
        *seen = Some((stamp.0, stamp.1, digest));
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(true)
    }

    /// Whether `token` has a JWT's form (three base64url parts, the first a JSON header): such
    /// a Bearer credential is checked as a token, any other as an API key.
    pub fn looks_like(token: &str) -> bool {
        let mut parts = token.split('.');
        let ok = |p: Option<&str>| {
            p.is_some_and(|p| {
                p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
        };
        token.starts_with("eyJ")
            && ok(parts.next())
            && ok(parts.next())
            && ok(parts.next())
            && parts.next().is_none()
    }

    /// What `token` grants, or why it is refused (for the client: expired, not yet valid, wrong
    /// audience or issuer; otherwise only that it is not valid).
    pub fn verify(&self, token: &str) -> Result<Grant, &'static str> {
        const INVALID: &str = "the token is not valid";
        let header = jsonwebtoken::decode_header(token).map_err(|_| INVALID)?;
        let keys;
        let key = match header.alg {
            Algorithm::HS256 => self.secret.as_ref().ok_or(INVALID)?,
            Algorithm::RS256 | Algorithm::ES256 => {
                keys = self.keys.read().unwrap_or_else(|e| e.into_inner()).clone();
                let mut fitting = keys.iter().filter(|k| k.alg == header.alg);
                let found = match &header.kid {
                    Some(kid) => fitting.find(|k| k.kid.as_deref() == Some(kid)),
                    None => match (fitting.next(), fitting.next()) {
                        (Some(k), None) => Some(k),
                        _ => None,
                    },
                };
                &found.ok_or(INVALID)?.key
            }
            _ => return Err(INVALID),
        };
        let mut v = Validation::new(header.alg);
        v.leeway = self.cfg.leeway;
        v.validate_nbf = true;
        v.validate_exp = true;
        if self.cfg.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.cfg.audience);
        }
        if !self.cfg.issuer.is_empty() {
            v.set_issuer(&self.cfg.issuer);
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet (nbf)",
                K::InvalidAudience => "the token is not for this server (aud)",
                K::InvalidIssuer => "the token's issuer is not accepted (iss)",
                K::MissingRequiredClaim(_) => "the token has no expiry (exp)",
                _ => INVALID,
            }
        })?;
        let claims = &data.claims;
        let scopes = claims
            .get(&self.cfg.scopes_claim)
            .and_then(names)
            .unwrap_or_default();
        let models = self
            .cfg
            .models_claim
            .as_ref()
            .map(|c| claims.get(c).and_then(names).unwrap_or_default());
        let subject = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .map(str::to_string);
        Ok(Grant {
            scopes,
            models,
            subject,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs(dir: &tempfile::TempDir, cfg: JwtConfig) -> Jwt {
        let p = dir.path().join("secret");
        std::fs::write(&p, [SECRET, b"\n"].concat()).unwrap();
        Jwt::new(JwtConfig {
            secret_file: Some(p),
            scopes_claim: "scope".into(),
            leeway: 0,
            ..cfg
        })
        .unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    #[test]
    fn hs256_tokens_grant_their_claims_and_are_refused_for_each_fault() {
        let dir = tempfile::tempdir().unwrap();
        let jwt = hs(
            &dir,
            JwtConfig {
                audience: vec!["ferroserve".into()],
                issuer: vec!["https://idp.test".into()],
                models_claim: Some("models".into()),
                ..Default::default()
            },
        );
        let t = now();
        let good = serde_json::json!({"exp": t + 600, "aud": "ferroserve", "iss": "https://idp.test", "scope": "openid infer read", "models": ["iris"]});
        let g = jwt.verify(&token(good.clone())).unwrap();
        assert_eq!(g.scopes, ["openid", "infer", "read"]);
        assert_eq!(g.models.as_deref(), Some(&["iris".to_string()][..]));
        assert!(Jwt::looks_like(&token(good.clone())));
        assert!(!Jwt::looks_like("fs_live_0123456789"));
        let with = |k: &str, v: serde_json::Value| {
            let mut c = good.clone();
            c[k] = v;
            token(c)
        };
        assert_eq!(
            jwt.verify(&with("exp", (t - 3600).into())).unwrap_err(),
            "the token has expired"
        );
        assert_eq!(
            jwt.verify(&with("nbf", (t + 3600).into())).unwrap_err(),
            "the token is not valid yet (nbf)"
        );
        assert_eq!(
            jwt.verify(&with("aud", "someone-else".into())).unwrap_err(),
            "the token is not for this server (aud)"
        );
        assert_eq!(
            jwt.verify(&with("iss", "https://evil.test".into()))
                .unwrap_err(),
            "the token's issuer is not accepted (iss)"
        );
        let mut no_exp = good.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(jwt.verify(&token(no_exp)).is_err());
        // Signed with another secret; and the signature of one token on another's claims.
        let other = encode(
            &Header::new(Algorithm::HS256),
            &good,
            &EncodingKey::from_secret(b"another secret of at least thirty-two bytes"),
        )
        .unwrap();
        assert_eq!(jwt.verify(&other).unwrap_err(), "the token is not valid");
        let a = token(good.clone());
        let b = with("scope", "admin".into());
        let spliced = format!(
            "{}.{}",
            b.rsplit_once('.').unwrap().0,
            a.rsplit_once('.').unwrap().1
        );
        assert_eq!(jwt.verify(&spliced).unwrap_err(), "the token is not valid");
        // alg none, and an RS256 header with no JWKS.
        let none = format!("eyJhbGciOiJub25lIn0.{}.", a.split('.').nth(1).unwrap());
        assert!(jwt.verify(&none).is_err());
        let rs = format!("eyJhbGciOiJSUzI1NiJ9.{}", a.split_once('.').unwrap().1);
        assert!(jwt.verify(&rs).is_err());
    }

    #[test]
    fn a_short_secret_and_a_bad_jwks_are_refused_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "short\n").unwrap();
        let e = Jwt::new(JwtConfig {
            secret_file: Some(p),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(
            e.contains("--jwt-secret-file") && e.contains("at least 32"),
            "{e}"
        );
        let j = dir.path().join("jwks.json");
        std::fs::write(&j, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();
        let e = Jwt::new(JwtConfig {
            jwks_file: Some(j.clone()),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(e.contains("--jwt-jwks") && e.contains("RS256"), "{e}");
        std::fs::write(&j, "not json").unwrap();
        let e = Jwt::new(JwtConfig {
            jwks_file: Some(j),
            ..Default::default()
        })
        .err()
        .unwrap();
        assert!(e.contains("JWKS"), "{e}");
    }
}
