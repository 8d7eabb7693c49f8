//! The collector's HTTP API (axum), documented by an OpenAPI 3.1 document generated from the
//! same Rust types and handlers (utoipa): a route exists only through `routes!` on a handler
//! with its `#[utoipa::path]`, so the router and the document cannot drift apart.
//!
//! By concern: [`meta`] (health, metrics, whoami, labels), [`terminals`] (search, detail),
//! [`records`] (a terminal's stored records), [`breakdown`] (failure rate by label),
//! [`incidents`], [`live`] (summary, event stream) and [`alerts`] (silences, maintenance,
//! outbox, notification history; its own state). Shared pieces (state, the error type, query
//! checks, vocabulary schemas) are in `common`, which imports none of its siblings.
//! [`router`] builds the app without a socket so tests can call it directly.

pub mod alerts;
pub mod breakdown;
mod common;
pub mod incidents;
pub mod live;
pub mod meta;
pub mod records;
pub mod terminals;

use std::sync::LazyLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{self, Ref, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::common::{ApiError, ApiState, ErrorBody};
pub use self::records::Record;

/// The document's fixed parts; the paths and most schemas come from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "storepulse collector API",
        version = "1",
        description = "Read the fleet, its incidents and notifications; manage silences and \
            maintenance windows. Every route except the dashboard's static files, /healthz, \
            this document (and /metrics when configured public) needs \
            `Authorization: Bearer <token>`; changes need an admin token. Errors are JSON \
            `{\"error\": \"...\"}`."
    ),
    components(schemas(ErrorBody, live::LiveEvent)),
    tags(
        (name = "meta", description = "The collector and the API itself"),
        (name = "terminals", description = "Terminals and their records"),
        (name = "fleet", description = "Fleet-wide figures and the live stream"),
        (name = "incidents", description = "Incidents from detection"),
        (name = "alerts", description = "Silences, maintenance windows and notifications"),
    )
)]
struct ApiDoc;

/// The routes that read [`ApiState`].
fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::metrics))
        .routes(routes!(openapi_json))
        .routes(routes!(meta::whoami))
        .routes(routes!(meta::labels))
        .routes(routes!(terminals::list))
        .routes(routes!(terminals::detail))
        .routes(routes!(records::records))
        .routes(routes!(records::quarantined))
        .routes(routes!(breakdown::breakdown))
        .routes(routes!(live::summary))
        .routes(routes!(live::events))
        .routes(routes!(incidents::list))
        .routes(routes!(incidents::detail))
}

/// The document (built once).
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    // Serializing the document's own types cannot fail (string keys, no non-finite numbers).
    openapi().to_json().unwrap_or_else(|_| "{}".to_owned())
});

/// The OpenAPI 3.1 document of every route: those of [`router`] and of [`alerts::router`],
/// with the bearer scheme and the 401/403 answers of the auth middleware.
pub fn openapi() -> openapi::OpenApi {
    let (_, mut doc) = routes().split_for_parts();
    let (_, alerts) = alerts::routes().split_for_parts();
    doc.merge(alerts);
    secure(&mut doc);
    doc
}

/// Adds the bearer scheme, requires it everywhere but on routes documented as public
/// (`security(())`), and documents the middleware's 401 (and 403 for changes).
fn secure(doc: &mut openapi::OpenApi) {
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    doc.security = Some(vec![SecurityRequirement::new::<_, _, String>("bearer", [])]);
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                openapi::ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Error")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let ops = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.put, true),
            (&mut item.patch, true),
        ];
        for (op, changes) in ops {
            let Some(op) = op.as_mut() else { continue };
            let public = op
                .security
                .as_ref()
                .is_some_and(|s| s.iter().all(|r| *r == SecurityRequirement::default()));
            if public {
                continue;
            }
            let responses = &mut op.responses.responses;
            responses.insert("401".into(), error("No token, or an unknown one").into());
            if changes {
                responses.insert("403".into(), error("A read-only token").into());
            }
        }
    }
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    summary = "This document (OpenAPI 3.1)",
    security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object))
)]
async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

/// The API routes that read [`ApiState`] (every route but the alerting ones, which
/// [`alerts::router`] serves), the dashboard's assets, and a JSON 404 for anything else.
/// The dashboard shows times in the browser's zone ([`router_with_time_zone`] sets one).
pub fn router(state: ApiState) -> Router {
    router_with_time_zone(state, None)
}

/// As [`router`], the dashboard showing times in `time_zone` (an IANA name, `http.time_zone`).
pub fn router_with_time_zone(state: ApiState, time_zone: Option<&str>) -> Router {
    let (api, _) = routes().split_for_parts();
    api.merge(crate::dashboard::router(time_zone))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}
