//! Heroku's Platform API for one app, as deploy-promotion uses it, keeping the app's releases
//! as Heroku does (devcenter, *Platform API Reference*: Formation Batch Update, Release List /
//! Info / Create, and *Ranges*):
//! - `PATCH /apps/{app}/formation` answers with the formation, not the release, and makes a
//!   release whose release phase runs (`pending`) before it `succeeded` or `failed`;
//! - config changes and add-ons make releases of their own, which succeed at once, and may
//!   land between a formation update and the next read (`interleave`);
//! - a timeout or 5xx may come after the release was made (`lose_patch_answers`);
//! - `GET /apps/{app}/releases` honours `Range: version ]N..; max=M, order=asc|desc` (`]` is
//!   exclusive; the default order is ascending, the default page 200) and answers 206;
//! - `GET /apps/{app}/releases/{id_or_version}`; `POST /apps/{app}/releases` with
//!   `{"release": id}` rolls back by making a new release of that one's code (an id: a
//!   version there is a release Heroku cannot find);
//! - releases older than Heroku's retention are `expired`, and not `eligible_for_rollback`.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use shared::adapters::memory::FixedClock;
use shared::ports::Clock;
use wiremock::{Request, Respond, ResponseTemplate};

pub const APP: &str = "pax-user";

#[derive(Debug, Clone)]
pub struct FakeRelease {
    pub version: u64,
    pub status: String,
    pub description: String,
}

impl FakeRelease {
    fn id(&self) -> String {
        format!("rel-{}", self.version)
    }

    fn json(&self) -> Value {
        json!({
            "id": self.id(), "version": self.version, "status": self.status,
            "description": self.description, "app": {"name": APP},
            "eligible_for_rollback": self.status != "expired",
        })
    }
}

/// The app as the fake keeps it, and how it misbehaves.
pub struct App {
    pub releases: Vec<FakeRelease>,
    /// What a formation update's release phase ends in (`succeeded` or `failed`), and when:
    /// the first time the release is read at or after this simulated instant.
    pub ends_as: (String, Option<String>),
    pub phase_ends: Option<(Arc<FixedClock>, time::OffsetDateTime)>,
    /// A config change lands right after each formation update.
    pub interleave: bool,
    /// The next formation updates are made, then answered 503.
    pub lose_patch_answers: u32,
}

impl App {
    /// v42 live after v40 and v41, v39 expired, and formation updates that succeed.
    pub fn new() -> Self {
        let release = |version: u64, status: &str| FakeRelease {
            version,
            status: status.into(),
            description: format!("Deployed web ({version:012x})"),
        };
        Self {
            releases: vec![
                release(39, "expired"),
                release(40, "succeeded"),
                release(41, "succeeded"),
                release(42, "succeeded"),
            ],
            ends_as: ("succeeded".into(), None),
            phase_ends: None,
            interleave: false,
            lose_patch_answers: 0,
        }
    }

    fn add(&mut self, status: &str, description: String) -> FakeRelease {
        let version = self.releases.last().map_or(1, |r| r.version + 1);
        let release = FakeRelease {
            version,
            status: status.into(),
            description,
        };
        self.releases.push(release.clone());
        release
    }

    fn find(&mut self, id_or_version: &str) -> Option<&mut FakeRelease> {
        let version = id_or_version.parse::<u64>().ok();
        self.releases
            .iter_mut()
            .find(|r| r.id() == id_or_version || Some(r.version) == version)
    }
}

#[derive(Clone)]
pub struct HerokuFake {
    pub app: Arc<Mutex<App>>,
}

fn not_found(what: &str) -> ResponseTemplate {
    ResponseTemplate::new(404)
        .set_body_json(json!({"id": "not_found", "message": format!("Couldn't find that {what}.")}))
}

impl Respond for HerokuFake {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut app = self.app.lock().unwrap();
        let path = request.url.path().to_string();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method.as_str(), parts.as_slice()) {
            ("PATCH", ["apps", APP, "formation"]) => formation_update(&mut app, request),
            ("GET", ["apps", APP, "releases"]) => {
                let range = request
                    .headers
                    .get("range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("version ..");
                let listed: Vec<Value> = page(&app.releases, range)
                    .iter()
                    .map(FakeRelease::json)
                    .collect();
                ResponseTemplate::new(206).set_body_json(listed)
            }
            ("GET", ["apps", APP, "releases", id]) => {
                let (ends_as, done) = (app.ends_as.clone(), phase_done(&app));
                match app.find(id) {
                    Some(release) => {
                        if release.status == "pending" && done {
                            release.status = ends_as.0;
                            release.description = ends_as.1.unwrap_or(release.description.clone());
                        }
                        ResponseTemplate::new(200).set_body_json(release.json())
                    }
                    None => not_found("release"),
                }
            }
            ("POST", ["apps", APP, "releases"]) => {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                let target = body["release"].as_str().unwrap_or("");
                let by_id = app.releases.iter().find(|r| r.id() == target);
                match by_id.map(|r| r.version) {
                    Some(v) => {
                        let rollback = app.add("succeeded", format!("Rollback to v{v}"));
                        ResponseTemplate::new(201).set_body_json(rollback.json())
                    }
                    None => not_found("release"),
                }
            }
            _ => not_found("app"),
        }
    }
}

fn phase_done(app: &App) -> bool {
    app.phase_ends
        .as_ref()
        .is_none_or(|(clock, ends)| clock.now() >= *ends)
}

fn formation_update(app: &mut App, request: &Request) -> ResponseTemplate {
    let accept = request.headers.get("accept").and_then(|v| v.to_str().ok());
    if accept != Some("application/vnd.heroku+json; version=3.docker-releases") {
        // Without the docker-releases variant, `docker_image` is not a formation field.
        return ResponseTemplate::new(422).set_body_json(
            json!({"id": "invalid_params", "message": "Invalid params: docker_image"}),
        );
    }
    app.add("pending", "Deployed web (fedcba987654)".into());
    if app.interleave {
        app.add("succeeded", "Set FEATURE_X config vars".into());
    }
    if app.lose_patch_answers > 0 {
        app.lose_patch_answers -= 1;
        return ResponseTemplate::new(503)
            .set_body_json(json!({"id": "unavailable", "message": "Service unavailable"}));
    }
    ResponseTemplate::new(200).set_body_json(json!([
        {"type": "web", "quantity": 1, "size": "standard-1X"},
        {"type": "worker", "quantity": 1, "size": "standard-1X"}
    ]))
}

/// The releases a `Range` header asks for: `version [`]`]START..[END][; max=M, order=asc|desc]`.
fn page(releases: &[FakeRelease], range: &str) -> Vec<FakeRelease> {
    let (bounds, options) = range.split_once(';').unwrap_or((range, ""));
    let bounds = bounds.trim().strip_prefix("version").unwrap_or("").trim();
    let exclusive = bounds.starts_with(']');
    let (start, end) = bounds
        .trim_start_matches(']')
        .split_once("..")
        .unwrap_or(("", ""));
    let (start, end) = (start.parse::<u64>().ok(), end.parse::<u64>().ok());
    let option = |name: &str| {
        options
            .split(',')
            .filter_map(|o| o.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim().to_string())
    };
    let max = option("max").and_then(|m| m.parse().ok()).unwrap_or(200);
    let mut picked: Vec<FakeRelease> = releases
        .iter()
        .filter(|r| {
            start.is_none_or(|s| {
                if exclusive {
                    r.version > s
                } else {
                    r.version >= s
                }
            })
        })
        .filter(|r| end.is_none_or(|e| r.version <= e))
        .cloned()
        .collect();
    if option("order").as_deref() == Some("desc") {
        picked.reverse();
    }
    picked.truncate(max);
    picked
}
