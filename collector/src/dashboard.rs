//! The web dashboard: static assets from `dashboards/web/`, compiled into the binary so the
//! collector needs no internet and no files at run time. The dashboard reads only the public
//! HTTP API.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../dashboards/web/index.html");
const APP_JS: &str = include_str!("../../dashboards/web/app.js");
const I18N_JS: &str = include_str!("../../dashboards/web/i18n.js");
const WALL_JS: &str = include_str!("../../dashboards/web/wall.js");
const STYLE_CSS: &str = include_str!("../../dashboards/web/style.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = body.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Routes of the dashboard (`/`, `/assets/{i18n,app,wall}.js`, `/assets/style.css`).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/i18n.js",
            get(|| async { asset(I18N_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/wall.js",
            get(|| async { asset(WALL_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_reference_each_other() {
        assert!(INDEX.contains("/assets/app.js") && INDEX.contains("/assets/style.css"));
        assert!(APP_JS.contains("/api/v1/incidents") && APP_JS.contains("中文"));
        for js in ["/assets/i18n.js", "/assets/app.js", "/assets/wall.js"] {
            assert!(INDEX.contains(js), "{js}");
        }
        assert!(I18N_JS.contains("const I18N") && WALL_JS.contains("renderWall"));
        assert!(
            !INDEX.contains("http://") && !INDEX.contains("https://"),
            "no external resources"
        );
    }
}
