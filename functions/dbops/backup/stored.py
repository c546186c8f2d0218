"""Reading a stored backup object back: decompressed, and checked against its manifest entry as it streams."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import zstandard

from dbops.aws import s3stream
from dbops.backup.catalog import StoredObject
from dbops.errors import VerificationFailed


def read_back(bucket: str, obj: StoredObject) -> Iterator[bytes]:
    """The object's decompressed bytes. After the last of them, a mismatch with the manifest (size, sha256, or
    a zstd stream that is broken or ends early) raises VerificationFailed; a broken stream is still read to
    its end, so a changed object is reported as changed rather than as unreadable."""
    digest = hashlib.sha256()
    size = 0
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    broken: str | None = None
    for chunk in s3stream.iter_object(bucket, obj.key):
        digest.update(chunk)
        size += len(chunk)
        if broken is None:
            try:
                data = decompressor.decompress(chunk)
            except zstandard.ZstdError as exc:
                broken = f"the object is not a valid zstd stream: {exc}"
                continue
            yield data
    if size != obj.size:
        raise VerificationFailed(f"size {size} bytes differs from the manifest's {obj.size} bytes")
    if digest.hexdigest() != obj.sha256:
        raise VerificationFailed("sha256 of the object differs from the manifest's")
    if broken:
        raise VerificationFailed(broken)
    if not decompressor.eof:
        raise VerificationFailed("the compressed stream ends early (truncated object)")
