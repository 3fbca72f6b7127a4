"""A second stack of template.yaml in the same account and region must create: no resource of the
transformed template may carry a fixed physical name, since two stacks would then ask for the
same one (a ScheduleV2 without a Name gets `<Function><Event>`; an explicit QueueName, RoleName,
LogGroupName ... is shared by every stack). A name built from ${AWS::StackName} is unique per
stack and allowed. Run by scripts/test with the pinned aws-sam-cli's samtranslator."""

import json
import os
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# The properties that name a resource in its account and region, per resource type.
NAME_PROPERTIES = {
    "AWS::Scheduler::Schedule": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::ApiGatewayV2::Api": "Name",
}


class NoManagedPolicies:
    """The template names no AWS managed policy by name, so nothing needs looking up."""

    def load(self):
        return {}


def per_stack(value):
    """True when a name is built from the stack's name (or is not there at all)."""
    return value is None or "AWS::StackName" in json.dumps(value)


def main(path):
    # The translator wants a region and packaged code; neither changes a name.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    with open(path) as f:
        template = yaml_parse(f.read())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/key"
    parameters = {"SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:shipline-AbCdEf",
                  "CodeBuildProjects": "pax-user"}
    transformed = transform(template, parameters, NoManagedPolicies())
    fixed = []
    for logical_id, resource in transformed["Resources"].items():
        prop = NAME_PROPERTIES.get(resource["Type"])
        value = (resource.get("Properties") or {}).get(prop) if prop else None
        if not per_stack(value):
            fixed.append(f"{logical_id} ({resource['Type']}) has a fixed {prop}: {json.dumps(value)}")
    if fixed:
        print("a second stack of this template in the same region would collide:")
        print("\n".join("  " + line for line in fixed))
        return 1
    print(f"{len(transformed['Resources'])} resources, none with a fixed name: a second stack creates")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
