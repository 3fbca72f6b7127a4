//! The page as HTML: one document, no script, readable on a phone, the chart an inline SVG
//! with a title and a description (and the same numbers in the table beside it), outcomes told
//! by a word and a mark, never by colour alone.

use std::fmt::Write;

use shared::messages::short_sha;
use shared::overview::{BuildLine, age, age_secs};

use crate::Page;

/// Text from commits, configs and Sentry, safe in HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Only http(s) links are links; anything else (a `javascript:` URL in a record) is text.
fn link(url: Option<&str>, text: &str) -> String {
    match url.filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
        Some(url) => format!("<a href=\"{}\">{}</a>", escape(url), escape(text)),
        None => escape(text),
    }
}

fn commit_link(repo: &str, sha: &str) -> String {
    let url = format!("https://github.com/{repo}/commit/{sha}");
    format!(
        "<a href=\"{}\"><code>{}</code></a>",
        escape(&url),
        short_sha(sha)
    )
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;\
padding:1rem;color:#1b1f24;background:#fff}h1{font-size:1.4rem}h2{font-size:1.1rem;\
margin-top:2rem}h3{font-size:1rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;\
padding:.3rem .5rem;border-bottom:1px solid #d0d7de;vertical-align:top}.wrap{overflow-x:auto}\
.ok{color:#1a7f37}.bad{color:#cf222e}tr.ok,tr.bad{color:inherit}tr.ok td:first-child{color:#1a7f37}\
tr.bad td:first-child{color:#cf222e}figure{margin:0}figcaption{font-size:.85rem}.muted{color:#57606a}svg{max-width:100%;height:auto}\
@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}.muted{color:#8d96a0}\
th,td{border-color:#30363d}a{color:#58a6ff}}";

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    );
}

/// A short page that says one thing (signed out, refused, not found). `html` is markup the
/// caller built: escape what came from outside.
pub fn notice(title: &str, html: &str) -> String {
    let mut out = String::new();
    head(&mut out, &format!("{title} · shipline"));
    let _ = write!(
        out,
        "<header><h1>{}</h1></header><main><p>{html}</p></main></body></html>",
        escape(title)
    );
    out
}

/// The whole page.
pub fn html(page: &Page, now: i64) -> String {
    let mut out = String::new();
    head(&mut out, "shipline status");
    out.push_str("<header><h1>shipline status</h1>");
    if let Some(login) = &page.viewer {
        let _ = write!(
            out,
            "<p class=\"muted\">Signed in as @{} · <a href=\"/auth/signout\">Sign out</a></p>",
            escape(login)
        );
    }
    out.push_str("</header><main>");
    live(&mut out, page, now);
    builds(&mut out, &page.builds, now);
    alerts(&mut out, page, now);
    health(&mut out, page, now);
    out.push_str("</main></body></html>");
    out
}

fn live(out: &mut String, page: &Page, now: i64) {
    out.push_str("<section id=\"live\"><h2>Live</h2>");
    if page.overview.live.is_empty() {
        out.push_str("<p class=\"muted\">Nothing is recorded as live yet.</p>");
    } else {
        out.push_str(
            "<div class=\"wrap\"><table><thead><tr><th scope=\"col\">Environment</th>\
             <th scope=\"col\">Target</th><th scope=\"col\">Repo</th><th scope=\"col\">Commit</th>\
             <th scope=\"col\">Release</th><th scope=\"col\">Since</th><th scope=\"col\">By</th>\
             </tr></thead><tbody>",
        );
        for l in &page.overview.live {
            let _ = write!(
                out,
                "<tr data-target=\"{target}\"><td>{env}</td><td><code>{target}</code></td>\
                 <td>{repo}</td><td>{commit}</td><td>{release}{restored}</td>\
                 <td>{ago} ago</td><td>{by}</td></tr>",
                target = escape(&l.target),
                env = escape(&l.environment),
                repo = escape(&l.repo),
                commit = commit_link(&l.repo, &l.sha),
                release = escape(l.release.as_deref().unwrap_or("")),
                restored = if l.restored { " (rolled back to)" } else { "" },
                ago = age(&l.since, now),
                by = escape(l.by.as_deref().unwrap_or("")),
            );
        }
        out.push_str("</tbody></table></div>");
    }
    for p in &page.overview.pending {
        let _ = write!(
            out,
            "<p>Waiting to be promoted to {} (<code>{}</code>): <code>{}</code> from {}, gate {}.</p>",
            escape(&p.environment),
            escape(&p.target),
            short_sha(&p.sha),
            escape(&p.from),
            p.gate
        );
    }
    out.push_str("</section>");
}

fn builds(out: &mut String, builds: &[BuildLine], now: i64) {
    out.push_str("<section id=\"builds\"><h2>Builds</h2>");
    if builds.is_empty() {
        out.push_str("<p class=\"muted\">No finished build is recorded yet.</p></section>");
        return;
    }
    out.push_str("<figure>");
    out.push_str(&chart(builds));
    out.push_str(
        "<figcaption class=\"muted\">Each bar is a build, oldest left: its height is how long it \
         took; solid green passed, hatched red failed.</figcaption></figure>",
    );
    out.push_str(
        "<div class=\"wrap\"><table><thead><tr><th scope=\"col\">Outcome</th>\
         <th scope=\"col\">Repo</th><th scope=\"col\">Trigger</th><th scope=\"col\">Commit</th>\
         <th scope=\"col\">Took</th><th scope=\"col\">Finished</th><th scope=\"col\">Log</th>\
         </tr></thead><tbody>",
    );
    for b in builds {
        let (class, outcome) = if b.passed {
            ("ok", "✓ passed".to_string())
        } else {
            (
                "bad",
                format!("✗ {}", b.status.to_ascii_lowercase().replace('_', " ")),
            )
        };
        let trigger = match (&b.branch, b.pull_request) {
            (Some(branch), _) => format!("push to <code>{}</code>", escape(branch)),
            (None, Some(n)) => format!("pull request #{n}"),
            (None, None) => String::new(),
        };
        let reason = if b.passed {
            String::new()
        } else {
            format!(
                "<br><span class=\"muted\">{}</span>",
                escape(&b.description)
            )
        };
        let _ = write!(
            out,
            "<tr class=\"build {class}\"><td>{outcome}{reason}</td><td>{}</td><td>{trigger}</td>\
             <td>{}</td><td>{}</td><td>{} ago</td><td>{}</td></tr>",
            escape(&b.repo),
            commit_link(&b.repo, &b.sha),
            age_secs(i64::try_from(b.duration_secs).unwrap_or(0)),
            age_secs(now - b.finished_at),
            link(b.log_url.as_deref(), "log"),
        );
    }
    out.push_str("</tbody></table></div></section>");
}

/// Build durations, oldest left, newest right: a green bar for a pass, a hatched red one for a
/// failure; each bar's tooltip says which build.
pub fn chart(builds: &[BuildLine]) -> String {
    const W: usize = 600;
    const H: usize = 120;
    let longest = builds
        .iter()
        .map(|b| b.duration_secs)
        .max()
        .unwrap_or(1)
        .max(1);
    let failed = builds.iter().filter(|b| !b.passed).count();
    let step = (W / builds.len().max(1)).min(40);
    let mut svg = format!(
        "<svg id=\"build-chart\" role=\"img\" aria-labelledby=\"chart-title chart-desc\" \
         viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\">\
         <title id=\"chart-title\">Build durations and outcomes</title>\
         <desc id=\"chart-desc\">The last {} builds, oldest first: {} failed, the longest took {}.</desc>\
         <defs><pattern id=\"hatch\" width=\"6\" height=\"6\" patternUnits=\"userSpaceOnUse\" \
         patternTransform=\"rotate(45)\"><rect width=\"6\" height=\"6\" fill=\"#cf222e\"/>\
         <line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#fff\" stroke-width=\"2\"/></pattern></defs>",
        builds.len(),
        failed,
        age_secs(i64::try_from(longest).unwrap_or(0)),
    );
    for (i, b) in builds.iter().rev().enumerate() {
        let height = ((b.duration_secs * (H as u64 - 10)) / longest).max(2) as usize;
        let fill = if b.passed { "#1a7f37" } else { "url(#hatch)" };
        let _ = write!(
            svg,
            "<rect class=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{height}\" fill=\"{fill}\">\
             <title>{} {} {}: {}</title></rect>",
            if b.passed { "pass" } else { "fail" },
            i * step + 1,
            H - height,
            step.saturating_sub(2).max(1),
            escape(&b.repo),
            short_sha(&b.sha),
            if b.passed { "passed" } else { "failed" },
            age_secs(i64::try_from(b.duration_secs).unwrap_or(0)),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn alerts(out: &mut String, page: &Page, now: i64) {
    out.push_str("<section id=\"alerts\"><h2>Alerts since each release</h2>");
    if page.alerts.is_empty() {
        out.push_str("<p class=\"muted\">No target with a Sentry project is live.</p>");
    }
    for a in &page.alerts {
        let _ = write!(
            out,
            "<h3><code>{}</code> <span class=\"muted\">(Sentry project {}, released {} ago)</span></h3>",
            escape(&a.target),
            escape(&a.project),
            age(&a.since, now)
        );
        if a.events == 0 {
            out.push_str("<p class=\"ok\">✓ No alert since the release.</p>");
            continue;
        }
        let _ = write!(
            out,
            "<p class=\"bad\">{} event(s), {} new issue(s):</p><ul>",
            a.events, a.new_issues
        );
        for (title, count) in &a.issues {
            let _ = write!(out, "<li>{} ({count})</li>", escape(title));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
}

fn health(out: &mut String, page: &Page, now: i64) {
    out.push_str("<section id=\"health\"><h2>Health</h2>");
    match &page.last_alarm {
        None => out.push_str("<p class=\"muted\">No alarm has changed yet.</p>"),
        Some(alarm) => {
            let class = if alarm.state == "OK" { "ok" } else { "bad" };
            let _ = write!(
                out,
                "<p id=\"last-alarm\" class=\"{class}\">Last alarm: {} <span class=\"muted\">({}, {} ago)</span></p>",
                escape(&alarm.title),
                escape(&alarm.state),
                age_secs(now - alarm.at),
            );
        }
    }
    out.push_str("<h3>Dead-letter queues</h3>");
    if page.dead_letters.is_empty() {
        out.push_str("<p class=\"muted\">Not known here.</p>");
    } else {
        out.push_str("<ul>");
        for (name, depth) in &page.dead_letters {
            let _ = match depth {
                Some(0) => write!(out, "<li class=\"ok\">✓ {}: empty</li>", escape(name)),
                Some(n) => write!(
                    out,
                    "<li class=\"bad\">✗ {}: {n} waiting</li>",
                    escape(name)
                ),
                None => write!(out, "<li>{}: unknown</li>", escape(name)),
            };
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::overview::LiveLine;

    fn build(n: u64, passed: bool) -> BuildLine {
        BuildLine {
            repo: "pax-app/User".into(),
            sha: format!("{n:040}"),
            trigger: "push",
            branch: Some("master".into()),
            pull_request: None,
            passed,
            status: if passed { "SUCCEEDED" } else { "FAILED" }.into(),
            description: "Failed in BUILD: <exit status 2>".into(),
            duration_secs: 60 * n,
            finished_at: 1_000 + n as i64,
            log_url: Some("https://console.aws.amazon.com/codebuild/x".into()),
            commit_message: None,
        }
    }

    #[test]
    fn the_page_shows_what_is_live_the_builds_with_their_chart_and_escapes_what_it_is_given() {
        let mut page = Page::default();
        page.overview.live.push(LiveLine {
            target: "heroku:pax-user".into(),
            environment: "production".into(),
            repo: "pax-app/User".into(),
            sha: "6113728f27ae82c7b1a177c8d03f9e96e0adf246".into(),
            release: Some("v42".into()),
            since: "1970-01-01T00:00:00Z".into(),
            by: Some("<script>alert(1)</script>".into()),
            restored: false,
        });
        page.builds = vec![build(3, false), build(2, true)];
        page.dead_letters = vec![("deploys".into(), Some(2))];
        let html = html(&page, 3600);
        assert!(html.starts_with("<!doctype html><html lang=\"en\">"));
        assert!(html.contains("<tr data-target=\"heroku:pax-user\"><td>production</td>"));
        assert!(
            html.contains(
                "/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246\"><code>6113728</code>"
            )
        );
        assert!(html.contains("&lt;script&gt;"), "escaped");
        assert!(!html.contains("<script>"));
        assert!(
            html.contains(
                "✗ failed<br><span class=\"muted\">Failed in BUILD: &lt;exit status 2&gt;"
            )
        );
        assert!(html.contains("<li class=\"bad\">✗ deploys: 2 waiting</li>"));
        assert!(html.contains("<svg id=\"build-chart\" role=\"img\""));
        assert!(html.contains("No alarm has changed yet."));
    }

    #[test]
    fn the_last_alarm_is_shown_with_its_state_and_age() {
        let page = Page {
            last_alarm: Some(shared::records::LastAlarm {
                title: "3 messages in the dead-letter queue <deploys>".into(),
                state: "ALARM".into(),
                at: 0,
            }),
            ..Page::default()
        };
        let html = html(&page, 120);
        assert!(
            html.contains("<p id=\"last-alarm\" class=\"bad\">Last alarm: 3 messages in the dead-letter queue &lt;deploys&gt; <span class=\"muted\">(ALARM, 2m ago)</span></p>"),
            "{html}"
        );
    }

    #[test]
    fn the_chart_draws_a_bar_per_build_oldest_first_and_says_what_it_shows() {
        let svg = chart(&[build(4, true), build(1, false)]);
        assert!(svg.contains("<desc id=\"chart-desc\">The last 2 builds, oldest first: 1 failed, the longest took 4m.</desc>"));
        let fail = svg.find("class=\"fail\"").unwrap();
        let pass = svg.find("class=\"pass\"").unwrap();
        assert!(fail < pass, "oldest (the failed one) first");
        assert!(
            svg.contains("height=\"110\" fill=\"#1a7f37\""),
            "the longest fills the height"
        );
    }

    #[test]
    fn only_web_links_are_links() {
        assert_eq!(link(Some("javascript:alert(1)"), "log"), "log");
        assert_eq!(
            link(Some("https://x.example/?a=1&b=2"), "log"),
            "<a href=\"https://x.example/?a=1&amp;b=2\">log</a>"
        );
    }
}
