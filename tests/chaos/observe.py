"""Collects a chaos run's observations: committed output from S3 and each deployment's restore point.

The restore point of every deployment comes from the JobMaster itself — its log line
``event running {"attempt": …, "restored_from": …}``, written when the attempt's tasks start —
and the lineage from the pod's ``streamjob.dev/job-id`` label; the node agent keeps both after the
pod is gone. The checkpoints each lineage completed come from the same logs (``completed
checkpoint N``). Output rows are read from the committed part files of each epoch's directory
(uncommitted uploads are not objects yet). Used by ``campaign``; judged by ``checker``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.chaos.checker import CheckpointDone, Deployment, Row
from tests.cluster.node_agent import NodeAgent

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_RUNNING = re.compile(r"event running (\{.*\})\s*$")
_COMPLETED = re.compile(r"completed checkpoint (\d+) ")
JOB_ID_LABEL = "streamjob.dev/job-id"


def _time(line: str) -> float | None:
    match = _LINE.match(line)
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() if match else None


def parse_jobmaster_log(text: str, job_id: str, pod: str = "") -> tuple[list[Deployment], list[CheckpointDone]]:
    """The deployments (``event running``) and completed checkpoints of one JobMaster's log."""
    deployments: list[Deployment] = []
    completed: list[CheckpointDone] = []
    for line in text.splitlines():
        at = _time(line)
        if at is None:
            continue
        running = _RUNNING.search(line)
        if running:
            data = json.loads(running.group(1))
            deployments.append(Deployment(int(data["attempt"]), job_id, data.get("restored_from"), at, pod))
            continue
        done = _COMPLETED.search(line)
        if done and "streamjob" in line:
            completed.append(CheckpointDone(job_id, int(done.group(1)), at))
    return deployments, completed


def jobmaster_observations(
    agent: NodeAgent, namespace: str, name: str
) -> tuple[list[Deployment], list[CheckpointDone]]:
    """Every JobMaster pod the agent ran for the job: its deployments and completed checkpoints."""
    deployments: list[Deployment] = []
    completed: list[CheckpointDone] = []
    with agent.lock:
        runs = [r for r in agent.pods.values() if r.namespace == namespace and r.name.startswith(f"{name}-jobmaster-")]
    for run in runs:
        job_id = ((run.pod.get("metadata") or {}).get("labels") or {}).get(JOB_ID_LABEL, "")
        log = run.containers[0].log_path
        text = log.read_text(errors="replace") if log.exists() else ""
        d, c = parse_jobmaster_log(text, job_id, run.name)
        deployments += d
        completed += c
    return deployments, completed


def read_rows(client: Any, bucket: str, prefix: str) -> list[Row]:
    """Every row of the committed part files under ``prefix``."""
    rows: list[Row] = []
    token: dict[str, str] = {}
    while True:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/", **token)
        for obj in listed.get("Contents", []):
            if not Path(obj["Key"]).name.startswith("part-"):
                continue
            body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
            rows += [json.loads(line) for line in body.splitlines() if line.strip()]
        if not listed.get("IsTruncated"):
            return rows
        token = {"ContinuationToken": listed["NextContinuationToken"]}
