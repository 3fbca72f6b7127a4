//! The function's routes: `GET /` (the page, to a signed-in person, showing only what they can
//! read), `GET /auth/callback` (GitHub's redirect back) and `GET /auth/signout`. Without the
//! OAuth keys every route answers 404: nobody could be told apart.

use std::sync::Arc;

use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use shared::config::Config;
use shared::ports::{Clock, NamedQueues, StateStore};
use tracing::{info, warn};

use crate::render;
use crate::signin::{self, SignIn, SignInError};

/// What the function needs, built once per cold start.
pub struct Deps {
    pub config: Arc<Config>,
    pub state: Arc<dyn StateStore>,
    /// The stack's dead-letter queues, by name.
    pub dead_letters: NamedQueues,
    pub clock: Arc<dyn Clock>,
    /// `None` without `github_oauth_client_id` / `github_oauth_client_secret`.
    pub signin: Option<SignIn>,
}

/// One request, as the routes read it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    /// The raw query string.
    pub query: &'a str,
    /// The `Cookie` header.
    pub cookies: Option<&'a str>,
    /// `https://` and the host the browser asked (the callback URL is built on it).
    pub origin: &'a str,
}

/// An answer: an HTML document (or a redirect) and the cookies it sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    pub cookies: Vec<String>,
    pub body: String,
}

impl Reply {
    fn page(status: StatusCode, body: String) -> Self {
        Self {
            status,
            location: None,
            cookies: Vec::new(),
            body,
        }
    }

    fn notice(status: StatusCode, title: &str, text: &str) -> Self {
        Self::page(status, render::notice(title, text))
    }

    fn redirect(location: String) -> Self {
        Self {
            status: StatusCode::FOUND,
            location: Some(location),
            cookies: Vec::new(),
            body: String::new(),
        }
    }

    fn with_cookie(mut self, cookie: String) -> Self {
        self.cookies.push(cookie);
        self
    }

    /// The HTTP response: every cookie its own `Set-Cookie` (lambda_http moves them into the
    /// payload 2.0 `cookies` array), never cached, never framed, no script allowed.
    pub fn into_response(self) -> Response<Body> {
        let mut response = Response::builder()
            .status(self.status)
            .header("content-type", "text/html; charset=utf-8")
            .header("cache-control", "no-store")
            .header(
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            )
            .header("x-content-type-options", "nosniff")
            .header("referrer-policy", "same-origin");
        if let Some(location) = self.location {
            response = response.header("location", location);
        }
        for cookie in self.cookies {
            response = response.header("set-cookie", cookie);
        }
        response
            .body(Body::Text(self.body))
            .expect("a status, text headers and a body always build a response")
    }
}

/// The Lambda entry point (API Gateway HTTP API, payload 2.0).
pub async fn handle(
    deps: &Deps,
    request: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let origin = origin(&request);
    let asked = Asked {
        method: request.method(),
        path: request.uri().path(),
        query: request.uri().query().unwrap_or(""),
        cookies: request
            .headers()
            .get("cookie")
            .and_then(|v| v.to_str().ok()),
        origin: &origin,
    };
    Ok(answer(deps, asked).await.into_response())
}

/// `https://` and the domain API Gateway was asked on (its own or a custom domain); the `Host`
/// header only where there is no request context.
fn origin(request: &Request) -> String {
    let domain = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.domain_name.clone(),
        _ => None,
    };
    let host = domain.or_else(|| host(request.headers()));
    format!("https://{}", host.unwrap_or_default())
}

fn host(headers: &HeaderMap) -> Option<String> {
    headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Routes one request.
pub async fn answer(deps: &Deps, asked: Asked<'_>) -> Reply {
    let Some(signin) = &deps.signin else {
        return Reply::notice(StatusCode::NOT_FOUND, "Not found", "Nothing is here.");
    };
    if asked.method != Method::GET && asked.method != Method::HEAD {
        return Reply::notice(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "This page is only read.",
        );
    }
    let now = deps.clock.unix();
    let callback = format!("{}/auth/callback", asked.origin);
    match asked.path {
        "/" => match signin.session(asked.cookies, now) {
            Some(session) => page(deps, &session, now).await,
            None => start(signin, &callback, now, asked.cookies),
        },
        "/auth/callback" => finish(deps, signin, asked, &callback, now).await,
        "/auth/signout" => Reply::notice(
            StatusCode::OK,
            "Signed out",
            "You are signed out. <a href=\"/\">Sign in again</a>.",
        )
        .with_cookie(signin::clear_cookie(signin::SESSION_COOKIE)),
        _ => Reply::notice(StatusCode::NOT_FOUND, "Not found", "Nothing is here."),
    }
}

/// The page as the signed-in person may see it: only their repos are read, so the newest
/// builds shown are the newest of theirs.
async fn page(deps: &Deps, session: &signin::Session, now: i64) -> Reply {
    let state: &(dyn StateStore + 'static) = deps.state.as_ref();
    let mut theirs = (*deps.config).clone();
    theirs
        .repos
        .retain(|repo, _| session.repos.iter().any(|r| r.eq_ignore_ascii_case(repo)));
    match crate::gather(state, &theirs, &deps.dead_letters, now).await {
        Ok(page) => {
            let mut page = page.only(|repo| session.repos.iter().any(|r| r == repo), &deps.config);
            page.viewer = Some(session.login.clone());
            Reply::page(StatusCode::OK, render::html(&page, now))
        }
        Err(e) => {
            warn!(error = %e, "the page's records could not be read");
            Reply::notice(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not available",
                "The state table could not be read just now. Reload in a moment.",
            )
        }
    }
}

/// No (valid) session: off to GitHub, with a new `state`. A tampered or expired session
/// cookie is removed on the way.
fn start(signin: &SignIn, callback: &str, now: i64, cookies: Option<&str>) -> Reply {
    match signin.start(callback, now) {
        Ok((location, state_cookie)) => {
            let reply = Reply::redirect(location).with_cookie(state_cookie);
            if signin::cookie(cookies, signin::SESSION_COOKIE).is_some() {
                reply.with_cookie(signin::clear_cookie(signin::SESSION_COOKIE))
            } else {
                reply
            }
        }
        Err(e) => Reply::notice(
            StatusCode::SERVICE_UNAVAILABLE,
            "Not available",
            &render::escape(&e.to_string()),
        ),
    }
}

/// GitHub's redirect back: `?code=&state=` (or `?error=` when the person said no).
async fn finish(deps: &Deps, signin: &SignIn, asked: Asked<'_>, callback: &str, now: i64) -> Reply {
    let param = |name: &str| {
        form_urlencoded::parse(asked.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let clear_state = signin::clear_cookie(signin::STATE_COOKIE);
    let again = "<a href=\"/\">Sign in again</a>.";
    let Some(pending) = signin.pending(asked.cookies, &param("state").unwrap_or_default(), now)
    else {
        warn!("sign-in refused: no sign-in in progress with that state");
        return Reply::notice(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            &format!(
                "This sign-in was not started here, or it took longer than ten minutes. {again}"
            ),
        )
        .with_cookie(clear_state);
    };
    if let Some(error) = param("error") {
        let said = param("error_description").unwrap_or(error);
        return Reply::notice(
            StatusCode::FORBIDDEN,
            "Not signed in",
            &format!("GitHub said: {}. {again}", render::escape(&said)),
        )
        .with_cookie(clear_state);
    }
    let code = param("code").unwrap_or_default();
    let repos: Vec<String> = deps.config.repos.keys().cloned().collect();
    match signin.finish(&code, &pending, callback, &repos, now).await {
        Ok(session) => {
            info!(login = %session.login, repos = session.repos.len(), "signed in");
            Reply::redirect("/".to_string())
                .with_cookie(clear_state)
                .with_cookie(signin.session_cookie(&session))
        }
        Err(e) => {
            warn!(error = %e, "sign-in failed");
            let status = match e {
                SignInError::NoAccess(_) | SignInError::Refused(_) => StatusCode::FORBIDDEN,
                SignInError::Unavailable(_) => StatusCode::BAD_GATEWAY,
            };
            Reply::notice(
                status,
                "Not signed in",
                &format!("{}. {again}", render::escape(&e.to_string())),
            )
            .with_cookie(clear_state)
        }
    }
}
