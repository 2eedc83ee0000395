//! The durable-topics dashboard: a web page at `GET /dashboard` for operators (served when
//! durable topics are on). Three files embedded in the binary — `dashboard/index.html`,
//! `dashboard/app.css`, `dashboard/app.js`, plain HTML/CSS/JS with no build step and no
//! external resource — served with a Content-Security-Policy that allows nothing but them and
//! requests to this origin.
//!
//! The page holds no data of its own and needs no session on the server: it reads and acts
//! through the `/v1` HTTP API ([`crate::api`]), so the API's rules are the dashboard's. When
//! tokens are verified the page asks for a token, keeps it in the tab's `sessionStorage`, and
//! sends it as `Authorization: Bearer`; it wants an admin token (it starts with `/v1/stats`,
//! which is admin only) and says so when it gets 401 or 403. Without tokens it is open, as the
//! API is (development mode). docs/OPERATIONS.md describes the page.

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::Full;
use hyper::Response;

use crate::engine::Body;

const INDEX: &str = include_str!("dashboard/index.html");
const CSS: &str = include_str!("dashboard/app.css");
const JS: &str = include_str!("dashboard/app.js");

/// The page's policy: its own script and style, `fetch` to this origin only, no frames, no
/// forms posting elsewhere, no inline script or style (the page sets none). `img-src data:`
/// is for the empty favicon (the browser would otherwise ask for `/favicon.ico`).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Whether `path` is the dashboard's: `/dashboard` or under `/dashboard/`.
pub(crate) fn matches(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

/// Answers a request for `path` (one that [`matches`]): the page and its two assets for GET
/// and HEAD, 405 for other methods, 404 for other paths (in the API's error shape).
pub(crate) fn serve(method: &Method, path: &str) -> Response<Body> {
    let (body, content_type) = match path {
        "/dashboard" | "/dashboard/" => (INDEX, "text/html; charset=utf-8"),
        "/dashboard/app.css" => (CSS, "text/css; charset=utf-8"),
        "/dashboard/app.js" => (JS, "text/javascript; charset=utf-8"),
        _ => {
            return crate::api::error_response(&tidings_core::ErrorBody::new(
                tidings_core::ErrorCode::NotFound,
                format!("no route {method} {path}"),
            ));
        }
    };
    if *method != Method::GET && *method != Method::HEAD {
        let mut res = crate::api::error_response(&tidings_core::ErrorBody::new(
            tidings_core::ErrorCode::BadRequest,
            format!("{path} answers GET only"),
        ));
        *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    let bytes = if *method == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from_static(body.as_bytes())
    };
    let mut res = Response::new(Full::new(bytes));
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Small, and changes with the binary: revalidate rather than cache across upgrades.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_page_and_its_assets() {
        for (path, kind) in [
            ("/dashboard", "text/html"),
            ("/dashboard/", "text/html"),
            ("/dashboard/app.css", "text/css"),
            ("/dashboard/app.js", "text/javascript"),
        ] {
            assert!(matches(path));
            let res = serve(&Method::GET, path);
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            let ct = res.headers()[header::CONTENT_TYPE].to_str().unwrap();
            assert!(ct.starts_with(kind), "{path}: {ct}");
            assert_eq!(
                res.headers()[header::CONTENT_SECURITY_POLICY],
                CONTENT_SECURITY_POLICY
            );
        }
        assert!(!matches("/dashboards"));
        assert_eq!(
            serve(&Method::GET, "/dashboard/nope.js").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            serve(&Method::POST, "/dashboard").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    /// The page loads only its own files: no URL of another origin, no inline script or style
    /// (the policy would block them, and the page would silently break).
    #[test]
    fn the_page_has_no_external_or_inline_resources() {
        for (name, text) in [("index.html", INDEX), ("app.css", CSS), ("app.js", JS)] {
            // The SVG namespace is a name, not a resource.
            let text = text.replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(!text.contains("http://"), "{name} links another origin");
            assert!(!text.contains("https://"), "{name} links another origin");
            assert!(!text.contains("@import"), "{name} imports");
        }
        assert!(!INDEX.contains("<style"), "inline style");
        assert!(!INDEX.contains("style="), "inline style attribute");
        assert!(
            !INDEX
                .split_whitespace()
                .any(|w| w.starts_with("on") && w.contains('=')),
            "inline event handler"
        );
        assert_eq!(INDEX.matches("<script").count(), 1);
        assert!(INDEX.contains("<script src=\"/dashboard/app.js\""));
        assert!(
            !JS.contains("innerHTML"),
            "data goes in as text, never as markup"
        );
        assert!(!JS.contains("eval("));
    }
}
