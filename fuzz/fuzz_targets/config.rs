//! The config loader: any text gives a config or an error that names a line, never a panic
//! (and never an unbounded allocation from a YAML alias bomb).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = shared::config::Config::from_yaml(text) {
            let _ = config.codebuild_projects();
            for name in config.repos.keys() {
                if let Some(repo) = config.repo(name) {
                    let _ = config.notify_channels(repo);
                    let _ = config.deploy_rule(repo, "master");
                }
            }
        }
    }
});
