"""moto's Step Functions parses a state machine's definition again for every execution it starts (ANTLR in Python:
65-117 ms for the restore state machine timed alone on this 2-core host; the time before an execution's first state,
mostly that parse, reached 0.67 s under load), which AWS does not: a local execution's own time
(its startDate to its first state) would count it. The parsed program is kept per definition text. Sharing it is
safe: its components hold no execution's state (each execution's is in its own Environment, retry attempts and
backoffs in that Environment's heap, keyed by component; a Parallel's or a Map's workers are made per evaluation).
"""

from __future__ import annotations

import functools

from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser


def install() -> None:
    """Parse each definition once (idempotent)."""
    parse = AmazonStateLanguageParser.parse
    if not hasattr(parse, "cache_info"):
        AmazonStateLanguageParser.parse = staticmethod(functools.lru_cache(maxsize=32)(parse))  # type: ignore[method-assign]
