//! CloudWatch alarms, as SNS delivers them (raw delivery) to the notifications queue: the
//! pipeline's own failures, told in the same chat ("3 messages in the deploy DLQ").

use serde::Deserialize;
use shared::config::Config;
use shared::messages::{self, Facts, Notification, NotificationKind};

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CloudWatchAlarm {
    pub alarm_name: String,
    #[serde(default)]
    pub alarm_description: Option<String>,
    pub new_state_value: String,
    #[serde(default)]
    pub old_state_value: Option<String>,
    #[serde(default)]
    pub new_state_reason: Option<String>,
    #[serde(default)]
    pub state_change_time: Option<String>,
    #[serde(default)]
    pub trigger: Option<Trigger>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Trigger {
    #[serde(default)]
    pub metric_name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Dimension {
    #[serde(alias = "Name")]
    pub name: String,
    #[serde(alias = "Value")]
    pub value: String,
}

/// The first number in "[3.0 (26/11/26 10:00:00)]" of a CloudWatch state reason.
fn datapoint(reason: &str) -> Option<f64> {
    let start = reason.find('[')? + 1;
    reason[start..].split([' ', ']', ',']).next()?.parse().ok()
}

impl CloudWatchAlarm {
    /// Whether the change is news for the team. A new alarm starts in INSUFFICIENT_DATA and
    /// its first evaluation moves it to OK, which fires its OK actions: on a stack's first
    /// deploy every alarm would say "Resolved" about nothing.
    pub fn is_news(&self) -> bool {
        !(self.new_state_value == "OK"
            && self.old_state_value.as_deref() == Some("INSUFFICIENT_DATA"))
    }

    fn dimension(&self, name: &str) -> Option<&str> {
        self.trigger
            .as_ref()?
            .dimensions
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }

    /// A title a person understands without opening CloudWatch.
    pub fn title(&self) -> String {
        let metric = self
            .trigger
            .as_ref()
            .and_then(|t| t.metric_name.as_deref())
            .unwrap_or("");
        let value = self.new_state_reason.as_deref().and_then(datapoint);
        if self.new_state_value == "OK" {
            return format!(
                "Resolved: {}",
                self.alarm_description
                    .as_deref()
                    .unwrap_or(&self.alarm_name)
            );
        }
        match (
            metric,
            self.dimension("QueueName"),
            self.dimension("FunctionName"),
            value,
        ) {
            ("ApproximateNumberOfMessagesVisible", Some(queue), _, Some(n)) => {
                let what = if queue.to_ascii_lowercase().contains("deadletter")
                    || queue.to_ascii_lowercase().contains("dlq")
                {
                    "dead-letter queue"
                } else {
                    "queue"
                };
                format!(
                    "{} message{} in the {what} {queue}",
                    n as u64,
                    if n as u64 == 1 { "" } else { "s" }
                )
            }
            ("Errors", _, Some(function), Some(n)) => format!(
                "{} error{} in {function}",
                n as u64,
                if n as u64 == 1 { "" } else { "s" }
            ),
            ("Throttles", _, Some(function), Some(n)) => format!(
                "{function} throttled {} time{}",
                n as u64,
                if n as u64 == 1 { "" } else { "s" }
            ),
            _ => self
                .alarm_description
                .clone()
                .unwrap_or_else(|| self.alarm_name.clone()),
        }
    }

    pub fn notification(&self, config: &Config, now: &str) -> Notification {
        Notification {
            v: messages::VERSION,
            kind: NotificationKind::OpsAlarm,
            thread_key: format!("alarm:{}", self.alarm_name),
            channels: config
                .defaults
                .notify
                .iter()
                .map(|c| c.value.clone())
                .collect(),
            facts: Facts {
                title: Some(self.title()),
                reason: Some(format!(
                    "{} → {}: {}",
                    self.alarm_name,
                    self.new_state_value,
                    self.new_state_reason.as_deref().unwrap_or("")
                )),
                status: Some(self.new_state_value.clone()),
                ..Facts::default()
            },
            at: self
                .state_change_time
                .clone()
                .unwrap_or_else(|| now.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const DLQ_ALARM: &str = r#"{"AlarmName":"shipline-deploy-dlq","AlarmDescription":"Deploy requests in the dead-letter queue","AWSAccountId":"123456789012","NewStateValue":"ALARM","NewStateReason":"Threshold Crossed: 1 datapoint [3.0 (26/11/26 10:00:00)] was greater than or equal to the threshold (1.0).","StateChangeTime":"2026-11-26T10:00:00.000+0000","Region":"EU (Ireland)","OldStateValue":"OK","Trigger":{"MetricName":"ApproximateNumberOfMessagesVisible","Namespace":"AWS/SQS","StatisticType":"Statistic","Statistic":"MAXIMUM","Unit":null,"Dimensions":[{"value":"shipline-DeployDeadLetterQueue-1A2B3C.fifo","name":"QueueName"}],"Period":60,"EvaluationPeriods":1,"ComparisonOperator":"GreaterThanOrEqualToThreshold","Threshold":1.0}}"#;

    #[test]
    fn a_dead_letter_alarm_says_how_many_messages_wait() {
        let alarm: CloudWatchAlarm = serde_json::from_str(DLQ_ALARM).unwrap();
        assert_eq!(
            alarm.title(),
            "3 messages in the dead-letter queue shipline-DeployDeadLetterQueue-1A2B3C.fifo"
        );
        let config =
            Config::from_yaml("channels:\n  team: { console: {} }\ndefaults:\n  notify: [team]\n")
                .unwrap();
        let n = alarm.notification(&config, "2026-11-26T10:00:01Z");
        assert_eq!(n.channels, vec!["team"]);
        assert_eq!(n.thread_key, "alarm:shipline-deploy-dlq");
    }

    #[test]
    fn errors_throttles_and_recovery_read_plainly() {
        let errors = DLQ_ALARM
            .replace("ApproximateNumberOfMessagesVisible", "Errors")
            .replace(
                r#"{"value":"shipline-DeployDeadLetterQueue-1A2B3C.fifo","name":"QueueName"}"#,
                r#"{"value":"shipline-notifier","name":"FunctionName"}"#,
            )
            .replace("[3.0", "[1.0");
        let alarm: CloudWatchAlarm = serde_json::from_str(&errors).unwrap();
        assert_eq!(alarm.title(), "1 error in shipline-notifier");
        let ok: CloudWatchAlarm = serde_json::from_str(
            &DLQ_ALARM.replace(r#""NewStateValue":"ALARM""#, r#""NewStateValue":"OK""#),
        )
        .unwrap();
        assert_eq!(
            ok.title(),
            "Resolved: Deploy requests in the dead-letter queue"
        );
    }
}
