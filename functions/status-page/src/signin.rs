//! Sign-in with GitHub: the OAuth web application flow (docs: "Authorizing OAuth apps" and
//! "Generating a user access token for a GitHub App"), with `state` and PKCE (S256), and what
//! the browser keeps afterwards: a signed, expiring session cookie naming the person and the
//! configured repositories they can read. The user access token is used for the sign-in's
//! own questions (`GET /user`, `GET /repos/{owner}/{repo}` per configured repo) and dropped.
//!
//! Both cookies are `__Host-` cookies (`Secure`, `Path=/`, no `Domain`: RFC 6265bis "Cookie
//! Name Prefixes"), `HttpOnly` and `SameSite=Lax`: GitHub's redirect back to the callback is a
//! cross-site top-level navigation, which `Strict` would strip the state cookie from. Each is
//! `base64url(JSON).hex(HMAC-SHA256)`, checked in constant time before its JSON is read, under
//! a key derived from the OAuth client secret (rotating the secret signs everyone out).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use shared::github::client::Rest;
use shared::ports::GitHubError;
use shared::secrets::{SecretString, Secrets};

use crate::person::{Person, PersonCalls};

/// The session cookie: who signed in and what they may read.
pub const SESSION_COOKIE: &str = "__Host-shipline_session";
/// The sign-in in progress: the OAuth `state` and the PKCE verifier.
pub const STATE_COOKIE: &str = "__Host-shipline_oauth";
/// A session lasts as long as a GitHub App's user access token (`expires_in: 28800`); the
/// repos someone may read are asked again at the next sign-in.
pub const SESSION_SECS: i64 = 8 * 3600;
/// GitHub's authorization code expires after ten minutes: so does the sign-in in progress.
pub const STATE_SECS: i64 = 600;
/// Where people sign in (`GITHUB_WEB_URL` for GitHub Enterprise Server or a fake).
pub const PUBLIC_WEB: &str = "https://github.com";
/// Configured repos asked about at once during a sign-in (each is one `GET /repos/...`).
const CONCURRENT_CHECKS: usize = 8;

/// The GitHub App shipline signs people in with (its client id and secret).
pub struct SignIn {
    client_id: String,
    client_secret: SecretString,
    /// The cookies' HMAC key, derived from the client secret.
    key: SecretString,
    web: String,
    api: Rest,
    http: reqwest::Client,
}

impl fmt::Debug for SignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignIn")
            .field("client_id", &self.client_id)
            .field("web", &self.web)
            .finish_non_exhaustive()
    }
}

/// What the session cookie holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub login: String,
    /// GitHub's id of the person.
    pub id: u64,
    /// The configured repos they could read when they signed in.
    pub repos: Vec<String>,
    /// Unix seconds.
    pub exp: i64,
}

/// What the state cookie holds while GitHub asks the person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub state: String,
    pub verifier: String,
    pub exp: i64,
}

/// Why a sign-in did not give a session; each is said to the person on the page.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("GitHub said: {0}")]
    Refused(String),
    #[error("GitHub could not be asked: {0}")]
    Unavailable(String),
    #[error("@{0} cannot read any repository this page covers")]
    NoAccess(String),
}

impl From<GitHubError> for SignInError {
    fn from(e: GitHubError) -> Self {
        match e {
            GitHubError::Rejected { status, message } => {
                SignInError::Refused(format!("{status} {message}"))
            }
            other => SignInError::Unavailable(other.to_string()),
        }
    }
}

impl SignIn {
    /// `web`: where people sign in (`https://github.com`); `api`: the REST API.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: SecretString,
        http: reqwest::Client,
        web: &str,
        api: &str,
    ) -> Self {
        let key = shared::signature::sign_hex(
            client_secret.expose().as_bytes(),
            b"shipline status page cookies v1",
        );
        Self {
            client_id: client_id.into(),
            client_secret,
            key: SecretString::new(key),
            web: web.trim_end_matches('/').to_string(),
            api: Rest::new(http.clone(), api),
            http,
        }
    }

    /// From `github_oauth_client_id` and `github_oauth_client_secret`; without both there is
    /// no sign-in (and no page).
    pub fn from_secrets(
        secrets: &Secrets,
        http: reqwest::Client,
        web: &str,
        api: &str,
    ) -> Option<Self> {
        let id = secrets.get("github_oauth_client_id")?.expose().to_string();
        let secret = secrets.get("github_oauth_client_secret")?.clone();
        (!id.is_empty() && !secret.expose().is_empty())
            .then(|| Self::new(id, secret, http, web, api))
    }

    fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let payload = B64.encode(serde_json::to_vec(value).expect("plain fields serialize"));
        let mac = shared::signature::sign_hex(
            self.key.expose().as_bytes(),
            format!("{purpose}.{payload}").as_bytes(),
        );
        format!("{payload}.{mac}")
    }

    /// The value, when its MAC is right (checked before anything is parsed).
    fn open<T: DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        let (payload, mac) = sealed.rsplit_once('.')?;
        shared::signature::verify_hex(
            self.key.expose().as_bytes(),
            format!("{purpose}.{payload}").as_bytes(),
            mac,
        )
        .ok()?;
        serde_json::from_slice(&B64.decode(payload).ok()?).ok()
    }

    /// The signed-in person, from the request's `Cookie` header; none when absent, tampered
    /// with or expired.
    pub fn session(&self, cookies: Option<&str>, now: i64) -> Option<Session> {
        let session: Session = self.open("session", cookie(cookies, SESSION_COOKIE)?)?;
        (session.exp > now).then_some(session)
    }

    /// The `Set-Cookie` that signs `session` in.
    pub fn session_cookie(&self, session: &Session) -> String {
        set_cookie(SESSION_COOKIE, &self.seal("session", session), None)
    }

    /// A new sign-in: where to send the browser (GitHub's authorize page) and the `Set-Cookie`
    /// that remembers its `state` and PKCE verifier.
    pub fn start(&self, redirect_uri: &str, now: i64) -> Result<(String, String), SignInError> {
        let pending = Pending {
            state: random_token()?,
            verifier: random_token()?,
            exp: now + STATE_SECS,
        };
        let challenge = B64.encode(Sha256::digest(pending.verifier.as_bytes()));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &pending.state)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("allow_signup", "false")
            .finish();
        let location = format!("{}/login/oauth/authorize?{query}", self.web);
        let cookie = set_cookie(
            STATE_COOKIE,
            &self.seal("oauth", &pending),
            Some(STATE_SECS),
        );
        Ok((location, cookie))
    }

    /// The sign-in in progress, when the callback's `state` is the one this browser was given
    /// (compared in constant time) and it has not expired.
    pub fn pending(&self, cookies: Option<&str>, state: &str, now: i64) -> Option<Pending> {
        let pending: Pending = self.open("oauth", cookie(cookies, STATE_COOKIE)?)?;
        (pending.exp > now && shared::signature::token_matches(state, &pending.state))
            .then_some(pending)
    }

    /// Exchanges the code, asks who signed in and which of `repos` they can read, and drops
    /// the token.
    pub async fn finish(
        &self,
        code: &str,
        pending: &Pending,
        redirect_uri: &str,
        repos: &[String],
        now: i64,
    ) -> Result<Session, SignInError> {
        let token = self.exchange(code, &pending.verifier, redirect_uri).await?;
        let person: Person = self.api.person(&token).await?;
        let readable = self.readable(&token, repos).await?;
        if readable.is_empty() {
            return Err(SignInError::NoAccess(person.login));
        }
        Ok(Session {
            login: person.login,
            id: person.id,
            repos: readable,
            exp: now + SESSION_SECS,
        })
    }

    /// `POST /login/oauth/access_token`, answered in JSON (`Accept: application/json`). GitHub
    /// answers a bad code, a wrong secret or a mismatched `redirect_uri` with **200** and an
    /// `error` (docs: "Troubleshooting OAuth app access token request errors"; Octokit's
    /// `oauthRequest` checks `"error" in response.data` for the same reason).
    async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<SecretString, SignInError> {
        #[derive(Deserialize)]
        struct Answer {
            access_token: Option<String>,
            error: Option<String>,
            error_description: Option<String>,
        }
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.expose())
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", verifier)
            .finish();
        let response = self
            .http
            .post(format!("{}/login/oauth/access_token", self.web))
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("user-agent", shared::http::USER_AGENT)
            .body(body)
            .send()
            .await
            .map_err(|e| SignInError::Unavailable(shared::http::transport_error(e)))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(SignInError::Unavailable(status.to_string()));
        }
        let answer: Answer = response
            .json()
            .await
            .map_err(|e| SignInError::Unavailable(shared::http::transport_error(e)))?;
        match answer {
            Answer {
                access_token: Some(token),
                error: None,
                ..
            } if !token.is_empty() => Ok(SecretString::new(token)),
            Answer {
                error,
                error_description,
                ..
            } => Err(SignInError::Refused(
                error_description
                    .or(error)
                    .unwrap_or_else(|| format!("{status} without a token")),
            )),
        }
    }

    /// Which of `repos` the token's person can read, a few at a time, in the config's order.
    async fn readable(
        &self,
        token: &SecretString,
        repos: &[String],
    ) -> Result<Vec<String>, SignInError> {
        let mut readable = Vec::new();
        for chunk in repos.chunks(CONCURRENT_CHECKS) {
            let mut checks = tokio::task::JoinSet::new();
            for (i, repo) in chunk.iter().enumerate() {
                let (api, token, repo) = (self.api.clone(), token.clone(), repo.clone());
                checks.spawn(async move { (i, api.can_read(&token, &repo).await) });
            }
            let mut answers = vec![false; chunk.len()];
            while let Some(joined) = checks.join_next().await {
                let (i, can) = joined.map_err(|e| SignInError::Unavailable(e.to_string()))?;
                answers[i] = can?;
            }
            readable.extend(
                chunk
                    .iter()
                    .zip(answers)
                    .filter(|(_, can)| *can)
                    .map(|(repo, _)| repo.clone()),
            );
        }
        Ok(readable)
    }
}

/// A cookie's value in a `Cookie` header (`a=1; b=2`).
pub fn cookie<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: `__Host-` rules, `HttpOnly`, `SameSite=Lax`; a session cookie unless
/// `max_age` says otherwise.
pub fn set_cookie(name: &str, value: &str, max_age: Option<i64>) -> String {
    let mut cookie = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax");
    if let Some(secs) = max_age {
        cookie.push_str(&format!("; Max-Age={secs}"));
    }
    cookie
}

/// The `Set-Cookie` that removes a cookie.
pub fn clear_cookie(name: &str) -> String {
    set_cookie(name, "", Some(0))
}

/// 32 random bytes, base64url: an OAuth `state`, or a PKCE verifier (43 characters, the least
/// RFC 7636 allows).
fn random_token() -> Result<String, SignInError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| SignInError::Unavailable(format!("no randomness: {e}")))?;
    Ok(B64.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signin(secret: &str) -> SignIn {
        SignIn::new(
            "Iv1.client",
            SecretString::new(secret),
            reqwest::Client::new(),
            "https://github.example",
            "https://api.github.example",
        )
    }

    fn session(exp: i64) -> Session {
        Session {
            login: "ana".into(),
            id: 7,
            repos: vec!["team/a".into()],
            exp,
        }
    }

    fn value(set_cookie: &str) -> &str {
        set_cookie
            .split_once('=')
            .unwrap()
            .1
            .split(';')
            .next()
            .unwrap()
    }

    #[test]
    fn a_session_cookie_reads_back_until_it_expires() {
        let s = signin("s3cret");
        let set = s.session_cookie(&session(1000));
        assert!(set.starts_with("__Host-shipline_session="), "{set}");
        assert!(
            set.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax"),
            "{set}"
        );
        let header = format!("other=1; {SESSION_COOKIE}={}", value(&set));
        assert_eq!(s.session(Some(&header), 999), Some(session(1000)));
        assert_eq!(s.session(Some(&header), 1000), None, "expired");
    }

    #[test]
    fn a_tampered_or_foreign_session_cookie_is_nobody() {
        let s = signin("s3cret");
        let sealed = value(&s.session_cookie(&session(1000))).to_string();
        let (payload, mac) = sealed.rsplit_once('.').unwrap();
        // Someone gives themselves another repo, keeping the MAC.
        let mut forged = session(1000);
        forged.repos.push("team/secret".into());
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        for cookie in [
            format!("{forged_payload}.{mac}"),
            format!("{payload}.{}", "0".repeat(64)),
            payload.to_string(),
            value(&signin("other").session_cookie(&session(1000))).to_string(),
        ] {
            let header = format!("{SESSION_COOKIE}={cookie}");
            assert_eq!(s.session(Some(&header), 0), None, "{cookie}");
        }
        // A state cookie is not a session, even when both are signed with the same key.
        let (_, state) = s.start("https://x/auth/callback", 0).unwrap();
        let header = format!("{SESSION_COOKIE}={}", value(&state));
        assert_eq!(s.session(Some(&header), 0), None);
    }

    #[test]
    fn the_authorize_url_carries_state_and_an_s256_challenge_of_the_kept_verifier() {
        let s = signin("s3cret");
        let (location, set) = s.start("https://pages.example/auth/callback", 100).unwrap();
        assert!(set.ends_with("; Max-Age=600"), "{set}");
        let (base, query) = location.split_once('?').unwrap();
        assert_eq!(base, "https://github.example/login/oauth/authorize");
        let q: std::collections::HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(q["client_id"], "Iv1.client");
        assert_eq!(q["redirect_uri"], "https://pages.example/auth/callback");
        assert_eq!(q["code_challenge_method"], "S256");
        let header = format!("{STATE_COOKIE}={}", value(&set));
        let pending = s.pending(Some(&header), &q["state"], 100).unwrap();
        assert_eq!(pending.verifier.len(), 43);
        assert_eq!(
            q["code_challenge"],
            B64.encode(Sha256::digest(pending.verifier.as_bytes()))
        );
        assert!(s.pending(Some(&header), "another state", 100).is_none());
        assert!(
            s.pending(Some(&header), &q["state"], 700).is_none(),
            "expired"
        );
        assert!(s.pending(None, &q["state"], 100).is_none());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = signin("s3cret-value");
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cret") && !shown.contains(s.key.expose()));
    }
}
