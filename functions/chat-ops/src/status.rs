//! `/status`: what is live where (sha, release, age, who), what waits to be promoted, and how
//! many messages wait in each dead-letter queue, from the same reading as `shipline status`.

use shared::messages::short_sha;
use shared::overview;
use shared::ports::StateError;

use crate::Deps;
use crate::telegram::escape;

pub async fn text(deps: &Deps) -> Result<String, StateError> {
    let now = deps.clock.unix();
    let (view, dead) = tokio::join!(
        overview::read(deps.state.as_ref(), &deps.config, now),
        overview::dead_letters(&deps.dead_letters)
    );
    let view = view?;
    let mut out = vec!["<b>Live</b>".to_string()];
    if view.live.is_empty() {
        out.push("nothing recorded yet".into());
    }
    for l in &view.live {
        let mut line = format!(
            "{} · <code>{}</code> · <code>{}</code>",
            escape(&l.environment),
            escape(&l.target),
            short_sha(&l.sha)
        );
        if let Some(release) = &l.release {
            line.push_str(&format!(" {}", escape(release)));
        }
        if l.restored {
            line.push_str(" (rolled back to)");
        }
        line.push_str(&format!(" · {} ago", overview::age(&l.since, now)));
        if let Some(by) = &l.by {
            line.push_str(&format!(" · by {}", escape(by)));
        }
        out.push(line);
    }
    if !view.pending.is_empty() {
        out.push(String::new());
        out.push("<b>Waiting to be promoted</b>".into());
        for p in &view.pending {
            let when = match (p.gate, p.due - now) {
                ("approval", _) => format!("waits for approval: /promote {}", escape(&p.target)),
                (_, left) if left > 0 => format!("due in {}m, gate {}", (left + 59) / 60, p.gate),
                _ => format!("due now, gate {}", p.gate),
            };
            out.push(format!(
                "{} ← {} <code>{}</code>{}: {when}",
                escape(&p.environment),
                escape(&p.from),
                short_sha(&p.sha),
                p.release
                    .as_deref()
                    .map(|r| format!(" ({})", escape(r)))
                    .unwrap_or_default()
            ));
        }
    }
    if !dead.is_empty() {
        out.push(String::new());
        let depths: Vec<String> = dead
            .iter()
            .map(|(name, depth)| match depth {
                Some(0) => format!("{} 0", escape(name)),
                Some(n) => format!("{} <b>{n}</b> ⚠️", escape(name)),
                None => format!("{} ?", escape(name)),
            })
            .collect();
        out.push(format!("<b>Dead-letter queues</b>: {}", depths.join(" · ")));
        if dead.iter().any(|(_, d)| d.is_some_and(|n| n > 0)) {
            out.push("Look with <code>shipline dlq</code>.".into());
        }
    }
    Ok(out.join("\n"))
}
