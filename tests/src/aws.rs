//! AWS on moto: clients, and the resources a stack would have (FIFO queues, the state table,
//! the config parameter, the secret), made fresh for each test.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

pub const REGION: &str = "us-east-1";

/// The moto endpoint the test command started, from `SHIPLINE_TEST_AWS_ENDPOINT`.
pub fn endpoint() -> String {
    std::env::var("SHIPLINE_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("SHIPLINE_TEST_AWS_ENDPOINT is not set: these tests need moto; run scripts/test")
    })
}

/// The environment a function process gets to reach moto.
pub fn process_env() -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint().as_str()),
        ("AWS_REGION", REGION),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub async fn sdk_config() -> aws_config::SdkConfig {
    let credentials =
        aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "moto");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint())
        .credentials_provider(credentials)
        .load()
        .await
}

/// A FIFO queue (content-based deduplication off: shipline always sends its own ids).
pub async fn create_fifo_queue(config: &aws_config::SdkConfig, name: &str) -> String {
    let client = aws_sdk_sqs::Client::new(config);
    client
        .create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("create FIFO queue on moto")
        .queue_url
        .unwrap()
}

/// Every message on the queue, received and deleted, in order.
pub async fn drain_queue(
    config: &aws_config::SdkConfig,
    url: &str,
) -> Vec<aws_sdk_sqs::types::Message> {
    let client = aws_sdk_sqs::Client::new(config);
    let mut all = Vec::new();
    loop {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive from moto");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return all;
        }
        for m in &messages {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle.clone().unwrap())
                .send()
                .await
                .expect("delete from moto");
        }
        all.extend(messages);
    }
}

/// The state table as the template declares it: key `pk`, TTL on `expires_at`.
pub async fn create_state_table(config: &aws_config::SdkConfig, name: &str) {
    let client = aws_sdk_dynamodb::Client::new(config);
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table on moto");
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("enable TTL on moto");
}

/// Every item's `pk` in the table.
pub async fn table_keys(config: &aws_config::SdkConfig, name: &str) -> Vec<String> {
    let out = aws_sdk_dynamodb::Client::new(config)
        .scan()
        .table_name(name)
        .send()
        .await
        .expect("scan on moto");
    let mut keys: Vec<String> = out
        .items
        .unwrap_or_default()
        .iter()
        .filter_map(|item: &HashMap<_, _>| item.get("pk")?.as_s().ok().cloned())
        .collect();
    keys.sort();
    keys
}

pub async fn put_parameter(config: &aws_config::SdkConfig, name: &str, value: &str) {
    aws_sdk_ssm::Client::new(config)
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .expect("put parameter on moto");
}

/// Creates a secret and returns its ARN.
pub async fn create_secret(config: &aws_config::SdkConfig, name: &str, json: &str) -> String {
    aws_sdk_secretsmanager::Client::new(config)
        .create_secret()
        .name(name)
        .secret_string(json)
        .send()
        .await
        .expect("create secret on moto")
        .arn
        .unwrap()
}

/// A standard queue.
pub async fn create_queue(config: &aws_config::SdkConfig, name: &str) -> String {
    aws_sdk_sqs::Client::new(config)
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("create queue on moto")
        .queue_url
        .unwrap()
}

/// The queue's ARN, as Lambda gives it in `eventSourceARN`.
pub async fn queue_arn(config: &aws_config::SdkConfig, url: &str) -> String {
    aws_sdk_sqs::Client::new(config)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes on moto")
        .attributes
        .unwrap()
        .remove(&QueueAttributeName::QueueArn)
        .unwrap()
}

/// Receives what is on a queue (without deleting it) and shapes it as the SQS event Lambda
/// would hand the consumer: the real receipt handles, group ids and source ARN.
pub async fn receive_as_event(
    config: &aws_config::SdkConfig,
    url: &str,
) -> aws_lambda_events::sqs::SqsEvent {
    let arn = queue_arn(config, url).await;
    let out = aws_sdk_sqs::Client::new(config)
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive from moto");
    let records = out
        .messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let attributes: serde_json::Map<String, serde_json::Value> = m
                .attributes
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k.as_str().to_string(), serde_json::Value::String(v)))
                .collect();
            serde_json::json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            })
        })
        .collect::<Vec<_>>();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event")
}

/// Deletes the messages of a batch that the consumer did not report failed, as Lambda's
/// event source mapping does.
pub async fn settle_batch(
    config: &aws_config::SdkConfig,
    url: &str,
    event: &aws_lambda_events::sqs::SqsEvent,
    response: &aws_lambda_events::sqs::SqsBatchResponse,
) {
    let client = aws_sdk_sqs::Client::new(config);
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    for record in &event.records {
        if !failed.contains(&record.message_id.as_deref().unwrap_or("")) {
            client
                .delete_message()
                .queue_url(url)
                .receipt_handle(record.receipt_handle.clone().unwrap())
                .send()
                .await
                .expect("delete from moto");
        }
    }
}

/// A CodeBuild project on moto (the fields moto insists on).
pub async fn create_codebuild_project(config: &aws_config::SdkConfig, name: &str) {
    use aws_sdk_codebuild::types::{
        ArtifactsType, ComputeType, EnvironmentType, ProjectArtifacts, ProjectEnvironment,
        ProjectSource, SourceType,
    };
    aws_sdk_codebuild::Client::new(config)
        .create_project()
        .name(name)
        .source(
            ProjectSource::builder()
                .r#type(SourceType::Github)
                .location("https://github.com/pax-app/User.git")
                .build()
                .unwrap(),
        )
        .artifacts(
            ProjectArtifacts::builder()
                .r#type(ArtifactsType::NoArtifacts)
                .build()
                .unwrap(),
        )
        .environment(
            ProjectEnvironment::builder()
                .r#type(EnvironmentType::LinuxContainer)
                .image("aws/codebuild/standard:7.0")
                .compute_type(ComputeType::BuildGeneral1Small)
                .build()
                .unwrap(),
        )
        .service_role("arn:aws:iam::123456789012:role/codebuild")
        .send()
        .await
        .expect("create CodeBuild project on moto");
}

/// A queue as the stack makes it: a dead-letter queue of the same kind behind it after
/// `max_receives` receives, and a short visibility timeout so that a failed message comes
/// back within the test. Returns the queue's URL and its DLQ's.
pub async fn create_queue_with_dlq(
    config: &aws_config::SdkConfig,
    name: &str,
    fifo: bool,
    max_receives: u32,
) -> (String, String) {
    let client = aws_sdk_sqs::Client::new(config);
    let create = |name: String| {
        let mut request = client.create_queue();
        if fifo {
            request = request
                .queue_name(format!("{name}.fifo"))
                .attributes(QueueAttributeName::FifoQueue, "true");
        } else {
            request = request.queue_name(name);
        }
        request
    };
    let dlq_url = create(format!("{name}-dlq"))
        .send()
        .await
        .expect("create DLQ on moto")
        .queue_url
        .unwrap();
    let dlq_arn = queue_arn(config, &dlq_url).await;
    let url = create(name.to_string())
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
                .to_string(),
        )
        .send()
        .await
        .expect("create queue on moto")
        .queue_url
        .unwrap();
    (url, dlq_url)
}

/// Messages on a queue: visible, in flight and delayed together.
pub async fn queue_depth(config: &aws_config::SdkConfig, url: &str) -> u64 {
    let attributes = aws_sdk_sqs::Client::new(config)
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes on moto")
        .attributes
        .unwrap_or_default();
    attributes
        .values()
        .map(|v| v.parse::<u64>().unwrap_or(0))
        .sum()
}
