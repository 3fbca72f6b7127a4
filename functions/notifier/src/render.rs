//! Rendering, without I/O: a `Notification` becomes the text a person reads at a glance, for
//! each kind of chat. Every piece of user text (commit messages, branch names, titles) is cut
//! first, then escaped for the channel, so an entity or a tag is never split; the whole is
//! kept within the channel's limit by cutting the user text harder, never the markup.

use crate::chat::ChatKind;
use shared::messages::{Facts, Notification, NotificationKind, short_sha};

/// Telegram allows 4096 characters after entity parsing (Bot API, `sendMessage`); the markup
/// only adds to what is counted here, so staying under it on the raw text is safe.
pub const TELEGRAM_LIMIT: usize = 4096;
/// Discord's `content` (Execute Webhook): 2000 characters.
pub const DISCORD_LIMIT: usize = 2000;
/// Slack truncates `text` beyond 40,000 characters and advises keeping it under 4,000 (Slack
/// API, `chat.postMessage`, *Truncating content*).
pub const SLACK_LIMIT: usize = 4000;

/// A message's length as the chats count it: in UTF-16 code units, the unit of Telegram's
/// entity offsets (Bot API, *MessageEntity*) and of a JavaScript string. An emoji outside the
/// Basic Multilingual Plane is two; counting characters would let a message of emoji run to
/// twice the limit, and Telegram refuses it ("message is too long").
pub fn length(text: &str) -> usize {
    text.encode_utf16().count()
}

pub fn limit(kind: ChatKind) -> usize {
    match kind {
        ChatKind::Telegram | ChatKind::Plain => TELEGRAM_LIMIT,
        ChatKind::Discord => DISCORD_LIMIT,
        ChatKind::Slack => SLACK_LIMIT,
    }
}

/// A piece of a message.
enum Piece {
    /// User text: cut to a budget, then escaped.
    Text(String, usize),
    /// shipline's own words.
    Fixed(&'static str),
    Owned(String),
    Bold(String, usize),
    Code(String, usize),
    Link {
        text: String,
        budget: usize,
        url: String,
    },
    Break,
}

use Piece::*;

fn icon_and_title(kind: NotificationKind) -> (&'static str, &'static str) {
    match kind {
        NotificationKind::BuildStarted => ("⏳", "Building"),
        NotificationKind::BuildSucceeded => ("✅", "Build passed"),
        NotificationKind::BuildFailed => ("❌", "Build failed"),
        NotificationKind::BuildSuperseded => ("⏭️", "Build superseded"),
        NotificationKind::BuildSkipped => ("⚪", "Not built"),
        NotificationKind::DeployStarted => ("🚀", "Deploying"),
        NotificationKind::DeploySucceeded => ("🟢", "Live"),
        NotificationKind::DeployFailed => ("💥", "Deploy failed, production unchanged"),
        NotificationKind::DeploySkipped => ("⏭️", "Deploy skipped"),
        NotificationKind::PromotionBlocked => ("⛔", "Not promoted"),
        NotificationKind::ActionRequested => ("⏳", "Queued"),
        NotificationKind::RolledBack => ("⏪", "Rolled back"),
        NotificationKind::ErrorAlert => ("🔥", "Error"),
        NotificationKind::OpsAlarm => ("🚨", "shipline alarm"),
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

fn repo_url(repo: &str) -> String {
    format!("https://github.com/{repo}")
}

/// The message as pieces, at a given scale of the user-text budgets.
fn pieces(n: &Notification, scale: f64) -> Vec<Piece> {
    let b = |chars: usize| ((chars as f64 * scale) as usize).max(8);
    let (icon, title) = icon_and_title(n.kind);
    let mut out = vec![Owned(format!("{icon} ")), Bold(title.to_string(), 64)];
    match n.kind {
        NotificationKind::ErrorAlert => error_alert(&mut out, &n.facts, &b),
        NotificationKind::OpsAlarm => ops_alarm(&mut out, &n.facts, &b),
        _ => build_or_deploy(&mut out, n, &b),
    }
    out
}

/// A Sentry alert: the error, where and how often, what is live, the link.
fn error_alert(out: &mut Vec<Piece>, f: &Facts, b: &dyn Fn(usize) -> usize) {
    if let Some(t) = &f.title {
        out.push(Fixed(": "));
        out.push(Bold(t.clone(), b(300)));
    }
    out.push(Break);
    let mut meta = Vec::new();
    if let Some(p) = &f.target {
        meta.push(Code(p.to_string(), b(60)));
    }
    if let Some(l) = &f.level {
        meta.push(Text(l.clone(), 16));
    }
    if let Some(c) = f.count {
        meta.push(Owned(format!("{c} events")));
    }
    if let Some(s) = &f.status {
        meta.push(Text(s.clone(), 32));
    }
    join(out, meta, " · ");
    if let Some(r) = &f.release {
        out.push(Break);
        out.push(Fixed("Live: "));
        out.push(Text(r.clone(), b(120)));
    }
    if let Some(reason) = &f.reason {
        out.push(Break);
        out.push(Text(reason.clone(), b(400)));
    }
    if let Some(url) = &f.url {
        out.push(Break);
        out.push(Link {
            text: "Open in Sentry".into(),
            budget: 32,
            url: url.clone(),
        });
    }
}

/// One of shipline's own alarms: what, why, and the commit when there is one.
fn ops_alarm(out: &mut Vec<Piece>, f: &Facts, b: &dyn Fn(usize) -> usize) {
    if let Some(t) = &f.title {
        out.push(Fixed(": "));
        out.push(Bold(t.clone(), b(300)));
    }
    if let Some(reason) = &f.reason {
        out.push(Break);
        out.push(Text(reason.clone(), b(600)));
    }
    if let (Some(repo), Some(sha)) = (&f.repo, &f.sha) {
        out.push(Break);
        out.push(Text(repo.clone(), b(100)));
        out.push(Fixed(" @ "));
        out.push(Code(short_sha(sha).to_string(), 12));
    }
}

/// Builds and deploys: where, what, who; then the target of a deploy, the reason, the log.
fn build_or_deploy(out: &mut Vec<Piece>, n: &Notification, b: &dyn Fn(usize) -> usize) {
    let f = &n.facts;
    if let Some(repo) = &f.repo {
        out.push(Fixed(" · "));
        out.push(Link {
            text: repo.clone(),
            budget: b(100),
            url: repo_url(repo),
        });
    }
    out.push(Break);
    join(out, what_and_who(f, b), " ");
    if let Some(message) = &f.commit_message {
        out.push(Break);
        out.push(Text(
            message.lines().next().unwrap_or("").to_string(),
            b(200),
        ));
    }
    if n.kind.is_deploy() && (f.target.is_some() || f.environment.is_some()) {
        deploy_target(out, f, b);
    }
    if let Some(reason) = &f.reason {
        out.push(Break);
        out.push(Text(reason.clone(), b(500)));
    }
    if let Some(url) = &f.url {
        out.push(Break);
        let label = if n.kind.is_deploy() {
            "Deployment log"
        } else {
            "Build log"
        };
        out.push(Link {
            text: label.into(),
            budget: 32,
            url: url.clone(),
        });
    }
}

/// The pull request or branch, the commit, its author and how long it took.
fn what_and_who(f: &Facts, b: &dyn Fn(usize) -> usize) -> Vec<Piece> {
    let mut what = Vec::new();
    if let Some(pr) = &f.pull_request {
        what.push(Link {
            text: format!("#{} {}", pr.number, pr.title),
            budget: b(200),
            url: pr.url.clone(),
        });
    } else if let Some(branch) = &f.branch {
        what.push(Code(branch.clone(), b(100)));
    }
    if let (Some(sha), Some(repo)) = (&f.sha, &f.repo) {
        what.push(Link {
            text: short_sha(sha).to_string(),
            budget: 12,
            url: format!("{}/commit/{sha}", repo_url(repo)),
        });
    }
    if let Some(author) = &f.author {
        what.push(Owned("by".into()));
        what.push(Text(author.clone(), b(60)));
    }
    if let Some(secs) = f.duration_secs {
        what.push(Owned(format!("· {}", duration(secs))));
    }
    what
}

/// "Target: production `heroku:pax-user` · release v42".
fn deploy_target(out: &mut Vec<Piece>, f: &Facts, b: &dyn Fn(usize) -> usize) {
    out.push(Break);
    out.push(Fixed("Target: "));
    if let Some(env) = &f.environment {
        out.push(Text(env.clone(), b(40)));
        out.push(Fixed(" "));
    }
    if let Some(t) = &f.target {
        out.push(Code(t.to_string(), b(80)));
    }
    if let Some(r) = &f.release {
        out.push(Fixed(" · release "));
        out.push(Text(r.clone(), b(40)));
    }
}

trait KindExt {
    fn is_deploy(&self) -> bool;
}

impl KindExt for NotificationKind {
    fn is_deploy(&self) -> bool {
        matches!(
            self,
            NotificationKind::DeployStarted
                | NotificationKind::DeploySucceeded
                | NotificationKind::DeployFailed
                | NotificationKind::DeploySkipped
                | NotificationKind::PromotionBlocked
                | NotificationKind::ActionRequested
                | NotificationKind::RolledBack
        )
    }
}

fn join(out: &mut Vec<Piece>, parts: Vec<Piece>, separator: &'static str) {
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(Fixed(separator));
        }
        out.push(p);
    }
}

/// Cuts to `max` characters, marking the cut.
fn cut(text: &str, max: usize) -> String {
    // Control characters (except none we want) would garble a chat line.
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    shared::messages::truncate_chars(&clean, max)
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn escape_slack(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Markdown control characters get a backslash; `@everyone` / `@here` and role or user
/// mentions are broken with a zero-width space, on top of `allowed_mentions: []`.
fn escape_discord(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\*_~`|>[]()#".contains(c) {
            out.push('\\');
        }
        out.push(c);
        if c == '@' {
            out.push('\u{200b}');
        }
    }
    out
}

/// URLs come from GitHub, AWS and Sentry, but are still kept from breaking the markup.
fn safe_url(url: &str) -> Option<&str> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 600
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"|`".contains(c));
    ok.then_some(url)
}

fn render_pieces(kind: ChatKind, pieces: &[Piece]) -> String {
    let esc = |t: &str| match kind {
        ChatKind::Plain => t.to_string(),
        ChatKind::Telegram => escape_html(t),
        ChatKind::Slack => escape_slack(t),
        ChatKind::Discord => escape_discord(t),
    };
    let mut s = String::new();
    for piece in pieces {
        match piece {
            Text(t, max) => s.push_str(&esc(&cut(t, *max))),
            Fixed(t) => s.push_str(&esc(t)),
            Owned(t) => s.push_str(&esc(t)),
            Break => s.push('\n'),
            Bold(t, max) => {
                let t = esc(&cut(t, *max));
                match kind {
                    ChatKind::Plain => s.push_str(&t),
                    ChatKind::Telegram => s.push_str(&format!("<b>{t}</b>")),
                    ChatKind::Slack => s.push_str(&format!("*{t}*")),
                    ChatKind::Discord => s.push_str(&format!("**{t}**")),
                }
            }
            Code(t, max) => {
                let raw = cut(t, *max);
                match kind {
                    ChatKind::Plain => s.push_str(&raw),
                    ChatKind::Telegram => {
                        s.push_str(&format!("<code>{}</code>", escape_html(&raw)))
                    }
                    // Inside code spans nothing is interpreted; a backtick cannot be escaped, so
                    // it is replaced.
                    ChatKind::Slack => {
                        s.push_str(&format!("`{}`", escape_slack(&raw.replace('`', "'"))))
                    }
                    ChatKind::Discord => s.push_str(&format!(
                        "`{}`",
                        raw.replace('`', "'").replace('@', "@\u{200b}")
                    )),
                }
            }
            Link { text, budget, url } => {
                let text = esc(&cut(text, *budget));
                match safe_url(url) {
                    None => s.push_str(&text),
                    Some(_) if kind == ChatKind::Plain => s.push_str(&text),
                    Some(url) => match kind {
                        ChatKind::Telegram | ChatKind::Plain => {
                            s.push_str(&format!("<a href=\"{}\">{text}</a>", escape_html(url)))
                        }
                        ChatKind::Slack => s.push_str(&format!(
                            "<{}|{}>",
                            escape_slack(url),
                            text.replace('|', "¦")
                        )),
                        ChatKind::Discord => s.push_str(&format!("[{text}](<{url}>)")),
                    },
                }
            }
        }
    }
    s
}

/// The message for `kind`, within its limit.
pub fn render(kind: ChatKind, n: &Notification) -> String {
    let max = limit(kind);
    for scale in [1.0, 0.5, 0.25, 0.1] {
        let text = render_pieces(kind, &pieces(n, scale));
        if length(&text) <= max {
            return text;
        }
    }
    // Unreachable with the budgets above; a last resort that cannot break markup.
    let (icon, title) = icon_and_title(n.kind);
    format!("{icon} {title}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::messages::PullRequestFacts;

    fn notification(kind: NotificationKind, facts: Facts) -> Notification {
        Notification {
            v: 1,
            kind,
            thread_key: "build:pax-app/User@0123456789abcdef".into(),
            channels: vec!["team".into()],
            facts,
            at: "2026-11-26T10:00:00Z".into(),
        }
    }

    fn build_facts() -> Facts {
        Facts {
            repo: Some("pax-app/User".into()),
            sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
            branch: Some("master".into()),
            commit_message: Some("Fix login redirect\n\nThe long body".into()),
            author: Some("ana".into()),
            url: Some("https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1#logEvent:group=/aws/codebuild/pax-user".into()),
            ..Facts::default()
        }
    }

    const KINDS: [ChatKind; 3] = [ChatKind::Telegram, ChatKind::Slack, ChatKind::Discord];

    #[test]
    fn a_build_story_renders_for_each_channel() {
        let started = notification(NotificationKind::BuildStarted, build_facts());
        let passed = notification(
            NotificationKind::BuildSucceeded,
            Facts {
                duration_secs: Some(192),
                ..build_facts()
            },
        );
        let failed = notification(
            NotificationKind::BuildFailed,
            Facts {
                duration_secs: Some(51),
                status: Some("FAILED".into()),
                reason: Some("Build failed in BUILD: COMMAND_EXECUTION_ERROR: Error while executing command: cargo test. Reason: exit status 101".into()),
                ..build_facts()
            },
        );
        let pr = notification(
            NotificationKind::BuildStarted,
            Facts {
                branch: None,
                commit_message: None,
                author: Some("bob".into()),
                pull_request: Some(PullRequestFacts {
                    number: 7,
                    title: "Add <search> & filters".into(),
                    url: "https://github.com/pax-app/User/pull/7".into(),
                }),
                ..build_facts()
            },
        );
        let live = notification(
            NotificationKind::DeploySucceeded,
            Facts {
                target: Some("heroku:pax-user".into()),
                environment: Some("production".into()),
                release: Some("v42".into()),
                url: Some("https://dashboard.heroku.com/apps/pax-user/activity".into()),
                ..build_facts()
            },
        );
        for kind in KINDS {
            let all: Vec<String> = [&started, &passed, &failed, &pr, &live]
                .iter()
                .map(|n| render(kind, n))
                .collect();
            insta::assert_snapshot!(
                format!("build_story_{kind:?}").to_lowercase(),
                all.join("\n\n----\n\n")
            );
        }
    }

    #[test]
    fn alerts_and_alarms_render() {
        let alert = notification(
            NotificationKind::ErrorAlert,
            Facts {
                title: Some("TypeError: Cannot read properties of undefined (reading 'id')".into()),
                target: Some("gateway".into()),
                level: Some("error".into()),
                count: Some(17),
                release: Some("abc1234 on pax-gateway, 2h ago".into()),
                url: Some("https://pax.sentry.io/issues/1170820242/".into()),
                ..Facts::default()
            },
        );
        let alarm = notification(
            NotificationKind::OpsAlarm,
            Facts {
                title: Some("3 messages in the deploy dead-letter queue".into()),
                reason: Some("shipline-DeployDeadLetterQueue-1A2B3C: Threshold Crossed: 1 datapoint [3.0] was greater than or equal to the threshold (1.0).".into()),
                ..Facts::default()
            },
        );
        for kind in KINDS {
            insta::assert_snapshot!(
                format!("alerts_{kind:?}").to_lowercase(),
                format!(
                    "{}\n\n----\n\n{}",
                    render(kind, &alert),
                    render(kind, &alarm)
                )
            );
        }
    }

    #[test]
    fn a_message_of_emoji_is_kept_within_the_limit_as_the_chats_count_it() {
        // 5,000 rockets: 5,000 characters, 10,000 UTF-16 code units.
        let n = notification(
            NotificationKind::BuildFailed,
            Facts {
                commit_message: Some("🚀".repeat(5000)),
                ..build_facts()
            },
        );
        for kind in KINDS {
            let text = render(kind, &n);
            assert!(
                text.encode_utf16().count() <= limit(kind),
                "{kind:?}: {} UTF-16 code units",
                text.encode_utf16().count()
            );
            assert!(
                text.contains("🚀🚀🚀"),
                "{kind:?}: the text is cut, not dropped"
            );
        }
    }

    #[test]
    fn hostile_text_is_escaped_and_kept_within_each_limit() {
        let hostile = format!(
            "<b>&</b> <i>unbalanced <a href=\"x\"> *bold* _it_ `code` [link](http://evil) @everyone @here <@123> ||spoiler|| {} {} {}",
            "🚀".repeat(50),
            "مرحبا بالعالم \u{202e}reversed\u{202c}",
            "x".repeat(10_000)
        );
        let n = notification(
            NotificationKind::BuildFailed,
            Facts {
                repo: Some(format!("evil/{}", "r".repeat(500))),
                branch: Some(hostile.clone()),
                commit_message: Some(hostile.clone()),
                author: Some(hostile.clone()),
                reason: Some(hostile.clone()),
                pull_request: None,
                ..build_facts()
            },
        );
        for kind in KINDS {
            let text = render(kind, &n);
            assert!(length(&text) <= limit(kind), "{kind:?}: {}", length(&text));
            match kind {
                ChatKind::Telegram => {
                    // Only shipline's own tags remain; every user `<` is an entity.
                    let stripped = text
                        .replace("<b>", "")
                        .replace("</b>", "")
                        .replace("<code>", "")
                        .replace("</code>", "")
                        .replace("</a>", "");
                    let stripped = regex_free_strip_anchors(&stripped);
                    assert!(
                        !stripped.contains('<') && !stripped.contains('>'),
                        "{stripped}"
                    );
                    assert_eq!(text.matches("<b>").count(), text.matches("</b>").count());
                    assert_eq!(
                        text.matches("<code>").count(),
                        text.matches("</code>").count()
                    );
                }
                ChatKind::Slack => {
                    assert!(!text.contains("<b>") && text.contains("&lt;b&gt;"));
                    assert!(!text.contains("<!everyone>"));
                }
                ChatKind::Discord => {
                    assert!(
                        !text.contains("@everyone") && !text.contains("@here"),
                        "mass mentions broken"
                    );
                    assert!(text.contains("\\*bold\\*"));
                }
                ChatKind::Plain => {}
            }
        }
    }

    /// Removes `<a href="...">` openers (shipline's own) so that only user text is left.
    fn regex_free_strip_anchors(text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("<a href=\"") {
            out.push_str(&rest[..i]);
            let after = &rest[i..];
            let end = after.find("\">").map(|e| e + 2).unwrap_or(after.len());
            rest = &after[end..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn a_url_that_could_break_markup_is_shown_as_plain_text() {
        let n = notification(
            NotificationKind::BuildStarted,
            Facts {
                url: Some("javascript:alert(1)".into()),
                ..build_facts()
            },
        );
        assert!(!render(ChatKind::Telegram, &n).contains("javascript:"));
        assert!(render(ChatKind::Telegram, &n).contains("Build log"));
    }
}
