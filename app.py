#!/usr/bin/env python3
"""The dbops CDK app: `python app.py` or `npx cdk synth` (settings: the "dbops" object in cdk.json's context)."""

import os
import sys

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from infra.application import build_app
from infra.settings import SettingsError


def main() -> int:
    try:
        app, _ = build_app()
    except SettingsError as exc:
        print(f"dbops: {exc}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
