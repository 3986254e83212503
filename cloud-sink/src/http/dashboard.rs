//! The fleet dashboard's static files: `GET /` (the page), `/assets/app.js`,
//! `/assets/chart.js` (ES modules) and `/assets/style.css`, embedded in the binary so the sink serves them
//! offline (no CDN, nothing read from disk at run time).
//!
//! This file only serves bytes with their headers (content type, a strict
//! Content-Security-Policy, no caching); it reads no store. The page draws
//! itself in the browser from the JSON API (`/v1/health`, `/v1/gateways`,
//! `/v1/devices`, `/v1/series`, `/v1/escalations`, `/v1/escalations/agreement`).

use axum::http::header::{self, HeaderName};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The page: markup only; no inline script or style.
pub const INDEX_HTML: &str = include_str!("../../assets/dashboard/index.html");
/// The page's script (a plain ES module, no framework): polling, tables, pickers.
pub const APP_JS: &str = include_str!("../../assets/dashboard/app.js");
/// The SVG chart, imported by `app.js`.
pub const CHART_JS: &str = include_str!("../../assets/dashboard/chart.js");
/// The page's style sheet.
pub const STYLE_CSS: &str = include_str!("../../assets/dashboard/style.css");

/// Scripts, styles and fetches from this origin only; no inline script or
/// style, no plugins, no framing, no forms, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes; merged into the API router by `http::router`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/chart.js", get(chart_js))
        .route("/assets/style.css", get(style_css))
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn chart_js() -> Response {
    asset("text/javascript; charset=utf-8", CHART_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

/// `body` with its content type and the security headers every dashboard file carries.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // Small files; a new sink version must never run an old script.
            (header::CACHE_CONTROL, "no-cache"),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_no_inline_script_or_style_and_loads_the_assets() {
        assert!(INDEX_HTML.contains(r#"<script type="module" src="/assets/app.js">"#));
        assert!(APP_JS.contains(r#"from "./chart.js""#));
        assert!(INDEX_HTML.contains(r#"href="/assets/style.css""#));
        // Every <script> has a src (CSP forbids inline script) and no style attributes.
        assert_eq!(
            INDEX_HTML.matches("<script").count(),
            INDEX_HTML.matches(" src=\"/assets/").count()
        );
        assert!(!INDEX_HTML.contains("style="));
        assert!(!INDEX_HTML.contains("<style"));
        // Nothing from elsewhere: the only absolute URL is the SVG namespace name.
        let scripts = [APP_JS, CHART_JS].concat();
        let scripts = scripts.replace("\"http://www.w3.org/2000/svg\"", "");
        for forbidden in ["http://", "https://", "//cdn"] {
            assert!(!INDEX_HTML.contains(forbidden), "external URL in the page");
            assert!(!scripts.contains(forbidden), "external URL in a script");
        }
    }

    #[test]
    fn script_never_parses_html_from_strings() {
        for script in [APP_JS, CHART_JS] {
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!script.contains(forbidden), "a script uses {forbidden}");
            }
        }
    }
}
