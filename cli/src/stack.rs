//! A deployed shipline stack as `setup` and `doctor` see it: its outputs and parameters
//! (CloudFormation `DescribeStacks`), its secret, and the AWS clients of its region.

use std::collections::BTreeMap;

use anyhow::{Context, anyhow, bail};
use aws_sdk_cloudformation::error::DisplayErrorContext;
use shared::secrets::Secrets;

/// The outputs `setup` and `doctor` read; a stack of an older template lacks some.
pub const REQUIRED_OUTPUTS: [&str; 3] = [
    "GitHubWebhookUrl",
    "CodeBuildServiceRoleArn",
    "CodeBuildForkServiceRoleArn",
];

/// The clients of the stack's region. The region and credentials are the AWS CLI's
/// (`AWS_REGION`, `AWS_PROFILE`, ...); `AWS_ENDPOINT_URL` and the per-service
/// `AWS_ENDPOINT_URL_<SERVICE>` point them elsewhere, as for every AWS SDK.
pub struct Aws {
    pub region: String,
    pub sdk: aws_config::SdkConfig,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub codebuild: aws_sdk_codebuild::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Aws {
    pub async fn load() -> anyhow::Result<Self> {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let region = config
            .region()
            .map(ToString::to_string)
            .ok_or_else(|| anyhow!("no AWS region: set AWS_REGION to the stack's region"))?;
        Ok(Self {
            region,
            cloudformation: aws_sdk_cloudformation::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            codebuild: aws_sdk_codebuild::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
            sdk: config,
        })
    }
}

/// One deployed stack.
#[derive(Debug, Clone)]
pub struct Stack {
    pub name: String,
    pub region: String,
    pub outputs: BTreeMap<String, String>,
    pub parameters: BTreeMap<String, String>,
}

impl Stack {
    pub async fn read(aws: &Aws, name: &str) -> anyhow::Result<Self> {
        let answer = aws
            .cloudformation
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| {
                let text = DisplayErrorContext(&e).to_string();
                if text.contains("does not exist") {
                    anyhow!(
                        "no stack {name} in {}: deploy it first (sam build && sam deploy --guided), \
                         or set AWS_REGION to the region it is in",
                        aws.region
                    )
                } else {
                    anyhow!("cannot read the stack {name}: {text}")
                }
            })?;
        let stack = answer
            .stacks()
            .first()
            .ok_or_else(|| anyhow!("no stack {name} in {}", aws.region))?;
        let outputs = stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
            .collect();
        let parameters = stack
            .parameters()
            .iter()
            .filter_map(|p| {
                let value = p
                    .resolved_value()
                    .or(p.parameter_value())
                    .unwrap_or_default();
                Some((p.parameter_key()?.to_string(), value.to_string()))
            })
            .collect();
        Ok(Self {
            name: name.to_string(),
            region: aws.region.clone(),
            outputs,
            parameters,
        })
    }

    /// The outputs of [`REQUIRED_OUTPUTS`] this stack lacks.
    pub fn missing_outputs(&self) -> Vec<&'static str> {
        REQUIRED_OUTPUTS
            .into_iter()
            .filter(|key| !self.outputs.contains_key(*key))
            .collect()
    }

    pub fn output(&self, key: &str) -> anyhow::Result<&str> {
        self.outputs.get(key).map(String::as_str).ok_or_else(|| {
            anyhow!(
                "the stack {} has no output {key}: deploy this version's template \
                 (sam build && sam deploy)",
                self.name
            )
        })
    }

    pub fn parameter(&self, key: &str) -> anyhow::Result<&str> {
        self.parameters
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("the stack {} has no parameter {key}", self.name))
    }

    /// A base URL parameter (`GitHubApiUrl`, ...), or the public service's.
    pub fn api_url(&self, key: &str, default: &str) -> String {
        self.parameters
            .get(key)
            .filter(|v| !v.is_empty())
            .map_or(default, String::as_str)
            .trim_end_matches('/')
            .to_string()
    }

    /// The dead-letter queues' outputs (`...DeadLetterQueueUrl`), by output name.
    pub fn dead_letter_queues(&self) -> impl Iterator<Item = (&str, &str)> {
        self.outputs
            .iter()
            .filter(|(key, _)| key.ends_with("DeadLetterQueueUrl"))
            .map(|(key, url)| (key.as_str(), url.as_str()))
    }
}

/// The stack's secret: its JSON object as stored (every key kept when one is added), and the
/// typed view the functions use.
pub struct StackSecret {
    pub arn: String,
    pub object: serde_json::Map<String, serde_json::Value>,
    pub secrets: Secrets,
}

impl StackSecret {
    pub async fn read(aws: &Aws, stack: &Stack) -> anyhow::Result<Self> {
        let arn = stack.parameter("SecretArn")?.to_string();
        let answer = aws
            .secrets
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .map_err(|e| anyhow!("cannot read the secret {arn}: {}", DisplayErrorContext(e)))?;
        let Some(text) = answer.secret_string() else {
            bail!("the secret {arn} holds binary data, not a JSON object of strings")
        };
        let secrets = Secrets::from_json(text).with_context(|| format!("the secret {arn}"))?;
        let object = serde_json::from_str(text).context("the secret is a JSON object")?;
        Ok(Self {
            arn,
            object,
            secrets,
        })
    }

    pub fn has(&self, key: &str) -> bool {
        self.secrets
            .get(key)
            .is_some_and(|v| !v.expose().is_empty())
    }
}
