"""A crashed worker pod of a running attempt is replaced, not the attempt (pure).

The JobMaster recovers a worker failure itself (Flink's failover, ``worker/jobmaster/jobmaster.py``):
it stops the remaining tasks, waits for a replacement worker to register and redeploys every task
from the latest checkpoint under the job's ``restartPolicy``. The operator's part is the pod: a worker
pod whose container ended with a failure (phase Failed), or whose node is lost (``PodView.lost``: the
node controller marked it not ready after the node stopped reporting; its processes died with the
node), is force-deleted and a new pod of the same attempt takes its place under a fresh name
(``<worker>-r<n>``, ``replacement_names``); the scheduler puts it on a node that is still Ready.
Only while the attempt's JobMaster pod runs and does not report the job ended; anything else (a
failed or missing JobMaster, a worker that cannot start: image pull, pending timeout, eviction in
progress) stays an attempt failure for the restart policy, and a JobMaster that gives up (its strategy exhausted, a
failure no restart mends) ends the attempt itself. The JobMaster's restart strategy is the
``restartPolicy`` it was deployed with; a change reaches it with the next attempt, except that
``maxRestarts: 0`` stops replacements at once (the crash then ends the attempt, which fails).
Called by ``reconciler.plan`` (a running attempt) and ``reconciler.operations`` (one starting).
"""

from __future__ import annotations

import re

from streamjob.operator.model.spec import StreamJobSpec
from streamjob.operator.model.status import Deployment
from streamjob.operator.reconciler.facts import Draft, ReplaceWorkers
from streamjob.operator.resources.configmap import Attempt
from streamjob.worker.protocol.rest import JobState


def replace_crashed_workers(d: Draft, dep: Deployment) -> bool:
    """Queues the replacement of the attempt's crashed worker pods; True when it did (no attempt failure)."""
    f = d.facts
    pods = f.pods_of(dep.attempt)
    jm = next((p for p in pods if p.is_jobmaster), None)
    if jm is None or not jm.running or jm.ip is None:
        return False
    state = f.jobmaster.state
    if not f.jobmaster.reachable or state is None or JobState(state).ended:
        return False  # the JobMaster gave up or finished (its pod's end decides), or cannot say yet
    workers = [p for p in pods if not p.is_jobmaster]
    crashed = [p for p in workers if p.failure is not None and (p.phase == "Failed" or p.lost)]
    if not crashed or any(p.failure is not None and p.phase != "Failed" and not p.lost for p in workers):
        return False
    if any(p.succeeded for p in workers):
        return False  # a worker that ended cleanly: the job is finishing or failing; wait for the JobMaster
    spec = StreamJobSpec.parse(dep.spec)
    if (f.valid_spec or spec).restart_policy.max_restarts == 0:
        return False  # no restart wanted (the JobMaster's strategy is the deployed spec's: it may predate that)
    names = replacement_names([p.name for p in crashed], {p.name for p in pods})
    attempt = Attempt(f.job, spec, dep.attempt, dep.job_id, dep.restore_from)
    d.act(ReplaceWorkers(attempt, jm.ip, tuple(p.name for p in crashed), tuple(names)))
    for pod, name in zip(crashed, names, strict=True):
        d.event(
            "WorkerReplaced",
            f"{pod.failure}; replacing it with pod {name}: the JobMaster redeploys the tasks from the latest "
            "checkpoint",
            warning=True,
        )
    return True


def replacement_names(crashed: list[str], in_use: set[str]) -> list[str]:
    """A name per crashed pod: its base name with a generation (``-r<n>``) above every one in use.

    Deterministic (a round planned again names the same pods, so creating them is idempotent) and
    never a name used before while its last holder lives: the newest generation is the pod that
    replaced last, which is in use until it is itself replaced (as ``crashed``, still in ``in_use``).
    """
    top = max((int(m.group(1)) for name in in_use if (m := _GENERATION.search(name))), default=0)
    return [f"{_GENERATION.sub('', name)}-r{top + n}" for n, name in enumerate(crashed, start=1)]


_GENERATION = re.compile(r"-r(\d+)$")
