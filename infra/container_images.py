"""Container images by URI: an ECR image through its repository (so a task may pull it), any other by name."""

from __future__ import annotations

import re

from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from constructs import Construct

ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com/([^:@]+):(.+)$")


def container_image(scope: Construct, uri: str, construct_id: str = "RestoreImageRepository") -> ecs.ContainerImage:
    """An ECR image through its repository (so the task may pull it); any other registry by name."""
    match = ECR_IMAGE.match(uri)
    if not match:
        return ecs.ContainerImage.from_registry(uri)
    account, region, name, tag = match.groups()
    repository = ecr.Repository.from_repository_attributes(
        scope,
        construct_id,
        repository_arn=f"arn:aws:ecr:{region}:{account}:repository/{name}",
        repository_name=name,
    )
    return ecs.ContainerImage.from_ecr_repository(repository, tag)
