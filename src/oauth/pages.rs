//! What the browser sees: the server-rendered pages (askama, auto-escaped) with the headers
//! every page carries (no framing, no caching, no referrer, and a CSP that allows no script
//! at all), and the redirects that move it between the steps of the flow.

use crate::body::Body;
use askama::Template;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};

/// What the login page and the error page say while the directory or the store is down.
pub const SIGN_IN_UNAVAILABLE: &str =
    "The sign-in service is unavailable right now. Please try again in a few minutes.";

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub client_name: &'a str,
    pub action: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub message: Option<&'a str>,
}

/// One scope on the consent page.
pub struct ScopeLine<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

#[derive(Template)]
#[template(path = "consent.html")]
pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub user_label: &'a str,
    pub scopes: Vec<ScopeLine<'a>>,
    pub action: &'a str,
    pub csrf: &'a str,
    pub logout_url: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// Renders a page with the security headers. `form_target` is an extra origin the page's
/// form may end up at (the consent form's redirect), for `form-action`.
pub fn render(
    status: StatusCode,
    page: &impl Template,
    form_target: Option<&str>,
) -> Response<Body> {
    let html = match page.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            "<!doctype html><title>Error</title><p>Something went wrong.</p>".to_string()
        }
    };
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    let form_action = match form_target {
        Some(origin) => format!("'self' {origin}"),
        None => "'self'".to_string(),
    };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let headers = response.headers_mut();
    for (name, value) in PAGE_HEADERS {
        headers.insert(name, value);
    }
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(HeaderName::from_static("content-security-policy"), v);
    }
    response
}

/// What every page carries besides its CSP; built at compile time, so a typo cannot
/// fail at run time.
const PAGE_HEADERS: [(HeaderName, HeaderValue); 6] = [
    (
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    ),
    (CACHE_CONTROL, HeaderValue::from_static("no-store")),
    (
        HeaderName::from_static("pragma"),
        HeaderValue::from_static("no-cache"),
    ),
    (
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    ),
    (
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    ),
    (
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    ),
];

/// An HTML error page.
pub fn error(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    render(status, &ErrorPage { title, message }, None)
}

/// The origin (`scheme://host[:port]`) of a URL, for CSP `form-action`.
pub fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    Some(format!(
        "{}://{}",
        uri.scheme_str()?,
        uri.authority()?.as_str()
    ))
}

/// A 302 to `location`.
pub fn redirect(location: &str) -> Response<Body> {
    redirect_with_status(StatusCode::FOUND, location)
}

/// A 303 to `location`, after a form POST, so the browser follows with a GET.
pub fn see_other(location: &str) -> Response<Body> {
    redirect_with_status(StatusCode::SEE_OTHER, location)
}

fn redirect_with_status(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
