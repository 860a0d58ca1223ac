//! Signature checks of the simulated venue, written independently of the bot's venue client.
//!
//! Owns the REST request check (`X-API-Key`, `X-Timestamp`, `X-Signature`) and the webhook body
//! signature. Guarantees:
//! - the signed message is exactly `METHOD + PATH_AND_QUERY + BODY + TIMESTAMP`, with the path and query
//!   as received (percent-encoding preserved), the body as raw bytes and the timestamp as the header text;
//! - a request passes only if every header is present, the key matches, the timestamp is within the
//!   tolerance of the server clock and the signature is the lowercase hex HMAC-SHA256 of that message;
//! - secrets and signatures are compared in constant time.
//!
//! This module deliberately shares no code with the client side: a signing bug in the client must show up
//! as a 401 here, not be reproduced by the same helper on both ends.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a request was refused. The message goes back to the client in the 401 body, so it names the
/// failing part without echoing the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("unknown API key")]
    UnknownKey,
    #[error("X-Timestamp must be an integer number of Unix seconds")]
    MalformedTimestamp,
    #[error(
        "X-Timestamp is {skew_secs} s away from the server clock (tolerance {tolerance_secs} s)"
    )]
    StaleTimestamp { skew_secs: u64, tolerance_secs: i64 },
    #[error("X-Signature must be 64 lowercase hex characters")]
    MalformedSignature,
    #[error("signature does not match METHOD + PATH + BODY + TIMESTAMP")]
    SignatureMismatch,
}

/// What the venue knows: the one account it serves.
pub(crate) struct Credentials<'a> {
    pub api_key: &'a str,
    pub api_secret: &'a str,
    pub tolerance_secs: i64,
}

/// What arrived on the wire. Headers are raw bytes so a non-ASCII value is rejected as malformed rather
/// than silently treated as absent.
pub(crate) struct SignedRequest<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub body: &'a [u8],
    pub api_key: Option<&'a [u8]>,
    pub timestamp: Option<&'a [u8]>,
    pub signature: Option<&'a [u8]>,
}

/// Lowercase hex HMAC-SHA256 of `message` under `key`.
pub(crate) fn hmac_hex(key: &[u8], message: &[&[u8]]) -> String {
    // HMAC accepts keys of any length, so this cannot fail; the fallback keeps the no-panic rule anyway.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    for part in message {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// The `X-Webhook-Signature` value for a webhook body.
pub(crate) fn webhook_signature(secret: &str, body: &[u8]) -> String {
    hmac_hex(secret.as_bytes(), &[body])
}

/// Checks one REST request against the account's credentials at `now_unix` (Unix seconds).
pub(crate) fn verify(
    creds: &Credentials<'_>,
    req: &SignedRequest<'_>,
    now_unix: i64,
) -> Result<(), AuthError> {
    let key = req.api_key.ok_or(AuthError::MissingHeader("X-API-Key"))?;
    let timestamp = req
        .timestamp
        .ok_or(AuthError::MissingHeader("X-Timestamp"))?;
    let signature = req
        .signature
        .ok_or(AuthError::MissingHeader("X-Signature"))?;

    if !bool::from(key.ct_eq(creds.api_key.as_bytes())) {
        return Err(AuthError::UnknownKey);
    }

    let ts_text = std::str::from_utf8(timestamp).map_err(|_| AuthError::MalformedTimestamp)?;
    // Only plain digits (with an optional minus): `+17…` or ` 17…` would parse differently on the client.
    let plain = ts_text
        .strip_prefix('-')
        .unwrap_or(ts_text)
        .bytes()
        .all(|b| b.is_ascii_digit());
    let ts: i64 = match (plain, ts_text.parse()) {
        (true, Ok(ts)) => ts,
        _ => return Err(AuthError::MalformedTimestamp),
    };
    let skew_secs = now_unix.abs_diff(ts);
    if skew_secs > creds.tolerance_secs.unsigned_abs() {
        return Err(AuthError::StaleTimestamp {
            skew_secs,
            tolerance_secs: creds.tolerance_secs,
        });
    }

    // The format check is separate from the comparison so a client sending upper-case or base64 learns
    // that, instead of a bare mismatch.
    let well_formed = signature.len() == 64
        && signature
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    if !well_formed {
        return Err(AuthError::MalformedSignature);
    }

    let expected = hmac_hex(
        creds.api_secret.as_bytes(),
        &[
            req.method.as_bytes(),
            req.path_and_query.as_bytes(),
            req.body,
            timestamp,
        ],
    );
    if bool::from(expected.as_bytes().ct_eq(signature)) {
        Ok(())
    } else {
        Err(AuthError::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed outside Rust with:
    /// `printf '%s' 'POST/api/v1/orders{"a":1}1700000000' | openssl dgst -sha256 -hmac 'secret'`
    const OPENSSL_SIGNATURE: &str =
        "b951d48a3ef0a2b517f92ba9277a413099640199bee309f7bc89603bfe08ebdc";

    const NOW: i64 = 1_700_000_000;

    fn creds() -> Credentials<'static> {
        Credentials {
            api_key: "key",
            api_secret: "secret",
            tolerance_secs: 30,
        }
    }

    fn request<'a>(
        key: Option<&'a str>,
        timestamp: Option<&'a str>,
        signature: Option<&'a str>,
    ) -> SignedRequest<'a> {
        SignedRequest {
            method: "POST",
            path_and_query: "/api/v1/orders",
            body: br#"{"a":1}"#,
            api_key: key.map(str::as_bytes),
            timestamp: timestamp.map(str::as_bytes),
            signature: signature.map(str::as_bytes),
        }
    }

    #[test]
    fn signature_matches_openssl_known_answer() {
        let sig = hmac_hex(
            b"secret",
            &[b"POST", b"/api/v1/orders", br#"{"a":1}"#, b"1700000000"],
        );
        assert_eq!(sig, OPENSSL_SIGNATURE);
    }

    #[test]
    fn correctly_signed_request_is_accepted() {
        let req = request(Some("key"), Some("1700000000"), Some(OPENSSL_SIGNATURE));
        assert_eq!(verify(&creds(), &req, NOW), Ok(()));
        // Clock skew inside the tolerance, either direction.
        assert_eq!(verify(&creds(), &req, NOW + 30), Ok(()));
        assert_eq!(verify(&creds(), &req, NOW - 30), Ok(()));
    }

    #[test]
    fn bad_requests_are_rejected_with_the_reason() {
        let upper = OPENSSL_SIGNATURE.to_uppercase();
        let non_hex = "zz".repeat(32);
        let mut flipped = OPENSSL_SIGNATURE.to_string();
        flipped.replace_range(0..1, "c");
        let cases: Vec<(&str, SignedRequest<'_>, i64, AuthError)> = vec![
            (
                "wrong key",
                request(Some("other"), Some("1700000000"), Some(OPENSSL_SIGNATURE)),
                NOW,
                AuthError::UnknownKey,
            ),
            (
                "stale timestamp",
                request(Some("key"), Some("1700000000"), Some(OPENSSL_SIGNATURE)),
                NOW + 31,
                AuthError::StaleTimestamp {
                    skew_secs: 31,
                    tolerance_secs: 30,
                },
            ),
            (
                "timestamp from the future",
                request(Some("key"), Some("1700000000"), Some(OPENSSL_SIGNATURE)),
                NOW - 31,
                AuthError::StaleTimestamp {
                    skew_secs: 31,
                    tolerance_secs: 30,
                },
            ),
            (
                "timestamp in milliseconds",
                request(Some("key"), Some("1700000000000"), Some(OPENSSL_SIGNATURE)),
                NOW,
                AuthError::StaleTimestamp {
                    skew_secs: 1_698_300_000_000,
                    tolerance_secs: 30,
                },
            ),
            (
                "non-numeric timestamp",
                request(Some("key"), Some("+1700000000"), Some(OPENSSL_SIGNATURE)),
                NOW,
                AuthError::MalformedTimestamp,
            ),
            (
                "missing key",
                request(None, Some("1700000000"), Some(OPENSSL_SIGNATURE)),
                NOW,
                AuthError::MissingHeader("X-API-Key"),
            ),
            (
                "missing timestamp",
                request(Some("key"), None, Some(OPENSSL_SIGNATURE)),
                NOW,
                AuthError::MissingHeader("X-Timestamp"),
            ),
            (
                "missing signature",
                request(Some("key"), Some("1700000000"), None),
                NOW,
                AuthError::MissingHeader("X-Signature"),
            ),
            (
                "non-hex signature",
                request(Some("key"), Some("1700000000"), Some(&non_hex)),
                NOW,
                AuthError::MalformedSignature,
            ),
            (
                "upper-case hex signature",
                request(Some("key"), Some("1700000000"), Some(&upper)),
                NOW,
                AuthError::MalformedSignature,
            ),
            (
                "truncated signature",
                request(
                    Some("key"),
                    Some("1700000000"),
                    Some(&OPENSSL_SIGNATURE[..63]),
                ),
                NOW,
                AuthError::MalformedSignature,
            ),
            (
                "one wrong digit",
                request(Some("key"), Some("1700000000"), Some(&flipped)),
                NOW,
                AuthError::SignatureMismatch,
            ),
        ];
        for (name, req, now, expected) in cases {
            assert_eq!(verify(&creds(), &req, now), Err(expected), "case: {name}");
        }
    }

    #[test]
    fn signature_covers_method_path_query_and_body() {
        let base = request(Some("key"), Some("1700000000"), Some(OPENSSL_SIGNATURE));
        let variants = [
            SignedRequest {
                method: "PUT",
                ..request(Some("key"), Some("1700000000"), Some(OPENSSL_SIGNATURE))
            },
            SignedRequest {
                path_and_query: "/orders",
                ..request(Some("key"), Some("1700000000"), Some(OPENSSL_SIGNATURE))
            },
            SignedRequest {
                path_and_query: "/api/v1/orders?limit=1",
                ..request(Some("key"), Some("1700000000"), Some(OPENSSL_SIGNATURE))
            },
            SignedRequest {
                body: br#"{"a":2}"#,
                ..request(Some("key"), Some("1700000000"), Some(OPENSSL_SIGNATURE))
            },
        ];
        assert_eq!(verify(&creds(), &base, NOW), Ok(()));
        for req in variants {
            assert_eq!(
                verify(&creds(), &req, NOW),
                Err(AuthError::SignatureMismatch)
            );
        }
    }
}
