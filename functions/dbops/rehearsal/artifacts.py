"""What a deployed rehearsal's steps hand to each other through the bucket, under
`rehearsals/<database>/<rehearsal id>/`: the schema before the upgrade, the relations before and after each run,
the watcher's observations of each run, and at the end the result (JSON) and its report (text).

Step Functions passes at most 256 KB from step to step, and the watcher runs in another container: the bucket
carries what is bigger or comes from elsewhere. The prefix expires with the bucket's lifecycle rule for it.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from dbops.aws import s3stream
from dbops.contract import REHEARSALS_PREFIX
from dbops.errors import StorageError
from dbops.rehearsal.rewrites import Relation, Relations
from dbops.rehearsal.watcher import Observations

_RELATIONS: TypeAdapter[dict[int, Relation]] = TypeAdapter(dict[int, Relation])
_OBSERVATIONS: TypeAdapter[Observations] = TypeAdapter(Observations)


def key(database: str, rehearsal_id: str, name: str) -> str:
    return f"{REHEARSALS_PREFIX}{database}/{rehearsal_id}/{name}"


def _load(bucket: str, object_key: str, adapter: TypeAdapter[Any]) -> Any:
    body = s3stream.get_text(bucket, object_key)
    return None if body is None else adapter.validate_json(body)


def save_relations(bucket: str, object_key: str, relations: Relations) -> None:
    s3stream.put_json(bucket, object_key, _RELATIONS.dump_json(relations).decode())


def load_relations(bucket: str, object_key: str) -> Relations:
    found = _load(bucket, object_key, _RELATIONS)
    if found is None:
        raise StorageError(f"s3://{bucket}/{object_key} is missing: the rehearsal's relations were not saved")
    return dict(found)


def save_observations(bucket: str, object_key: str, observations: Observations) -> None:
    s3stream.put_json(bucket, object_key, _OBSERVATIONS.dump_json(observations).decode())


def load_observations(bucket: str, object_key: str) -> Observations | None:
    """The watcher's observations of a run; None when the watcher left none (it could not connect or was killed)."""
    found = _load(bucket, object_key, _OBSERVATIONS)
    return found if isinstance(found, Observations) else None
