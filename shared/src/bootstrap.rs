//! Cold start: read the environment contract once, load the config and secrets, build the
//! clients. Handlers get what this builds and never read the environment themselves.

use std::path::PathBuf;
use std::sync::Arc;

use crate::adapters::dynamodb::DynamoStateStore;
use crate::adapters::sqs::SqsQueue;
use crate::config::{Config, ConfigError};
use crate::ports::{Queue, StateStore};
use crate::records::StateKey;
use crate::secrets::{Secrets, SecretsError};

pub const CONFIG_PARAM: &str = "SHIPLINE_CONFIG_PARAM";
pub const CONFIG_FILE: &str = "SHIPLINE_CONFIG_FILE";
pub const SECRETS_ARN: &str = "SHIPLINE_SECRETS_ARN";
pub const SECRETS_FILE: &str = "SHIPLINE_SECRETS_FILE";
pub const STATE_TABLE: &str = "STATE_TABLE";
pub const BUILD_QUEUE_URL: &str = "BUILD_QUEUE_URL";
pub const DEPLOY_QUEUE_URL: &str = "DEPLOY_QUEUE_URL";
pub const NOTIFY_QUEUE_URL: &str = "NOTIFY_QUEUE_URL";
/// The dead-letter queue of the queue a function consumes: poison messages go there at once.
pub const DEAD_LETTER_QUEUE_URL: &str = "DEAD_LETTER_QUEUE_URL";
/// The stack's dead-letter queues that `/status` and the status page report, as
/// comma-separated `name=url` pairs (see `Bootstrap::named_queues`).
pub const DEAD_LETTER_QUEUES: &str = "DEAD_LETTER_QUEUES";
pub const GITHUB_API_URL: &str = "GITHUB_API_URL";
/// Where people sign in with GitHub (the status page): GitHub Enterprise Server or a fake.
pub const GITHUB_WEB_URL: &str = "GITHUB_WEB_URL";
pub const TELEGRAM_API_URL: &str = "TELEGRAM_API_URL";
pub const HEROKU_API_URL: &str = "HEROKU_API_URL";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("set {0}")]
    Missing(String),
    #[error("invalid setting {0}")]
    Invalid(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("TLS roots: {0}")]
    Tls(String),
}

/// What every function loads at cold start.
pub struct Bootstrap {
    pub aws: aws_config::SdkConfig,
    pub config: Arc<Config>,
    pub secrets: Arc<Secrets>,
    /// One SQS client for every queue of the function (a client is cheap to clone, and each
    /// `Client::new` builds its whole configuration again).
    sqs: std::sync::OnceLock<aws_sdk_sqs::Client>,
    /// The state table's client, likewise built once.
    dynamodb: std::sync::OnceLock<aws_sdk_dynamodb::Client>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn required(name: &str) -> Result<String, BootstrapError> {
    var(name).ok_or_else(|| BootstrapError::Missing(name.to_string()))
}

impl Bootstrap {
    /// Loads the AWS settings (region, credentials, `AWS_ENDPOINT_URL`), then the config and the
    /// secrets side by side, refuses the local stack's parts (`console`, `command`), and checks
    /// that every secret the config names is there.
    pub async fn from_env() -> Result<Self, BootstrapError> {
        Self::load(None).await
    }

    /// [`Self::from_env`] for an HTTP function, which also opens, while the config and secrets
    /// load, the connections its first request needs: SQS (through the queue in `queue_var`;
    /// one client and one pool serve every queue) and the state table. See [`Self::warm`].
    pub async fn from_env_warm(queue_var: &str) -> Result<Self, BootstrapError> {
        Self::load(Some(queue_var)).await
    }

    async fn load(warm_queue: Option<&str>) -> Result<Self, BootstrapError> {
        let tls = crate::tls::tls().map_err(BootstrapError::Tls)?;
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(tls.sdk_http.clone())
            .timeout_config(aws_timeouts())
            .load()
            .await;
        let (sqs, dynamodb) = (std::sync::OnceLock::new(), std::sync::OnceLock::new());
        // The warm-up needs only the environment: it runs beside the loads, not after them.
        let warm = async {
            if let Some(var) = warm_queue {
                let sqs = sqs.get_or_init(|| aws_sdk_sqs::Client::new(&aws));
                let dynamodb = dynamodb.get_or_init(|| aws_sdk_dynamodb::Client::new(&aws));
                let queue = SqsQueue::new(sqs.clone(), required(var)?);
                let state = DynamoStateStore::new(dynamodb.clone(), required(STATE_TABLE)?);
                Self::warm(&queue, &state).await;
            }
            Ok::<(), BootstrapError>(())
        };
        let (config, secrets, warmed) = tokio::join!(load_config(&aws), load_secrets(&aws), warm);
        let (config, secrets) = (config?, secrets?);
        warmed?;
        config.refuse_local_only()?;
        config.check_secrets(&secrets)?;
        Ok(Self {
            aws,
            config: Arc::new(config),
            secrets: Arc::new(secrets),
            sqs,
            dynamodb,
        })
    }

    fn sqs(&self) -> aws_sdk_sqs::Client {
        self.sqs
            .get_or_init(|| aws_sdk_sqs::Client::new(&self.aws))
            .clone()
    }

    /// The SQS queue whose URL is in the environment variable `var_name`.
    pub fn queue(&self, var_name: &str) -> Result<Arc<dyn Queue>, BootstrapError> {
        let url = required(var_name)?;
        Ok(Arc::new(SqsQueue::new(self.sqs(), url)))
    }

    /// A service's base URL: the environment variable `var_name` (a local fake, GitHub
    /// Enterprise Server), else `public`.
    pub fn api_url(&self, var_name: &str, public: &str) -> String {
        var(var_name).unwrap_or_else(|| public.to_string())
    }

    /// A queue function's handoff: its queue's messages are put back for later with SQS
    /// (a wait, a rate limit), and dead-lettered to `DEAD_LETTER_QUEUE_URL` when it is set.
    pub fn handoff(&self) -> crate::batch::Handoff {
        crate::batch::Handoff {
            redelivery: Arc::new(crate::adapters::sqs::SqsRedelivery::new(self.sqs())),
            dead_letters: self.optional_queue(DEAD_LETTER_QUEUE_URL),
        }
    }

    /// The one HTTP client of a function: rustls with the process's roots (`crate::tls`), and
    /// timeouts inside a batch's deadline margin (`crate::http::CALL_TIMEOUT`).
    pub fn http_client(&self) -> Result<reqwest::Client, BootstrapError> {
        let tls = crate::tls::tls().map_err(BootstrapError::Tls)?;
        reqwest::Client::builder()
            .tls_backend_preconfigured((*tls.rustls).clone())
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(crate::http::CALL_TIMEOUT)
            .build()
            .map_err(|e| BootstrapError::Tls(crate::http::transport_error(e)))
    }

    /// The GitHub REST client: `GITHUB_API_URL` (GitHub Enterprise Server, a fake) or the
    /// public API, with a token or as a GitHub App as the secrets say.
    pub fn github(
        &self,
        http: reqwest::Client,
    ) -> Result<crate::github::client::GitHubClient, BootstrapError> {
        use crate::github::client::{Auth, GitHubClient, PUBLIC_API};
        Ok(GitHubClient::new(
            http,
            self.api_url(GITHUB_API_URL, PUBLIC_API),
            Auth::from_secrets(&self.secrets)?,
        ))
    }

    /// A setting the function cannot run without.
    pub fn required(&self, var_name: &str) -> Result<String, BootstrapError> {
        required(var_name)
    }

    /// The queues listed in `var_name` as `name=url` pairs, comma-separated (the stack's
    /// dead-letter queues); none when it is not set.
    pub fn named_queues(
        &self,
        var_name: &str,
    ) -> Result<crate::ports::NamedQueues, BootstrapError> {
        let Some(list) = var(var_name) else {
            return Ok(Vec::new());
        };
        list.split(',')
            .filter(|pair| !pair.trim().is_empty())
            .map(|pair| {
                let (name, url) = pair.split_once('=').ok_or_else(|| {
                    BootstrapError::Invalid(format!("{var_name}: `{pair}` is not name=url"))
                })?;
                let queue: Arc<dyn Queue> = Arc::new(SqsQueue::new(self.sqs(), url.trim()));
                Ok((name.trim().to_string(), queue))
            })
            .collect()
    }

    /// The SQS queue in `var_name`, when it is set.
    pub fn optional_queue(&self, var_name: &str) -> Option<Arc<dyn Queue>> {
        self.queue(var_name).ok()
    }

    /// The region the AWS SDK resolved (for console links).
    pub fn region(&self) -> String {
        self.aws
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".to_string())
    }

    /// Opens, during init, the connections an HTTP function's first request needs (the queue
    /// it sends to and the state table), so that its first answer after a cold start pays no
    /// TLS handshake. A failure here is only logged: the request would open them anyway.
    async fn warm(queue: &dyn Queue, state: &dyn StateStore) {
        let started = std::time::Instant::now();
        let key = StateKey::WarmUp.to_string();
        let (queue, state) = tokio::join!(queue.warm(), state.get(&key, 0));
        if let Err(e) = queue {
            tracing::warn!(error = %e, "could not open the queue connection during init");
        }
        if let Err(e) = state {
            tracing::warn!(error = %e, "could not open the state table connection during init");
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "connections warm"
        );
    }

    /// The DynamoDB state table named by `STATE_TABLE`.
    pub fn state_store(&self) -> Result<Arc<dyn StateStore>, BootstrapError> {
        let table = required(STATE_TABLE)?;
        let client = self
            .dynamodb
            .get_or_init(|| aws_sdk_dynamodb::Client::new(&self.aws));
        Ok(Arc::new(DynamoStateStore::new(client.clone(), table)))
    }
}

/// Every AWS call ends well inside a batch's deadline margin (see `batch`): the SDK has no
/// timeout of its own, so a stalled connection would otherwise hold an invocation until
/// Lambda kills it, finished messages and all.
pub const AWS_OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(8);

fn aws_timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .operation_attempt_timeout(std::time::Duration::from_secs(4))
        .operation_timeout(AWS_OPERATION_TIMEOUT)
        .build()
}

async fn load_config(aws: &aws_config::SdkConfig) -> Result<Config, BootstrapError> {
    if let Some(path) = var(CONFIG_FILE) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::Source(format!("{path}: {e}")))?;
        return Ok(Config::from_yaml(&text)?);
    }
    let Some(name) = var(CONFIG_PARAM) else {
        return Err(BootstrapError::Missing(format!(
            "{CONFIG_PARAM} or {CONFIG_FILE}"
        )));
    };
    let text = load_parameter(&aws_sdk_ssm::Client::new(aws), &name).await?;
    Ok(Config::from_yaml(&text)?)
}

/// Reads an SSM parameter (decrypted, if it is a SecureString).
pub async fn load_parameter(
    client: &aws_sdk_ssm::Client,
    name: &str,
) -> Result<String, ConfigError> {
    read_parameter(client, name)
        .await?
        .ok_or_else(|| ConfigError::Source(format!("SSM parameter {name} does not exist")))
}

/// Reads an SSM parameter (decrypted, if it is a SecureString); `None` when there is none.
pub async fn read_parameter(
    client: &aws_sdk_ssm::Client,
    name: &str,
) -> Result<Option<String>, ConfigError> {
    match client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
    {
        Ok(out) => out
            .parameter
            .and_then(|p| p.value)
            .map(Some)
            .ok_or_else(|| ConfigError::Source(format!("SSM parameter {name} has no value"))),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_parameter_not_found()) =>
        {
            Ok(None)
        }
        Err(e) => Err(ConfigError::Source(format!(
            "SSM parameter {name}: {}",
            aws_sdk_ssm::error::DisplayErrorContext(e)
        ))),
    }
}

async fn load_secrets(aws: &aws_config::SdkConfig) -> Result<Secrets, BootstrapError> {
    if let Some(path) = var(SECRETS_FILE) {
        return Ok(Secrets::from_file(&PathBuf::from(path))?);
    }
    let Some(arn) = var(SECRETS_ARN) else {
        return Err(BootstrapError::Missing(format!(
            "{SECRETS_ARN} or {SECRETS_FILE}"
        )));
    };
    Ok(Secrets::from_secrets_manager(&aws_sdk_secretsmanager::Client::new(aws), &arn).await?)
}

/// Serves an event function on Lambda's Runtime API: each event goes to `handler` with the
/// instant the invocation must have answered by, so batches can keep their deadline.
#[cfg(feature = "event-function")]
pub async fn serve<E, R, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    E: serde::de::DeserializeOwned,
    R: serde::Serialize,
    F: Fn(E, std::time::Instant) -> Fut,
    Fut: Future<Output = Result<R, lambda_runtime::Error>>,
{
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<E>| {
            let deadline = crate::batch::deadline_from_epoch_ms(event.context.deadline);
            handler(event.payload, deadline)
        },
    ))
    .await
}
