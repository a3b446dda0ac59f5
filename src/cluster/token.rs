//! Join tokens: `ec1.<ca-fingerprint>.<token-id>.<secret>`.
//!
//! The fingerprint lets the joining node check it reached *this* cluster
//! before it sends anything; the secret lets the cluster trust the node. Only
//! the secret's hash is stored. Pure code: the caller passes the clock and
//! the random bytes.

use std::fmt;

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::records::TokenRecord;

const PREFIX: &str = "ec1";
const TOKEN_ID_BYTES: usize = 4;
const SECRET_BYTES: usize = 16;
/// Random bytes a new token is made of: its id, then its secret.
pub const TOKEN_RANDOM_BYTES: usize = TOKEN_ID_BYTES + SECRET_BYTES;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed join token: {0}; a token looks like ec1.<64 hex>.<8 hex>.<32 hex> as printed by `edgectl init` or `edgectl token create`")]
    Malformed(&'static str),
    #[error("join token {0} is not known to this cluster")]
    Unknown(String),
    #[error("join token {0} has been revoked; create a new one with `edgectl token create`")]
    Revoked(String),
    #[error(
        "join token {id} expired {ago_secs} s ago; create a new one with `edgectl token create`"
    )]
    Expired { id: String, ago_secs: u64 },
    #[error("join token {0} has the wrong secret")]
    WrongSecret(String),
}

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_fingerprint: String,
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, even in debug logs.
        write!(
            f,
            "JoinToken({}.{})",
            &self.ca_fingerprint[..8.min(self.ca_fingerprint.len())],
            self.id
        )
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}.{}.{}.{}",
            self.ca_fingerprint, self.id, self.secret
        )
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl JoinToken {
    /// A fresh token for the cluster whose CA has `ca_fingerprint`, made of
    /// `random` (which must come from a cryptographically secure generator:
    /// the secret is what lets a node in).
    pub fn generate(ca_fingerprint: &str, random: [u8; TOKEN_RANDOM_BYTES]) -> Self {
        let (id, secret) = random.split_at(TOKEN_ID_BYTES);
        JoinToken {
            ca_fingerprint: ca_fingerprint.to_ascii_lowercase(),
            id: hex::encode(id),
            secret: hex::encode(secret),
        }
    }

    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        if parts.len() != 4 {
            return Err(TokenError::Malformed("expected 4 dot-separated parts"));
        }
        if parts[0] != PREFIX {
            return Err(TokenError::Malformed("unknown token version"));
        }
        if !is_hex(parts[1], 64) {
            return Err(TokenError::Malformed(
                "the CA fingerprint is not 64 hex digits",
            ));
        }
        if !is_hex(parts[2], TOKEN_ID_BYTES * 2) {
            return Err(TokenError::Malformed("the token id is not 8 hex digits"));
        }
        if !is_hex(parts[3], SECRET_BYTES * 2) {
            return Err(TokenError::Malformed("the secret is not 32 hex digits"));
        }
        Ok(JoinToken {
            ca_fingerprint: parts[1].to_ascii_lowercase(),
            id: parts[2].to_ascii_lowercase(),
            secret: parts[3].to_ascii_lowercase(),
        })
    }

    /// The record to store: the hash of the secret, never the secret.
    pub fn record(&self, now_unix: u64, ttl_secs: u64, description: &str) -> TokenRecord {
        TokenRecord {
            id: self.id.clone(),
            secret_sha256: secret_hash(&self.secret),
            created_unix: now_unix,
            expires_unix: if ttl_secs == 0 {
                0
            } else {
                now_unix + ttl_secs
            },
            revoked: false,
            description: description.to_string(),
        }
    }
}

pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` presented for token `id` may join now.
pub fn check(
    record: Option<&TokenRecord>,
    id: &str,
    secret: &str,
    now_unix: u64,
) -> Result<(), TokenError> {
    let record = record.ok_or_else(|| TokenError::Unknown(id.to_string()))?;
    // Compare hashes in constant time so the check leaks nothing about the secret.
    let presented = secret_hash(secret);
    let equal = presented.len() == record.secret_sha256.len()
        && presented
            .bytes()
            .zip(record.secret_sha256.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !equal {
        return Err(TokenError::WrongSecret(id.to_string()));
    }
    if record.revoked {
        return Err(TokenError::Revoked(id.to_string()));
    }
    if record.expires_unix != 0 && now_unix >= record.expires_unix {
        return Err(TokenError::Expired {
            id: id.to_string(),
            ago_secs: now_unix - record.expires_unix,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "aa00000000000000000000000000000000000000000000000000000000000000";

    /// Distinct bytes, so that a token made of them shows where each went.
    fn random_bytes() -> [u8; TOKEN_RANDOM_BYTES] {
        std::array::from_fn(|index| index as u8 + 1)
    }

    #[test]
    fn generate_makes_the_id_then_the_secret_from_the_given_bytes() {
        let token = JoinToken::generate(&FP.to_ascii_uppercase(), random_bytes());
        assert_eq!(token.ca_fingerprint, FP);
        assert_eq!(token.id, "01020304");
        assert_eq!(token.secret, "05060708090a0b0c0d0e0f1011121314");
    }

    #[test]
    fn round_trips_through_text() {
        let token = JoinToken::generate(FP, random_bytes());
        let parsed = JoinToken::parse(&token.to_string()).unwrap();
        assert_eq!(parsed, token);
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn rejects_malformed_tokens_with_the_reason() {
        let check_err = |text: &str, want: &str| {
            let err = JoinToken::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        };
        check_err("garbage", "4 dot-separated parts");
        check_err(&format!("ec2.{FP}.00000000.{}", "0".repeat(32)), "version");
        check_err(
            &format!("ec1.{}.00000000.{}", "zz", "0".repeat(32)),
            "fingerprint",
        );
        check_err(&format!("ec1.{FP}.0000.{}", "0".repeat(32)), "token id");
        check_err(&format!("ec1.{FP}.00000000.{}", "0".repeat(31)), "secret");
    }

    #[test]
    fn check_accepts_only_a_live_token_with_its_secret() {
        let token = JoinToken::generate(FP, random_bytes());
        let record = token.record(1_000, 60, "");
        assert_eq!(
            check(Some(&record), &token.id, &token.secret, 1_010),
            Ok(())
        );
        assert_eq!(
            check(None, &token.id, &token.secret, 1_010),
            Err(TokenError::Unknown(token.id.clone()))
        );
        assert_eq!(
            check(Some(&record), &token.id, &"0".repeat(32), 1_010),
            Err(TokenError::WrongSecret(token.id.clone()))
        );
        assert_eq!(
            check(Some(&record), &token.id, &token.secret, 1_070),
            Err(TokenError::Expired {
                id: token.id.clone(),
                ago_secs: 10
            })
        );
        let revoked = TokenRecord {
            revoked: true,
            ..record.clone()
        };
        assert_eq!(
            check(Some(&revoked), &token.id, &token.secret, 1_010),
            Err(TokenError::Revoked(token.id.clone()))
        );
        let forever = token.record(1_000, 0, "");
        assert_eq!(
            check(Some(&forever), &token.id, &token.secret, u64::MAX / 2),
            Ok(())
        );
    }
}
