//! A cookie-keeping [`Browser`] that reads the one `<form method="post">` of a page and
//! submits it the way a person's browser would, for the authorization server's tests.

use super::oauth::{query_params, AuthRequest, AuthServer, PASSWORD, USER};
use reqwest::header::HeaderMap;
use reqwest::redirect::Policy;
use reqwest::{StatusCode, Url};
use scraper::{ElementRef, Html, Selector};

/// A browser: one cookie jar, no automatic redirects (it follows those that stay on the
/// gateway itself, and stops at a redirect to a client).
pub struct Browser {
    http: reqwest::Client,
}

/// A fetched page (or redirect), with the URL it came from.
#[derive(Debug)]
pub struct Page {
    pub url: Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// The page's one `<form method="post">`.
#[derive(Debug, Clone)]
pub struct Form {
    /// The form's `action`, resolved against the page URL.
    pub action: Url,
    /// `<input type="hidden">` names and values, in document order.
    pub hidden: Vec<(String, String)>,
    /// Names of the other inputs.
    pub inputs: Vec<String>,
    /// Submit buttons' `(name, value)`.
    pub buttons: Vec<(String, String)>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Self::with(reqwest::Client::builder())
    }

    /// A browser for `server`: over its HTTPS listener (trusting its certificate) when it
    /// was started with TLS, else plain HTTP.
    pub fn for_server(server: &AuthServer) -> Browser {
        match &server.cert {
            Some(pem) => Self::with(super::tls::builder(pem, &server.gw)),
            None => Self::new(),
        }
    }

    fn with(builder: reqwest::ClientBuilder) -> Browser {
        let http = builder
            .cookie_store(true)
            .redirect(Policy::none())
            .build()
            .expect("client builds");
        Browser { http }
    }

    /// `GET url` (no redirect followed).
    pub async fn get(&self, url: &str) -> Page {
        let url = Url::parse(url).expect("absolute URL");
        let r = self.http.get(url.clone()).send().await.expect("GET sent");
        Page::read(url, r).await
    }

    /// `POST` a form body to `url` (no redirect followed).
    pub async fn post(&self, url: &Url, fields: &[(String, String)]) -> Page {
        let r = self
            .http
            .post(url.clone())
            .form(fields)
            .send()
            .await
            .expect("POST sent");
        Page::read(url.clone(), r).await
    }

    /// Follows redirects that stay on the page's own origin (at most 10), as a browser
    /// would; a redirect elsewhere (to the client) is returned as it is.
    pub async fn follow(&self, mut page: Page) -> Page {
        for _ in 0..10 {
            match page.location() {
                Some(next)
                    if page.status.is_redirection() && next.origin() == page.url.origin() =>
                {
                    page = self.get(next.as_str()).await;
                }
                _ => return page,
            }
        }
        panic!("more than 10 redirects, the last to {:?}", page.location());
    }

    /// `GET url` and follow redirects on the same origin.
    pub async fn open(&self, url: &str) -> Page {
        let page = self.get(url).await;
        self.follow(page).await
    }

    /// Submits `fields` to the form's action and follows same-origin redirects.
    pub async fn submit(&self, form: &Form, fields: &[(String, String)]) -> Page {
        let page = self.post(&form.action, fields).await;
        self.follow(page).await
    }

    /// Fills the login form of `page` and submits it.
    pub async fn log_in(&self, page: &Page, username: &str, password: &str) -> Page {
        let form = page.form();
        let fields = form.fill(&[("username", username), ("password", password)]);
        self.submit(&form, &fields).await
    }

    /// Presses the consent form's `decision` button with `value` (approve or deny).
    pub async fn decide(&self, page: &Page, value: &str) -> Page {
        let form = page.form();
        let fields = form.fill(&[("decision", value)]);
        self.submit(&form, &fields).await
    }

    /// From `/oauth/authorize` to the consent page, logging in as [`USER`] if asked to.
    pub async fn consent_page(&self, server: &AuthServer, request: &AuthRequest) -> Page {
        let page = self.open(&request.url(server)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let page = if page.form().inputs.iter().any(|i| i == "password") {
            self.log_in(&page, USER, PASSWORD).await
        } else {
            page
        };
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.url.path().ends_with("/consent"),
            "not consent: {}",
            page.url
        );
        page
    }

    /// Approves `request` and returns where the browser was sent (the client's redirect URI).
    pub async fn approve(&self, server: &AuthServer, request: &AuthRequest) -> Url {
        let consent = self.consent_page(server, request).await;
        let done = self.decide(&consent, "approve").await;
        assert!(
            done.status.is_redirection(),
            "{}: {}",
            done.status,
            done.body
        );
        done.location().expect("a redirect to the client")
    }

    /// Runs the code flow and returns the code (checking the `state` came back).
    pub async fn code(&self, server: &AuthServer, request: &AuthRequest) -> String {
        let to = self.approve(server, request).await;
        let params = query_params(&to);
        assert_eq!(
            params.get("state").map(String::as_str),
            Some(request.state())
        );
        params
            .get("code")
            .unwrap_or_else(|| panic!("no code in {to}"))
            .clone()
    }
}

impl Page {
    async fn read(url: Url, r: reqwest::Response) -> Page {
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.text().await.expect("body read");
        Page {
            url,
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header"))
    }

    /// The `Location`, resolved against the page URL.
    pub fn location(&self) -> Option<Url> {
        self.header("location")
            .map(|l| self.url.join(l).expect("Location is a URL"))
    }

    /// Every `Set-Cookie` of this response.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().expect("ASCII cookie").to_string())
            .collect()
    }

    pub fn is_html(&self) -> bool {
        self.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    }

    /// The page's text, with whitespace runs collapsed.
    pub fn text(&self) -> String {
        let html = Html::parse_document(&self.body);
        collapse(html.root_element().text())
    }

    /// The texts of elements matching a CSS selector.
    pub fn texts(&self, selector: &str) -> Vec<String> {
        let html = Html::parse_document(&self.body);
        let sel = Selector::parse(selector).expect("valid selector");
        html.select(&sel).map(|e| collapse(e.text())).collect()
    }

    /// How many `<form method="post">` the page has.
    pub fn post_forms(&self) -> usize {
        let html = Html::parse_document(&self.body);
        html.select(&selector("form"))
            .filter(|f| is_post(f))
            .count()
    }

    /// The page's one `<form method="post">`, read as a browser would.
    #[track_caller]
    pub fn form(&self) -> Form {
        let html = Html::parse_document(&self.body);
        let forms: Vec<ElementRef> = html.select(&selector("form")).filter(is_post).collect();
        assert_eq!(
            forms.len(),
            1,
            "one POST form on {}: {}",
            self.url,
            self.body
        );
        let form = forms[0];
        // No action (or an empty one) submits to the page's own URL.
        let action = match form.value().attr("action").filter(|a| !a.is_empty()) {
            Some(a) => self.url.join(a).expect("form action is a URL"),
            None => self.url.clone(),
        };
        let mut hidden = Vec::new();
        let mut inputs = Vec::new();
        for input in form.select(&selector("input[name]")) {
            let name = input.value().attr("name").expect("selected by name");
            let kind = input.value().attr("type").unwrap_or("text");
            if kind.eq_ignore_ascii_case("hidden") {
                let value = input.value().attr("value").unwrap_or("");
                hidden.push((name.to_string(), value.to_string()));
            } else {
                inputs.push(name.to_string());
            }
        }
        let buttons = form
            .select(&selector("button[name], input[type=submit][name]"))
            .map(|b| {
                let name = b.value().attr("name").expect("selected by name");
                (
                    name.to_string(),
                    b.value().attr("value").unwrap_or("").to_string(),
                )
            })
            .collect();
        Form {
            action,
            hidden,
            inputs,
            buttons,
        }
    }
}

impl Form {
    /// The body a browser would send: every hidden field, then `values` for inputs the
    /// form has (a `(name, value)` naming a submit button presses that button).
    #[track_caller]
    pub fn fill(&self, values: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut fields = self.hidden.clone();
        for (name, value) in values {
            let is_input = self.inputs.iter().any(|i| i == name);
            let is_button = self.buttons.iter().any(|(n, v)| n == name && v == value);
            assert!(
                is_input || is_button,
                "the form has no input or button {name}={value}: {self:?}"
            );
            fields.push((name.to_string(), value.to_string()));
        }
        fields
    }

    /// [`Form::fill`] without the hidden fields (the CSRF token left out).
    pub fn fill_without_hidden(&self, values: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut fields = self.fill(values);
        fields.retain(|(k, _)| !self.hidden.iter().any(|(h, _)| h == k));
        fields
    }

    /// [`Form::fill`] with the hidden fields of `other` (another browser's form) instead.
    pub fn fill_with_hidden_of(
        &self,
        other: &Form,
        values: &[(&str, &str)],
    ) -> Vec<(String, String)> {
        let mut fields = other.hidden.clone();
        fields.extend(self.fill_without_hidden(values));
        fields
    }
}

fn selector(css: &str) -> Selector {
    Selector::parse(css).expect("valid selector")
}

fn is_post(form: &ElementRef) -> bool {
    form.value()
        .attr("method")
        .is_some_and(|m| m.eq_ignore_ascii_case("post"))
}

fn collapse<'a>(parts: impl Iterator<Item = &'a str>) -> String {
    parts
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
