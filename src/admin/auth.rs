//! Bearer-token authentication for admin mutations, as a reusable axum layer.
//!
//! Guarantees: without a configured token (`[admin] token_file` or `SIGEX_ADMIN__TOKEN`) every
//! protected route answers 403 "disabled": mutations are off, never open. With one, a request must
//! carry `Authorization: Bearer <token>` (the scheme in any case, RFC 7235), the token compared in
//! constant time; anything else is 401. The
//! token never appears in a response or a log line.
//!
//! Use: `auth::protect(router, token)` wraps every route of `router` (halt, resume, cancel, replay).

use crate::config::Secret;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use subtle::ConstantTimeEq;

/// Puts every route of `router` behind the bearer token.
pub fn protect<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    token: Option<Secret>,
) -> Router<S> {
    router.route_layer(middleware::from_fn_with_state(token, require_token))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No token is configured: mutations are disabled.
    Disabled,
    /// Missing, malformed or wrong credentials.
    Unauthorized,
}

/// Decides one request from its `Authorization` header.
pub fn check(configured: Option<&Secret>, authorization: Option<&[u8]>) -> Verdict {
    let Some(expected) = configured else {
        return Verdict::Disabled;
    };
    let Some(presented) = authorization.and_then(bearer_credentials) else {
        return Verdict::Unauthorized;
    };
    if bool::from(presented.ct_eq(expected.expose().as_bytes())) {
        Verdict::Allowed
    } else {
        Verdict::Unauthorized
    }
}

/// The credentials of `Bearer <token>`: the scheme is matched case-insensitively and may be
/// followed by more than one space (RFC 7235, `auth-scheme 1*SP token68`).
fn bearer_credentials(header: &[u8]) -> Option<&[u8]> {
    let space = header.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = header.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let start = rest.iter().position(|b| *b != b' ')?;
    Some(&rest[start..])
}

async fn require_token(
    State(token): State<Option<Secret>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match check(token.as_ref(), header) {
        Verdict::Allowed => next.run(request).await,
        Verdict::Disabled => error(
            StatusCode::FORBIDDEN,
            "disabled",
            "admin mutations are disabled: no admin token is configured (set SIGEX_ADMIN__TOKEN or [admin] token_file)",
        ),
        Verdict::Unauthorized => {
            tracing::warn!(path = %request.uri().path(), "admin mutation refused: bad or missing bearer token");
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <admin token>",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            r
        }
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutation_needs_the_exact_bearer_token_and_is_disabled_without_one() {
        let token = Secret::new("admin-token-0123456789");
        type Case<'a> = (&'a str, Option<&'a Secret>, Option<&'a [u8]>, Verdict);
        let cases: &[Case] = &[
            ("no token configured", None, None, Verdict::Disabled),
            (
                "no token configured ignores what is sent",
                None,
                Some(b"Bearer admin-token-0123456789"),
                Verdict::Disabled,
            ),
            ("no header", Some(&token), None, Verdict::Unauthorized),
            (
                "wrong scheme",
                Some(&token),
                Some(b"Basic admin-token-0123456789"),
                Verdict::Unauthorized,
            ),
            (
                "wrong token",
                Some(&token),
                Some(b"Bearer admin-token-0123456780"),
                Verdict::Unauthorized,
            ),
            (
                "prefix of the token",
                Some(&token),
                Some(b"Bearer admin-token"),
                Verdict::Unauthorized,
            ),
            (
                "exact token",
                Some(&token),
                Some(b"Bearer admin-token-0123456789"),
                Verdict::Allowed,
            ),
            (
                "the scheme in lower case",
                Some(&token),
                Some(b"bearer admin-token-0123456789"),
                Verdict::Allowed,
            ),
            (
                "the scheme in upper case, two spaces",
                Some(&token),
                Some(b"BEARER  admin-token-0123456789"),
                Verdict::Allowed,
            ),
            (
                "the token in another case",
                Some(&token),
                Some(b"Bearer ADMIN-TOKEN-0123456789"),
                Verdict::Unauthorized,
            ),
            (
                "a scheme that only starts with bearer",
                Some(&token),
                Some(b"Bearerx admin-token-0123456789"),
                Verdict::Unauthorized,
            ),
            (
                "no credentials after the scheme",
                Some(&token),
                Some(b"Bearer "),
                Verdict::Unauthorized,
            ),
        ];
        for (name, configured, header, expected) in cases {
            assert_eq!(check(*configured, *header), *expected, "{name}");
        }
    }
}
