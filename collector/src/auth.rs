//! API authentication: `Authorization: Bearer <token>` with read-only and admin tokens from
//! `[http] tokens`. Reads (GET, HEAD) need any token; changes need an admin token. The
//! dashboard's static files carry no data and are public; `/healthz` and `/metrics` are public
//! when configured so. With no tokens configured (only allowed on a loopback listener) every
//! request is let through. Tokens never appear in logs; comparison is constant-time.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::config::{HttpSettings, TokenRole};

/// The resolved token table.
#[derive(Clone)]
pub struct Auth {
    tokens: Arc<Vec<(String, TokenRole, Vec<u8>)>>,
    public_healthz: bool,
    public_metrics: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.tokens.iter().map(|(n, _, _)| n.as_str()).collect();
        f.debug_struct("Auth")
            .field("tokens", &names)
            .finish_non_exhaustive()
    }
}

fn eq_ct(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn deny(status: StatusCode, message: &str) -> Response {
    let mut r = (status, axum::Json(json!({ "error": message }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"storepulse\""),
        );
    }
    r
}

impl Auth {
    /// The token table of `[http]`.
    pub fn new(http: &HttpSettings) -> Self {
        let tokens = http
            .tokens
            .iter()
            .map(|t| (t.name.clone(), t.role, t.value.expose().as_bytes().to_vec()))
            .collect();
        Self {
            tokens: Arc::new(tokens),
            public_healthz: http.public_healthz,
            public_metrics: http.public_metrics,
        }
    }

    fn role(&self, presented: &[u8]) -> Option<(&str, TokenRole)> {
        // Check every token so the time taken does not reveal which one matched.
        let mut found = None;
        for (name, role, token) in self.tokens.iter() {
            if eq_ct(token, presented) {
                found = Some((name.as_str(), *role));
            }
        }
        found
    }

    fn public(&self, path: &str) -> bool {
        path == "/"
            || path.starts_with("/assets/")
            || path == "/favicon.ico"
            || path == "/api/v1/openapi.json"
            || (path == "/healthz" && self.public_healthz)
            || (path == "/metrics" && self.public_metrics)
    }
}

/// Who made a request: the token's name and role (recorded by [`require`] for
/// `GET /api/v1/whoami`).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's configured name (`anonymous` when the API has no tokens).
    pub name: String,
    /// What the token may do.
    pub role: TokenRole,
}

/// The middleware.
pub async fn require(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    if auth.tokens.is_empty() {
        // No tokens (a loopback-only API): everyone may do everything.
        req.extensions_mut().insert(Caller {
            name: "anonymous".to_owned(),
            role: TokenRole::Admin,
        });
        return next.run(req).await;
    }
    if auth.public(req.uri().path()) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().as_bytes().to_vec());
    let Some(presented) = presented else {
        return deny(StatusCode::UNAUTHORIZED, "a bearer token is required");
    };
    let Some((name, role)) = auth.role(&presented) else {
        tracing::info!(
            path = req.uri().path(),
            "API request with an unknown token refused"
        );
        return deny(StatusCode::UNAUTHORIZED, "unknown token");
    };
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    if !reading && role != TokenRole::Admin {
        tracing::info!(token = name, method = %req.method(), path = req.uri().path(), "Change refused for a read-only token");
        return deny(StatusCode::FORBIDDEN, "this token may only read");
    }
    req.extensions_mut().insert(Caller {
        name: name.to_owned(),
        role,
    });
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare() {
        assert!(eq_ct(b"abc", b"abc"));
        assert!(!eq_ct(b"abc", b"abd"));
        assert!(!eq_ct(b"abc", b"ab"));
    }
}
