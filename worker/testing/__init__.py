"""The public test kit: run a job, crash it, resume it, and assert its exact output.

Two ways to run a job under test, both on the runtime's real code paths:

- in this process (``in_process.py``): ``run_in_process(env, parallelism=...)`` runs the JobMaster
  and the slots as coroutines on one event loop, with ``TestingSource`` (items with ``ABORT`` and
  ``EOF`` markers), ``TestingSink`` / ``CommitRecordingSink`` (exactly-once, into a list) and
  ``FakeClock`` (processing time under the test's control); checkpoints go to ``InMemoryStorage``
  unless the test names a directory::

      out = []
      result = run_in_process(build(TestingSource([1, 2, TestingSource.ABORT, 3]), TestingSink(out)))
      assert result.restarts == 1 and sorted(out) == expected

- as real processes (``local_job.py``): ``LocalJob`` drives ``streamjob run`` through its REST API
  (kill a slot process, take savepoints), ``read_committed`` reads a ``FileSink``'s output and
  ``FaultInjector`` picks seeded, replayable faults.

Used by streamjob's own tests and by job authors' tests; ``docs/testing.md`` shows both.
"""

from streamjob.worker.testing.clock import FakeClock
from streamjob.worker.testing.in_process import (
    InProcessLauncher,
    InProcessResult,
    run_in_process,
    run_in_process_async,
)
from streamjob.worker.testing.local_job import (
    SEED_ENV,
    CliResult,
    FaultInjector,
    FaultPlan,
    JobError,
    LocalJob,
    read_committed,
    read_committed_files,
    run_cli,
)
from streamjob.worker.testing.memory import InMemoryStorage, MemoryObjectStore
from streamjob.worker.testing.sinks import CommitRecordingSink, TestingSink
from streamjob.worker.testing.sources import TestingAbort, TestingSource

__all__ = [
    "SEED_ENV",
    "CliResult",
    "CommitRecordingSink",
    "FakeClock",
    "FaultInjector",
    "FaultPlan",
    "InProcessLauncher",
    "InMemoryStorage",
    "InProcessResult",
    "JobError",
    "LocalJob",
    "MemoryObjectStore",
    "TestingAbort",
    "TestingSink",
    "TestingSource",
    "read_committed",
    "read_committed_files",
    "run_cli",
    "run_in_process",
    "run_in_process_async",
]
