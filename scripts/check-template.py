"""Two day-one properties of template.yaml that cfn-lint and `sam validate` do not check, with
the pinned aws-sam-cli's own code (scripts/test runs it):

- a second stack in the same account and region creates: no resource of the transformed
  template carries a fixed physical name, which two stacks would both claim (a ScheduleV2
  without a Name gets `<Function><Event>`; an explicit QueueName, RoleName, LogGroupName ... is
  shared by every stack). A name built from ${AWS::StackName} is unique per stack and allowed;
- `sam deploy --guided` asks no "<Function> has no authentication. Is this okay? [y/N]", whose
  default answer aborts the deploy (the check is SAM CLI's own `auth_per_resource`)."""

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


PARAMETERS = {
    "SecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:shipline-AbCdEf",
    "CodeBuildProjects": "pax-user",
}


def guided_deploy_questions(path):
    """The functions `sam deploy --guided` would ask about, one entry per unauthenticated route."""
    from samcli.commands.deploy.auth_utils import auth_per_resource
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    stacks, _ = SamLocalStackProvider.get_stacks(path, parameter_overrides=PARAMETERS)
    return [name for name, authenticated in auth_per_resource(stacks) if not authenticated]


def main(path):
    # The translator wants a region and packaged code; neither changes a name.
    if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
        os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
    with open(path) as f:
        template = yaml_parse(f.read())
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/key"
    transformed = transform(template, PARAMETERS, NoManagedPolicies())
    fixed = []
    for logical_id, resource in transformed["Resources"].items():
        prop = NAME_PROPERTIES.get(resource["Type"])
        value = (resource.get("Properties") or {}).get(prop) if prop else None
        if not per_stack(value):
            fixed.append(f"{logical_id} ({resource['Type']}) has a fixed {prop}: {json.dumps(value)}")
    failed = False
    if fixed:
        print("a second stack of this template in the same region would collide:")
        print("\n".join("  " + line for line in fixed))
        failed = True
    else:
        print(f"{len(transformed['Resources'])} resources, none with a fixed name: a second stack creates")
    questions = guided_deploy_questions(path)
    if questions:
        print("sam deploy --guided would ask, and abort on the default answer:")
        print("\n".join(f"  {name} has no authentication. Is this okay? [y/N]" for name in questions))
        failed = True
    else:
        print("sam deploy --guided asks no authentication question")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
