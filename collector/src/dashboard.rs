//! The web dashboard: static assets from `dashboards/web/`, compiled into the binary so the
//! collector needs no internet and no files at run time. The dashboard reads only the public
//! HTTP API. Also the browser hardening every HTTP response carries ([`security_headers`]).
//! The one thing the page learns from the collector's config, the time zone to show times in
//! (`http.time_zone`), travels in a `<meta>` of the index page: no inline script is needed.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The Content-Security-Policy of every response: only the dashboard's own scripts, styles and
/// API (no inline script, no inline style attribute, no `eval`), nothing else loaded, never in
/// a frame. Agent-supplied labels and codes are shown as text; this is the second line.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The hardening headers set on every HTTP response (API, dashboard, errors, `/metrics`).
pub const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// Middleware: adds [`SECURITY_HEADERS`] to every response (the outermost layer, so 401s and
/// 404s carry them too).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}

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

/// The `<meta>` of the index page that carries the configured time zone (empty: the browser's).
const ZONE_META: &str = r#"<meta name="storepulse-time-zone" content="">"#;

/// The index page with `time_zone` (an IANA name, `http.time_zone`) in its zone `<meta>`.
fn index_page(time_zone: Option<&str>) -> String {
    let zone: String = time_zone
        .unwrap_or("")
        .chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect();
    INDEX.replace(
        ZONE_META,
        &format!(r#"<meta name="storepulse-time-zone" content="{zone}">"#),
    )
}

/// Routes of the dashboard (`/`, `/assets/{i18n,app,wall}.js`, `/assets/style.css`); the pages
/// show times in `time_zone` (an IANA name) or, if `None`, in the browser's zone.
pub fn router<S: Clone + Send + Sync + 'static>(time_zone: Option<&str>) -> Router<S> {
    let index: Arc<str> = index_page(time_zone).into();
    Router::new()
        .route(
            "/",
            get(move || {
                let index = Arc::clone(&index);
                async move {
                    let mut r = index.to_string().into_response();
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    r.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
                    r
                }
            }),
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
        assert!(INDEX.contains(ZONE_META), "the zone <meta> is in the page");
        assert!(APP_JS.contains("storepulse-time-zone"));
        assert!(
            !INDEX.contains("http://") && !INDEX.contains("https://"),
            "no external resources"
        );
    }

    /// Issue 19: the configured zone reaches the page, escaped; none leaves it empty.
    #[test]
    fn index_carries_the_configured_time_zone() {
        assert!(
            index_page(Some("Asia/Shanghai"))
                .contains(r#"<meta name="storepulse-time-zone" content="Asia/Shanghai">"#)
        );
        assert!(index_page(None).contains(ZONE_META));
        let hostile = index_page(Some("x\"><script>"));
        assert!(!hostile.contains("<script>") && hostile.contains("x&quot;&gt;&lt;script&gt;"));
    }

    /// The policy allows no inline script or style: the assets must not need any.
    #[test]
    fn assets_need_no_inline_script_or_style() {
        // Every <script> has a src and is empty; no inline event handler; no style attribute.
        let scripts = INDEX.matches("<script").count();
        assert_eq!(INDEX.matches("<script src=\"/assets/").count(), scripts);
        assert_eq!(INDEX.matches("></script>").count(), scripts);
        for text in [INDEX, APP_JS, WALL_JS, I18N_JS] {
            for bad in [
                " style=\"",
                "javascript:",
                "eval(",
                "new Function",
                "<style",
            ] {
                assert!(!text.contains(bad), "{bad}");
            }
            // `onload=`, `onclick=`, ... in markup (the JS uses addEventListener).
            let lower = text.to_ascii_lowercase();
            for (i, _) in lower.match_indices(" on") {
                let rest = &lower[i + 3..];
                let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
                assert!(
                    !(name.len() > 2 && rest[name.len()..].starts_with('=')),
                    "inline handler on{name}="
                );
            }
        }
        assert!(CONTENT_SECURITY_POLICY.contains("script-src 'self';"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
