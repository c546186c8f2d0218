"""DescribeDBEngineVersions on the local stack: moto does not implement it, so the local RDS answers it from the
versions a test or the demo says RDS offers (`offer_engine_versions`), in RDS's own response shape. Nothing else
of RDS's catalogue is simulated: an engine with no versions offered answers an empty list, as RDS does for an
unknown engine."""

from __future__ import annotations

from moto.core.responses import ActionResult
from moto.rds.responses import RDSResponse

_offered: dict[str, list[str]] = {}


def _describe_db_engine_versions(self: RDSResponse) -> ActionResult:
    engine = str(self.params.get("Engine") or "")
    wanted = self.params.get("EngineVersion")
    versions = [v for v in _offered.get(engine, []) if wanted is None or v == wanted]
    family = {"postgres": "postgres", "aurora-postgresql": "aurora-postgresql"}.get(engine, engine)
    return ActionResult(
        {
            "DBEngineVersions": [
                {"Engine": engine, "EngineVersion": v, "DBParameterGroupFamily": f"{family}{v.split('.')[0]}"}
                for v in versions
            ]
        }
    )


def offer_engine_versions(engine: str, versions: list[str]) -> None:
    """From now on the local RDS offers these versions of `engine` (e.g. "postgres", ["15.4", "15.8", "16.4"])."""
    _offered[engine] = list(versions)
    RDSResponse.describe_db_engine_versions = _describe_db_engine_versions  # type: ignore[attr-defined]
