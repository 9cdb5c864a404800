"""The resolved job a JobMaster runs (pure): the job's code settings merged with its config's overrides.

``resolve_plan`` is called once by whoever starts a JobMaster (``streamjob jobmaster``, ``local.run_local``,
the test kit); the plan is fixed for the JobMaster's life and read by ``jobmaster.JobMaster`` and each
``attempt.Attempt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streamjob.worker.config import CheckpointSettings, JobConfig, RestartStrategy
from streamjob.worker.graph.job_graph import JobGraph, build_job_graph
from streamjob.worker.loader import LoadedJob


def default_restart(settings: CheckpointSettings) -> RestartStrategy:
    """Flink's default: restart (fixed delay) when checkpointing is on, else fail."""
    if settings.interval_ms is None:
        return RestartStrategy(kind="none", attempts=0)
    return RestartStrategy(kind="fixed-delay", attempts=2**31 - 1, delay_ms=1000)


@dataclass
class JobPlan:
    """The resolved job: graph, settings and storage, fixed for the JobMaster's life."""

    config: JobConfig
    loaded: LoadedJob
    graph: JobGraph
    settings: CheckpointSettings
    restart: RestartStrategy
    checkpoints_uri: str
    savepoints_uri: str | None
    backend: str
    incremental: bool
    job_id: str
    restore_target: str | None
    fresh_lineage: bool
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_plan(config: JobConfig, loaded: LoadedJob, *, default_checkpoints_uri: str) -> JobPlan:
    """Merges the job's code settings with the config's overrides; ``ConfigError`` names bad values."""
    env = loaded.env
    settings = config.checkpoint.apply(env.checkpoint_config.settings())
    graph = build_job_graph(
        env.transformations,
        default_parallelism=env.parallelism,
        max_parallelism=config.max_parallelism or env.max_parallelism,
        parallelism_override=config.parallelism,
    )
    backend = config.state_backend or env.state_backend.kind
    incremental = settings.incremental or env.state_backend.incremental
    checkpoints_uri = config.checkpoints_uri or env.checkpoint_config.storage or default_checkpoints_uri
    savepoints_uri = config.savepoints_uri or checkpoints_uri.rstrip("/") + "-savepoints"
    return JobPlan(
        config,
        loaded,
        graph,
        settings,
        config.restart or env.restart_strategy or default_restart(settings),
        checkpoints_uri,
        savepoints_uri,
        backend,
        incremental,
        config.job_id or "",
        config.restore_from or loaded.restore_from,
        config.job_id is None,
    )
