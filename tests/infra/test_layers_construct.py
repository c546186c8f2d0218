"""Layers in the stack: built ones from layers/build, a warned placeholder when absent, CA bundles in certs/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.infra.conftest import Synth, settings_dict, synth


def _layer_asset(result: Synth, layer: Any) -> Path:
    props = result.json["Resources"][result.logical_id(layer)]["Properties"]
    return result.outdir / f"asset.{props['Content']['S3Key'].removesuffix('.zip')}"


def test_missing_layer_builds_synthesize_with_a_placeholder_and_a_warning(synthesized: Synth) -> None:
    from aws_cdk.assertions import Annotations, Match

    layers = synthesized.stack.layers
    assert layers.placeholders == ["pgtools", "python"]
    assert (_layer_asset(synthesized, layers.pgtools) / "README.txt").is_file()
    warnings = Annotations.from_stack(synthesized.stack).find_warning(
        "*", Match.string_like_regexp("layer pgtools-arm64 is not built")
    )
    assert len(warnings) == 1


def test_layers_are_for_the_configured_architecture_and_runtime(synthesized: Synth) -> None:
    for layer in synthesized.stack.layers.all:
        props = synthesized.json["Resources"][synthesized.logical_id(layer)]["Properties"]
        assert props["CompatibleArchitectures"] == ["arm64"]
        assert props["CompatibleRuntimes"] == ["python3.12"]


def test_certificates_layer_carries_the_configured_ca_bundles_under_certs(synthesized: Synth) -> None:
    certificates = synthesized.stack.layers.certificates
    assert certificates is not None
    staged = _layer_asset(synthesized, certificates)
    assert sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()) == ["certs/test-ca.pem"]


def test_built_layers_are_used_when_present(tmp_path: Path) -> None:
    build = tmp_path / "layers-build"
    (build / "pgtools-x86_64" / "bin").mkdir(parents=True)
    (build / "pgtools-x86_64" / "bin" / "pg_dump").write_text("#!/bin/sh\n")
    (build / "python-x86_64" / "python").mkdir(parents=True)
    (build / "python-x86_64" / "python" / "marker.py").write_text("")
    settings = settings_dict()
    settings["architecture"] = "x86_64"
    result = synth(tmp_path, settings, layers_build_dir=build)
    layers = result.stack.layers
    assert layers.placeholders == []
    assert (_layer_asset(result, layers.pgtools) / "bin" / "pg_dump").is_file()
    assert (_layer_asset(result, layers.python) / "python" / "marker.py").is_file()
    backup = result.json["Resources"][result.logical_id(result.stack.functions.backup)]["Properties"]
    assert backup["Architectures"] == ["x86_64"]


def test_require_layers_refuses_to_synthesize_without_them(tmp_path: Path) -> None:
    from infra.layers import LayerBuildMissing

    settings = settings_dict()
    settings["require_layers"] = True
    with pytest.raises(LayerBuildMissing, match=r"layer pgtools-arm64 is not built .* run `make layers`"):
        synth(tmp_path, settings)
