//! GitHub's own description of its answers, for the pipeline's fake GitHub: each answer is the
//! example of its operation in GitHub's OpenAPI description (`@octokit/openapi`, extracted by
//! `scripts/github-openapi/examples.mjs` into `SHIPLINE_GITHUB_EXAMPLES`) with the fields a test
//! controls set over it, and every exchange is appended to `SHIPLINE_GITHUB_EXCHANGES`, which
//! `scripts/github-openapi/check.mjs` validates against the description after the tests. Without
//! those variables (a single test run by hand) the answers are the fields alone, unrecorded.

use std::io::Write;
use std::sync::OnceLock;

use serde_json::{Map, Value};

fn examples() -> Option<&'static Map<String, Value>> {
    static EXAMPLES: OnceLock<Option<Map<String, Value>>> = OnceLock::new();
    EXAMPLES
        .get_or_init(|| {
            let file = std::env::var("SHIPLINE_GITHUB_EXAMPLES").ok()?;
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("SHIPLINE_GITHUB_EXAMPLES={file}: {e}"));
            Some(serde_json::from_str(&text).expect("the examples file is JSON"))
        })
        .as_ref()
}

/// `fields` set over `base`, objects merged key by key.
fn overlay(base: &mut Value, fields: Value) {
    match (base, fields) {
        (Value::Object(base), Value::Object(fields)) => {
            for (key, value) in fields {
                overlay(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, fields) => *base = fields,
    }
}

/// The documented answer of `operation` (`"POST /repos/{owner}/{repo}/statuses/{sha}"`, as
/// `scripts/github-openapi/operations.json` names it) with `fields` set over it.
pub fn documented(operation: &str, fields: Value) -> Value {
    let mut body = example(operation);
    overlay(&mut body, fields);
    body
}

/// The documented answer of `operation` as it is, or `{}` without the examples file.
fn example(operation: &str) -> Value {
    examples()
        .map(|examples| {
            examples
                .get(operation)
                .unwrap_or_else(|| panic!("no example of {operation}"))["body"]
                .clone()
        })
        .unwrap_or(Value::Object(Map::new()))
}

/// One item of the documented answer of an operation that answers a list (the example's first
/// element), with `fields` set over it.
pub fn documented_item(operation: &str, fields: Value) -> Value {
    let mut item = match example(operation) {
        Value::Array(items) => items.into_iter().next().unwrap_or(Value::Null),
        _ => Value::Object(Map::new()),
    };
    if !item.is_object() {
        item = Value::Object(Map::new());
    }
    overlay(&mut item, fields);
    item
}

/// A request as the fake received it.
pub struct Asked<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub body: &'a [u8],
}

/// Appends one exchange (the request, and the answer the fake gives) for the check.
pub fn record(asked: &Asked<'_>, status: u16, response: &Value) {
    let Ok(file) = std::env::var("SHIPLINE_GITHUB_EXCHANGES") else {
        return;
    };
    let exchange = serde_json::json!({
        "method": asked.method,
        "path": asked.path,
        "query": asked.query.unwrap_or(""),
        "request": serde_json::from_slice::<Value>(asked.body).ok(),
        "status": status,
        "response": response,
    });
    // One write of one line, appended: the test binaries that record run at the same time.
    let line = format!("{exchange}\n");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .unwrap_or_else(|e| panic!("SHIPLINE_GITHUB_EXCHANGES={file}: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_set_over_the_example() {
        let mut body = json!({"name": "master", "commit": {"sha": "x", "url": "u"}});
        overlay(&mut body, json!({"commit": {"sha": "abc"}}));
        assert_eq!(
            body,
            json!({"name": "master", "commit": {"sha": "abc", "url": "u"}})
        );
    }
}
