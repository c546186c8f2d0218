"""The Lambda layers: PostgreSQL client tools, Python dependencies (both built by `make layers`) and CA bundles.

Synth never builds anything. When layers/build/ has no build for the architecture, the layer is made from
an empty placeholder with a warning (synth, tests and reviews work on a fresh clone); `require_layers: true`
in cdk.json turns that into an error, which is what a deploy wants.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import Annotations, BundlingOptions, DockerImage, ILocalBundling, RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constants import LAYER_PLACEHOLDER_DIR, LAYERS_BUILD_DIR
from infra.settings import StackSettings

RUNTIME = lambda_.Runtime.PYTHON_3_12


class LayerBuildMissing(RuntimeError):
    """require_layers is set and `make layers` has not produced the layer."""


def architecture(name: str) -> lambda_.Architecture:
    return lambda_.Architecture.ARM_64 if name == "arm64" else lambda_.Architecture.X86_64


@jsii.implements(ILocalBundling)
class _CopyCertificates:
    """Local bundling (no Docker): copy the configured CA bundles into the layer's certs/ folder."""

    def __init__(self, source: Path, names: Sequence[str]) -> None:
        self.source = source
        self.names = list(names)

    def try_bundle(self, output_dir: str, *, image: DockerImage, **_: Any) -> bool:
        target = Path(output_dir) / "certs"
        target.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            shutil.copyfile(self.source / name, target / name)
        return True


class Layers(Construct):
    """`pgtools` (/opt/bin, /opt/lib), `python` (/opt/python) and, when CA bundles are configured, `certificates`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        arch: str,
        certs_dir: Path,
        ca_bundles: Sequence[str],
        require_built: bool,
        build_dir: Path = LAYERS_BUILD_DIR,
    ) -> None:
        super().__init__(scope, construct_id)
        self.arch = arch
        self.build_dir = build_dir
        self.require_built = require_built
        self.placeholders: list[str] = []
        self.pgtools = self._layer(
            "PgTools",
            "pgtools",
            "dbops: pg_dump, pg_restore, psql of PostgreSQL 18 with a TLS-capable libpq (bin/, lib/)",
        )
        self.python = self._layer("Python", "python", "dbops: the functions' Python dependencies (python/)")
        self.certificates: lambda_.LayerVersion | None = None
        if ca_bundles:
            self.certificates = lambda_.LayerVersion(
                self,
                "Certificates",
                description="dbops: CA bundles for verify-full TLS to the databases (certs/)",
                code=lambda_.Code.from_asset(
                    str(certs_dir),
                    bundling=BundlingOptions(
                        image=DockerImage.from_registry("dbops/no-docker-needed"),
                        local=_CopyCertificates(certs_dir, ca_bundles),
                    ),
                ),
                compatible_architectures=[architecture(arch)],
                compatible_runtimes=[RUNTIME],
                removal_policy=RemovalPolicy.RETAIN,
            )

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        layers: list[lambda_.ILayerVersion] = [self.pgtools, self.python]
        if self.certificates is not None:
            layers.append(self.certificates)
        return layers

    def _layer(self, construct_id: str, kind: str, description: str) -> lambda_.LayerVersion:
        built = self.build_dir / f"{kind}-{self.arch}"
        source = built
        if not built.is_dir():
            missing = f"layer {kind}-{self.arch} is not built ({built} is missing): run `make layers`"
            if self.require_built:
                raise LayerBuildMissing(f"{missing} (require_layers is set in cdk.json)")
            message = f"{missing} before deploying; this synth uses an empty placeholder layer"
            source = LAYER_PLACEHOLDER_DIR
            self.placeholders.append(kind)
            Annotations.of(self).add_warning_v2(f"dbops:layer-missing-{kind}", message)
            print(f"warning: {message}", file=sys.stderr)
        return lambda_.LayerVersion(
            self,
            construct_id,
            description=description,
            code=lambda_.Code.from_asset(str(source)),
            compatible_architectures=[architecture(self.arch)],
            compatible_runtimes=[RUNTIME],
            removal_policy=RemovalPolicy.RETAIN,
        )


def stack_layers(scope: Construct, settings: StackSettings, *, certs_dir: Path, build_dir: Path) -> Layers:
    """A stack's layers as its settings ask for them (the main stack's and the DR stack's alike)."""
    return Layers(
        scope,
        "Layers",
        arch=settings.architecture,
        certs_dir=certs_dir,
        ca_bundles=settings.ca_bundles(),
        require_built=settings.require_layers,
        build_dir=build_dir,
    )
