//! GitHub webhook deliveries: `X-Hub-Signature-256` verification and the typed payloads shipline
//! reads (`push`, `pull_request`, `ping`). Only the fields used are modelled; the rest of a
//! payload (which can be megabytes) is skipped by serde without being kept.

use serde::Deserialize;
use shared::signature::SignedHeader;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";

/// `X-Hub-Signature-256`: `sha256=` and the hex HMAC-SHA256 of the raw body, keyed with the
/// webhook secret.
pub static SIGNATURE: SignedHeader = SignedHeader {
    name: "X-Hub-Signature-256",
    prefix: "sha256=",
};

/// The header value GitHub would send for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    SIGNATURE.sign(secret, body)
}

// ---------------------------------------------------------------------------------------------
// Payloads

#[derive(Debug, Clone, Deserialize)]
pub struct Repository {
    pub full_name: String,
    #[serde(default)]
    pub html_url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Installation {
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub login: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PushEvent {
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub before: String,
    pub after: String,
    #[serde(default)]
    pub created: bool,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub forced: bool,
    pub compare: String,
    pub head_commit: Option<Commit>,
    pub pusher: Pusher,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pusher {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Commit {
    pub id: String,
    pub message: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub author: Option<CommitAuthor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommitAuthor {
    pub name: String,
    #[serde(default)]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestEvent {
    pub action: String,
    pub number: u64,
    pub pull_request: PullRequest,
    pub repository: Repository,
    #[serde(default)]
    pub installation: Option<Installation>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequest {
    pub title: String,
    pub html_url: String,
    pub user: User,
    pub head: PullRequestRef,
    pub base: PullRequestRef,
    #[serde(default)]
    pub draft: Option<bool>,
    #[serde(default)]
    pub merged: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestRef {
    pub sha: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// `null` once the fork is deleted.
    pub repo: Option<Repository>,
}

impl PullRequestEvent {
    /// The head lives in another repository than the base, or its repository is gone: treated
    /// as untrusted code either way.
    pub fn is_from_fork(&self) -> bool {
        match (&self.pull_request.head.repo, &self.pull_request.base.repo) {
            (Some(head), Some(base)) => !head.full_name.eq_ignore_ascii_case(&base.full_name),
            (Some(head), None) => !head
                .full_name
                .eq_ignore_ascii_case(&self.repository.full_name),
            (None, _) => true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PingEvent {
    #[serde(default)]
    pub zen: Option<String>,
    #[serde(default)]
    pub hook_id: Option<u64>,
    #[serde(default)]
    pub repository: Option<Repository>,
}

/// Why a body could not be read as the event it claims to be, without quoting the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("body is not valid JSON (line {line}, column {column})")]
    Malformed { line: usize, column: usize },
    #[error("payload is missing the field `{0}`")]
    MissingField(String),
    #[error("payload has a field of the wrong type (line {line}, column {column})")]
    WrongType { line: usize, column: usize },
}

/// Parses a payload; errors name a missing field but never repeat a value from the body.
pub fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, PayloadError> {
    serde_json::from_slice(body).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        match e.classify() {
            serde_json::error::Category::Data => {
                let text = e.to_string();
                match text
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next())
                {
                    Some(field) => PayloadError::MissingField(field.to_string()),
                    None => PayloadError::WrongType { line, column },
                }
            }
            _ => PayloadError::Malformed { line, column },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::signature::SignatureError;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const VECTOR: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_published_vector_signs_and_verifies() {
        assert_eq!(sign(SECRET, BODY), VECTOR);
        assert_eq!(SIGNATURE.verify(SECRET, BODY, Some(VECTOR)), Ok(()));
    }

    #[test]
    fn a_tampered_body_or_signature_is_a_mismatch() {
        assert_eq!(
            SIGNATURE.verify(SECRET, b"Hello, World?", Some(VECTOR)),
            Err(SignatureError::Mismatch(&SIGNATURE))
        );
        let mut flipped = VECTOR.to_string();
        flipped.replace_range(70..71, "0");
        assert_ne!(flipped, VECTOR);
        assert_eq!(
            SIGNATURE.verify(SECRET, BODY, Some(&flipped)),
            Err(SignatureError::Mismatch(&SIGNATURE))
        );
        assert_eq!(
            SIGNATURE.verify(b"another secret", BODY, Some(VECTOR)),
            Err(SignatureError::Mismatch(&SIGNATURE))
        );
    }

    #[test]
    fn a_truncated_or_foreign_signature_is_malformed() {
        assert_eq!(
            SIGNATURE.verify(SECRET, BODY, Some(&VECTOR[..VECTOR.len() - 2])),
            Err(SignatureError::Malformed(&SIGNATURE))
        );
        assert_eq!(
            SIGNATURE.verify(SECRET, BODY, Some("sha256=")),
            Err(SignatureError::Malformed(&SIGNATURE))
        );
        assert_eq!(
            SIGNATURE.verify(SECRET, BODY, Some("")),
            Err(SignatureError::Malformed(&SIGNATURE))
        );
        assert_eq!(
            SIGNATURE.verify(
                SECRET,
                BODY,
                Some("sha1=01d4c5d5a9d7d0ab3f1ba3f9d7b4e8f6b0b8c4a3")
            ),
            Err(SignatureError::Malformed(&SIGNATURE))
        );
        let not_hex = format!("sha256={}", "zz".repeat(32));
        assert_eq!(
            SIGNATURE.verify(SECRET, BODY, Some(&not_hex)),
            Err(SignatureError::Malformed(&SIGNATURE))
        );
    }

    #[test]
    fn upper_case_hex_is_the_same_mac_but_the_prefix_is_exact() {
        let upper = format!("sha256={}", VECTOR[7..].to_uppercase());
        assert_eq!(SIGNATURE.verify(SECRET, BODY, Some(&upper)), Ok(()));
        let upper_prefix = VECTOR.replace("sha256=", "SHA256=");
        assert_eq!(
            SIGNATURE.verify(SECRET, BODY, Some(&upper_prefix)),
            Err(SignatureError::Malformed(&SIGNATURE))
        );
    }

    #[test]
    fn a_missing_signature_is_named() {
        assert_eq!(
            SIGNATURE.verify(SECRET, BODY, None),
            Err(SignatureError::Missing(&SIGNATURE))
        );
    }

    #[test]
    fn the_published_payloads_parse() {
        let push: PushEvent = parse(include_bytes!("../testdata/github-push.json")).unwrap();
        assert_eq!(push.git_ref, "refs/heads/master");
        assert!(push.created);
        assert_eq!(push.head_commit.as_ref().unwrap().id, push.after);
        assert!(push.installation.is_some());

        for fixture in [
            &include_bytes!("../testdata/github-pull_request-opened.json")[..],
            include_bytes!("../testdata/github-pull_request-synchronize.json"),
            include_bytes!("../testdata/github-pull_request-closed.json"),
        ] {
            let pr: PullRequestEvent = parse(fixture).unwrap();
            assert!(!pr.is_from_fork(), "{}", pr.action);
            assert_eq!(pr.pull_request.head.sha.len(), 40);
        }
        let ping: PingEvent = parse(include_bytes!("../testdata/github-ping.json")).unwrap();
        assert!(ping.hook_id.is_some());
    }

    #[test]
    fn parse_errors_name_the_field_but_never_quote_the_body() {
        let err = parse::<PushEvent>(br#"{"ref":"refs/heads/x","before":"a"}"#).unwrap_err();
        assert_eq!(err, PayloadError::MissingField("after".into()));
        let err = parse::<PushEvent>(br#"{"ref": 12345678}"#).unwrap_err();
        assert!(!err.to_string().contains("12345678"), "{err}");
        assert!(matches!(
            parse::<PushEvent>(b"{not json").unwrap_err(),
            PayloadError::Malformed { .. }
        ));
    }

    #[test]
    fn a_pull_request_whose_head_repo_differs_or_is_gone_is_from_a_fork() {
        let mut pr: PullRequestEvent = parse(include_bytes!(
            "../testdata/github-pull_request-opened.json"
        ))
        .unwrap();
        pr.pull_request.head.repo = Some(Repository {
            full_name: "stranger/fork".into(),
            html_url: None,
        });
        assert!(pr.is_from_fork());
        pr.pull_request.head.repo = None;
        assert!(pr.is_from_fork());
    }
}
