//! Webhook signature check: lowercase hex HMAC-SHA256 of the raw body, compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Hex length of an HMAC-SHA256.
const SIGNATURE_HEX_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing signature header")]
    Missing,
    #[error("signature is not 64 hex characters")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Mismatch => "mismatch",
        }
    }
}

pub fn verify(secret: &[u8], body: &[u8], header: Option<&[u8]>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    if header.len() != SIGNATURE_HEX_LEN {
        return Err(SignatureError::Malformed);
    }
    let mut given = [0u8; SIGNATURE_HEX_LEN / 2];
    // Accept upper-case hex too: the bytes are what is signed, not their spelling.
    hex::decode_to_slice(header, &mut given).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"Jefe";
    const BODY: &[u8] = b"what do ya want for nothing?";
    /// RFC 4231 section 4.3, test case 2.
    const RFC4231_TC2: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn signature_headers() {
        let long = format!("{RFC4231_TC2}00");
        let cases: &[(&str, Option<&str>, Result<(), SignatureError>)] = &[
            ("published known answer", Some(RFC4231_TC2), Ok(())),
            ("upper-case hex", Some(&RFC4231_TC2.to_uppercase()), Ok(())),
            ("absent", None, Err(SignatureError::Missing)),
            ("empty", Some(""), Err(SignatureError::Missing)),
            (
                "short",
                Some(&RFC4231_TC2[..63]),
                Err(SignatureError::Malformed),
            ),
            ("overlong", Some(&long), Err(SignatureError::Malformed)),
            (
                "not hex",
                Some(&"zz".repeat(32)),
                Err(SignatureError::Malformed),
            ),
            (
                "one nibble off",
                Some("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3844"),
                Err(SignatureError::Mismatch),
            ),
        ];
        for (name, header, want) in cases {
            assert_eq!(
                verify(SECRET, BODY, header.map(str::as_bytes)),
                *want,
                "{name}"
            );
        }
    }

    #[test]
    fn wrong_secret_or_changed_body_fails() {
        assert_eq!(
            verify(b"jefe", BODY, Some(RFC4231_TC2.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                SECRET,
                b"what do ya want for nothing!",
                Some(RFC4231_TC2.as_bytes())
            ),
            Err(SignatureError::Mismatch)
        );
    }
}
