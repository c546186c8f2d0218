"""S3 Object Lock on multipart uploads, on the moto server: moto 5.2 ignores the lock headers of
CreateMultipartUpload (`x-amz-object-lock-mode`, `x-amz-object-lock-retain-until-date`) and completes the upload
into an unlocked version. S3 writes the completed version with the retention given at creation; so does the moto
server here once `install()` ran, and dbops' code sets a lock once, on CreateMultipartUpload, as it does on S3.

The lock is taken from the request's headers where moto handles it (S3Response, per request, in the server's
thread), kept on the upload, and given to the version that completing the upload writes.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.s3.models import FakeKey, FakeMultipart, S3Backend
from moto.s3.responses import S3Response

_request = threading.local()  # the lock headers of the POST being handled in this thread
_install_lock = threading.Lock()
_installed = False
_original_post = S3Response._key_response_post
_original_create = S3Backend.create_multipart_upload
_original_complete = S3Backend.complete_multipart_upload


def _key_response_post(self: S3Response, *args: Any, **kwargs: Any) -> Any:
    mode, until = self.headers.get("x-amz-object-lock-mode"), self.headers.get("x-amz-object-lock-retain-until-date")
    _request.lock = (mode, until) if mode and until else None
    try:
        return _original_post(self, *args, **kwargs)
    finally:
        _request.lock = None


def _create_multipart_upload(self: S3Backend, bucket_name: str, *args: Any, **kwargs: Any) -> FakeMultipart:
    multipart = _original_create(self, bucket_name, *args, **kwargs)
    lock = getattr(_request, "lock", None)
    if lock is not None and self.get_bucket(bucket_name).object_lock_enabled:
        multipart.dbops_object_lock = lock  # type: ignore[attr-defined]
    return multipart


def _complete_multipart_upload(self: S3Backend, bucket_name: str, multipart_id: str, body: Any) -> FakeKey | None:
    upload = self.get_bucket(bucket_name).multiparts.get(multipart_id)
    lock = getattr(upload, "dbops_object_lock", None)
    key = _original_complete(self, bucket_name, multipart_id, body)
    if key is not None and lock is not None:
        key.lock_mode, key.lock_until = lock  # as PutObject stores its lock headers
    return key


def install() -> None:
    """Patch the moto S3 of this process (the local stack's server runs in it); idempotent."""
    global _installed
    with _install_lock:
        if _installed:
            return
        S3Response._key_response_post = _key_response_post  # type: ignore[method-assign]
        S3Backend.create_multipart_upload = _create_multipart_upload  # type: ignore[method-assign]
        S3Backend.complete_multipart_upload = _complete_multipart_upload  # type: ignore[method-assign]
        _installed = True
