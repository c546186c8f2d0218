"""A moto server on 127.0.0.1: the local AWS, reached over real HTTP through AWS_ENDPOINT_URL."""

from __future__ import annotations

import logging
import os

from moto.server import ThreadedMotoServer

from dbops import aws
from local_stack import s3_object_lock
from local_stack.postgres import free_port

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


class LocalAws:
    def __init__(self, port: int | None = None, region: str = "us-east-1") -> None:
        self.port = port or free_port()
        self.region = region
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "MOTO_PORT": str(self.port),
        }

    def start(self) -> LocalAws:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        s3_object_lock.install()  # S3's lock on multipart uploads, which moto 5.2 ignores
        self.server.start()
        os.environ.update(self.env())
        aws.reset_clients()
        import requests

        requests.post(f"{self.endpoint}/moto-api/config", json=MOTO_CONFIG, timeout=10)
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
