//! HMAC-SHA256 in hex, as GitHub (`X-Hub-Signature-256`), Sentry (`Sentry-Hook-Signature`) and
//! shipline's own deploy hooks sign bodies; checked in constant time.

use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(key: &[u8], body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    mac
}

/// The lower-case hex HMAC-SHA256 of `body` under `key`.
pub fn sign_hex(key: &[u8], body: &[u8]) -> String {
    hex::encode(mac(key, body).finalize().into_bytes())
}

/// A header that carries a body's HMAC-SHA256: its name as the service spells it, and what
/// stands before the hex digits (`sha256=` for GitHub, nothing for Sentry).
#[derive(Debug, PartialEq, Eq)]
pub struct SignedHeader {
    pub name: &'static str,
    pub prefix: &'static str,
}

/// Why a request's signature was refused; each names its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {} header", .0.name)]
    Missing(&'static SignedHeader),
    #[error("{} is not {}64 hex digits", .0.name, .0.prefix_and())]
    Malformed(&'static SignedHeader),
    #[error("{} does not match the body", .0.name)]
    Mismatch(&'static SignedHeader),
}

impl SignedHeader {
    /// The header value the service would send for `body` signed with `key`.
    pub fn sign(&self, key: &[u8], body: &[u8]) -> String {
        format!("{}{}", self.prefix, sign_hex(key, body))
    }

    fn prefix_and(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("`{}` and ", self.prefix)
        }
    }

    /// Checks the header's value (`None` when absent) against the raw body, in constant time.
    pub fn verify(
        &'static self,
        key: &[u8],
        body: &[u8],
        value: Option<&str>,
    ) -> Result<(), SignatureError> {
        let value = value.ok_or(SignatureError::Missing(self))?.trim();
        let hex_digits = value
            .strip_prefix(self.prefix)
            .ok_or(SignatureError::Malformed(self))?;
        verify_hex(key, body, hex_digits).map_err(|e| match e {
            HexMismatch::Malformed => SignatureError::Malformed(self),
            HexMismatch::Mismatch => SignatureError::Mismatch(self),
        })
    }
}

/// Why a hex signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HexMismatch {
    /// Not 64 hex digits.
    Malformed,
    /// Well formed, but not the body's MAC under the key.
    Mismatch,
}

/// Checks 64 hex digits (either case: the same MAC) against `body` under `key`. The comparison
/// is `Mac::verify_slice`, which does not stop at the first differing byte.
pub fn verify_hex(key: &[u8], body: &[u8], hex_digits: &str) -> Result<(), HexMismatch> {
    if hex_digits.len() != 64 {
        return Err(HexMismatch::Malformed);
    }
    let expected = hex::decode(hex_digits).map_err(|_| HexMismatch::Malformed)?;
    mac(key, body)
        .verify_slice(&expected)
        .map_err(|_| HexMismatch::Mismatch)
}

/// Compares a secret token (a URL token, a header secret) with the expected one without
/// stopping at the first difference: both are MACed under a fixed key and the MACs compared
/// with `verify_slice`.
pub fn token_matches(given: &str, expected: &str) -> bool {
    let key = b"shipline token compare";
    let expected = mac(key, expected.as_bytes()).finalize().into_bytes();
    mac(key, given.as_bytes()).verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_4231_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let sig = sign_hex(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            verify_hex(b"Jefe", b"what do ya want for nothing?", &sig),
            Ok(())
        );
        assert_eq!(
            verify_hex(
                b"Jefe",
                b"what do ya want for nothing?",
                &sig.to_uppercase()
            ),
            Ok(())
        );
        assert_eq!(
            verify_hex(b"Jefe", b"tampered", &sig),
            Err(HexMismatch::Mismatch)
        );
        assert_eq!(
            verify_hex(b"Jefe", b"x", "abc"),
            Err(HexMismatch::Malformed)
        );
    }

    #[test]
    fn tokens_match_only_themselves() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
    }
}
