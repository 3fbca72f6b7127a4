//! The commands a message can hold: `/status`, `/deploy`, `/rollback`, `/promote`, `/help`.

/// One command, its arguments read but not yet checked against the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status,
    Help,
    Deploy {
        repo: String,
        args: Vec<String>,
    },
    Rollback {
        target: String,
        release: Option<String>,
    },
    Promote {
        target: String,
    },
}

/// What a person sees when a command is not understood.
pub const USAGE: &str = "shipline answers:\n\
/status — what is live where, what waits, the dead-letter queues\n\
/deploy owner/repo [sha|branch] [environment] — release a green build\n\
/rollback TARGET [version] — put the release before back (e.g. /rollback heroku:pax-user v41)\n\
/promote TARGET — promote what waits for approval";

/// What a message asks: `None` when it is no command for shipline (not a command, or one
/// addressed to another bot with `@`), else the command or the line to answer.
pub fn parse(text: &str) -> Option<Result<Command, String>> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let mut words = rest.split_whitespace();
    let first = words.next()?;
    let (name, mention) = match first.split_once('@') {
        Some((name, bot)) => (name, Some(bot)),
        None => (first, None),
    };
    let args: Vec<String> = words.map(str::to_string).collect();
    let name = name.to_ascii_lowercase();
    let command = match name.as_str() {
        "status" => Ok(Command::Status),
        "help" | "start" => Ok(Command::Help),
        "deploy" => match args.split_first() {
            Some((repo, rest)) if rest.len() <= 2 => Ok(Command::Deploy {
                repo: repo.clone(),
                args: rest.to_vec(),
            }),
            _ => Err("usage: /deploy owner/repo [sha|branch] [environment]".to_string()),
        },
        "rollback" => match args.as_slice() {
            [target] => Ok(Command::Rollback {
                target: target.clone(),
                release: None,
            }),
            [target, release] => Ok(Command::Rollback {
                target: target.clone(),
                release: Some(release.clone()),
            }),
            _ => {
                Err("usage: /rollback TARGET [version], e.g. /rollback heroku:pax-user v41".into())
            }
        },
        "promote" => match args.as_slice() {
            [target] => Ok(Command::Promote {
                target: target.clone(),
            }),
            _ => Err("usage: /promote TARGET, e.g. /promote heroku:pax-user".into()),
        },
        // Another bot's command in a shared group is not ours to answer.
        _ if mention.is_some() => return None,
        _ => Err(USAGE.to_string()),
    };
    Some(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_read_with_or_without_the_bots_name() {
        assert_eq!(parse("/status"), Some(Ok(Command::Status)));
        assert_eq!(parse("/status@shipline_bot"), Some(Ok(Command::Status)));
        assert_eq!(
            parse("/rollback heroku:pax-user v41"),
            Some(Ok(Command::Rollback {
                target: "heroku:pax-user".into(),
                release: Some("v41".into())
            }))
        );
        assert_eq!(
            parse("/deploy pax-app/User master production"),
            Some(Ok(Command::Deploy {
                repo: "pax-app/User".into(),
                args: vec!["master".into(), "production".into()]
            }))
        );
    }

    #[test]
    fn plain_text_and_other_bots_commands_are_not_ours_and_nonsense_gets_the_usage() {
        assert_eq!(parse("hello"), None);
        assert_eq!(parse("/weather@other_bot"), None);
        assert_eq!(parse("/frobnicate"), Some(Err(USAGE.to_string())));
        assert!(matches!(parse("/rollback"), Some(Err(u)) if u.starts_with("usage: /rollback")));
        assert!(matches!(parse("/deploy"), Some(Err(u)) if u.starts_with("usage: /deploy")));
        assert!(matches!(parse("/promote a b"), Some(Err(u)) if u.starts_with("usage: /promote")));
    }
}
