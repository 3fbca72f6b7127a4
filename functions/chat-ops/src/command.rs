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
/// addressed to another bot with `@`), else the command or the line to answer. `bot` is this
/// bot's username when known (the webhook URL's `?bot=`).
pub fn parse(text: &str, bot: Option<&str>) -> Option<Result<Command, String>> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let mut words = rest.split_whitespace();
    let first = words.next()?;
    let (name, mention) = match first.split_once('@') {
        Some((name, bot)) => (name, Some(bot)),
        None => (first, None),
    };
    // Another bot's command in a shared group is not ours to answer, whatever its name.
    if let (Some(mention), Some(bot)) = (mention, bot)
        && !mention.eq_ignore_ascii_case(bot)
    {
        return None;
    }
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
        // A command of another bot's, when this bot's name is not known.
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
        let me = Some("Shipline_bot");
        assert_eq!(parse("/status", me), Some(Ok(Command::Status)));
        assert_eq!(parse("/status@shipline_bot", me), Some(Ok(Command::Status)));
        assert_eq!(
            parse("/status@shipline_bot", None),
            Some(Ok(Command::Status))
        );
        assert_eq!(
            parse("/rollback heroku:pax-user v41", me),
            Some(Ok(Command::Rollback {
                target: "heroku:pax-user".into(),
                release: Some("v41".into())
            }))
        );
        assert_eq!(
            parse("/deploy pax-app/User master production", None),
            Some(Ok(Command::Deploy {
                repo: "pax-app/User".into(),
                args: vec!["master".into(), "production".into()]
            }))
        );
    }

    #[test]
    fn plain_text_and_other_bots_commands_are_not_ours_and_nonsense_gets_the_usage() {
        let me = Some("shipline_bot");
        assert_eq!(parse("hello", me), None);
        assert_eq!(parse("/weather@other_bot", None), None);
        // The same command names, addressed to another bot: not ours.
        assert_eq!(parse("/rollback@other_bot heroku:pax-user", me), None);
        assert_eq!(parse("/status@other_bot", me), None);
        assert_eq!(parse("/frobnicate", me), Some(Err(USAGE.to_string())));
        assert!(
            matches!(parse("/rollback", me), Some(Err(u)) if u.starts_with("usage: /rollback"))
        );
        assert!(matches!(parse("/deploy", me), Some(Err(u)) if u.starts_with("usage: /deploy")));
        assert!(
            matches!(parse("/promote a b", me), Some(Err(u)) if u.starts_with("usage: /promote"))
        );
    }
}
