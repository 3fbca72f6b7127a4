//! A local AWS Lambda Runtime API (version 2018-06-01), enough to run a function's release
//! binary as Lambda does: the binary long-polls `invocation/next`, gets one event with the
//! request-id and deadline headers, and posts its response or error back.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// What the function answered for one invocation.
#[derive(Debug)]
pub enum Outcome {
    Response(serde_json::Value),
    Error(serde_json::Value),
}

struct Pending {
    id: String,
    event: Vec<u8>,
    reply: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct Shared {
    in_flight: HashMap<String, oneshot::Sender<Outcome>>,
    init_error: Option<String>,
    first_poll: Option<Instant>,
}

pub struct RuntimeApi {
    addr: SocketAddr,
    queue: mpsc::UnboundedSender<Pending>,
    shared: Arc<Mutex<Shared>>,
    next_id: Mutex<u64>,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: &'static str) -> Reply {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

impl RuntimeApi {
    /// Starts the API on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::unbounded_channel::<Pending>();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (rx, state) = (rx.clone(), state.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| route(req, rx.clone(), state.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            queue: tx,
            shared,
            next_id: Mutex::new(0),
        })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// When the function first asked for work, if it has.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.lock().unwrap().first_poll
    }

    /// Hands `event` to the function and waits for its answer.
    pub async fn invoke(
        &self,
        event: &serde_json::Value,
        timeout: Duration,
    ) -> anyhow::Result<Outcome> {
        let id = {
            let mut n = self.next_id.lock().unwrap();
            *n += 1;
            format!("00000000-0000-4000-8000-{:012}", *n)
        };
        let (tx, rx) = oneshot::channel();
        self.queue
            .send(Pending {
                id,
                event: serde_json::to_vec(event)?,
                reply: tx,
            })
            .map_err(|_| anyhow!("runtime API stopped"))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => bail!("the invocation was dropped"),
            Err(_) => {
                let init = self.shared.lock().unwrap().init_error.clone();
                bail!("no answer within {timeout:?} (init error: {init:?})")
            }
        }
    }

    /// Starts a function binary against this API with the Lambda environment plus `env`.
    pub fn spawn(
        &self,
        binary: &Path,
        name: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<Child> {
        let mut command = Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", self.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))
    }
}

async fn route(
    req: Request<Incoming>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>,
    state: Arc<Mutex<Shared>>,
) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let Some(rest) = path.strip_prefix("/2018-06-01/runtime/") else {
        return Ok(reply(StatusCode::NOT_FOUND, "unknown path"));
    };
    if method == Method::GET && rest == "invocation/next" {
        state
            .lock()
            .unwrap()
            .first_poll
            .get_or_insert_with(Instant::now);
        let Some(pending) = rx.lock().await.recv().await else {
            return Ok(reply(StatusCode::GONE, "shutting down"));
        };
        state
            .lock()
            .unwrap()
            .in_flight
            .insert(pending.id.clone(), pending.reply);
        let deadline = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 30_000;
        return Ok(Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", &pending.id)
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:local",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::new(Bytes::from(pending.event)))
            .unwrap());
    }
    if method != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let json = || serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    if rest == "init/error" {
        state.lock().unwrap().init_error = Some(String::from_utf8_lossy(&body).into_owned());
        return Ok(reply(StatusCode::ACCEPTED, ""));
    }
    if let Some(tail) = rest.strip_prefix("invocation/") {
        let (id, kind) = tail.split_once('/').unwrap_or((tail, ""));
        let sender = state.lock().unwrap().in_flight.remove(id);
        let Some(sender) = sender else {
            return Ok(reply(StatusCode::BAD_REQUEST, "unknown request id"));
        };
        let outcome = match kind {
            "response" => Outcome::Response(json()),
            "error" => Outcome::Error(json()),
            _ => return Ok(reply(StatusCode::NOT_FOUND, "unknown path")),
        };
        let _ = sender.send(outcome);
        return Ok(reply(StatusCode::ACCEPTED, ""));
    }
    Ok(reply(StatusCode::NOT_FOUND, "unknown path"))
}

/// An API Gateway HTTP API (payload 2.0) event for `POST {path}`.
pub fn http_api_event(
    path: &str,
    headers: &serde_json::Value,
    body: &[u8],
    base64: bool,
) -> serde_json::Value {
    use base64::Engine;
    let body = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8(body.to_vec()).expect("a text body")
    };
    let mut event = http_api_get(path, "", &[]);
    event["routeKey"] = serde_json::json!(format!("POST {path}"));
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event["requestContext"]["http"]["method"] = serde_json::json!("POST");
    event["requestContext"]["http"]["userAgent"] = serde_json::json!("GitHub-Hookshot/044aadd");
    event["headers"] = headers.clone();
    event["body"] = serde_json::json!(body);
    event["isBase64Encoded"] = serde_json::json!(base64);
    event
}

/// An API Gateway HTTP API (payload 2.0) event for `GET {path}?{query}` from a browser that
/// holds `cookies` (`name=value` each: payload 2.0 carries them in `cookies`, not a header).
pub fn http_api_get(path: &str, query: &str, cookies: &[String]) -> serde_json::Value {
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": format!("GET {path}"),
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"host": "local.execute-api.us-east-1.amazonaws.com", "accept": "text/html"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "domainName": "local.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "local",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.1",
                "userAgent": "Mozilla/5.0"
            },
            "requestId": "local",
            "routeKey": format!("GET {path}"),
            "stage": "$default",
            "time": "26/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1_795_000_000_000u64
        },
        "isBase64Encoded": false
    });
    if !cookies.is_empty() {
        event["cookies"] = serde_json::json!(cookies);
    }
    event
}
