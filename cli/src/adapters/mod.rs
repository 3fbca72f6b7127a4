//! The local stack's own adapters: a build runner on this machine (and its source of commits
//! from GitHub), GitHub read from a local repository, the console channel and the command
//! deploy target. None of them is linked into a Lambda function.

pub mod builds;
pub mod command;
pub mod console;
pub mod durable;
pub mod git_source;
pub mod github;
