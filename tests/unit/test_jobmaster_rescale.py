"""``POST /rescale``: the request's checks and answers, the rescaled plan, the rescale's progress, the slots.

The rescale itself (stop-with-savepoint, the next attempt on the same slots) runs with real processes in
``tests/integration/test_rescale_in_place.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from streamjob.worker.config import parse_job_config
from streamjob.worker.jobmaster.jobmaster import JobMaster
from streamjob.worker.jobmaster.plan import JobPlan, resolve_plan
from streamjob.worker.jobmaster.rescale import InvalidRescale, Rescale, rescaled_plan
from streamjob.worker.jobmaster.rest import build_app
from streamjob.worker.jobmaster.slots import ControlLink, SlotRegistry
from streamjob.worker.loader import load_job
from streamjob.worker.protocol.rest import ErrorBody, JobOverview, RescaleStatus

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "balance.py"


def _plan(tmp_path: Path, **extra: Any) -> JobPlan:
    loaded = load_job(str(EXAMPLE), [])
    config = parse_job_config(
        {"name": "balance", "entrypoint": str(EXAMPLE), "checkpoints_uri": tmp_path.as_uri(), **extra},
        source="(test)",
    )
    return resolve_plan(config, loaded, default_checkpoints_uri=tmp_path.as_uri())


def _calls(jm: JobMaster, calls: list[tuple[str, Any, str | None]]) -> list[tuple[int, Any]]:
    """``(path, body, token)`` POSTs; ``token`` None sends no Authorization header."""

    async def main() -> list[tuple[int, Any]]:
        runner = web.AppRunner(build_app(jm, rest_token="t0k"))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        answers = []
        try:
            async with aiohttp.ClientSession() as session:
                for path, body, token in calls:
                    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
                    url = f"http://127.0.0.1:{port}{path}"
                    async with session.post(url, json=body, headers=headers) as response:
                        answers.append((response.status, await response.json()))
        finally:
            await runner.cleanup()
        return answers

    return asyncio.run(main())


def test_a_rescale_needs_the_token(tmp_path: Path) -> None:
    jm = JobMaster(_plan(tmp_path, max_parallelism=8))
    (no_token, body), (wrong, _) = _calls(
        jm, [("/rescale", {"parallelism": 2}, None), ("/rescale", {"parallelism": 2}, "x")]
    )
    assert no_token == 401 and "token" in ErrorBody.model_validate(body).error
    assert wrong == 403
    assert jm.rescale is None


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"parallelism": 0}, 400, "parallelism must be between 1 and the job's max parallelism 8, not 0"),
        ({"parallelism": 9}, 400, "parallelism must be between 1 and the job's max parallelism 8, not 9"),
        ({"parallelism": -3}, 400, "parallelism must be between 1"),
        ({"parallelism": "3"}, 400, "parallelism must be a whole number"),
        ({"parallelism": 2.5}, 400, "parallelism must be a whole number"),
        ({"parallelism": True}, 400, "parallelism must be a whole number"),
        ({}, 400, "parallelism must be a whole number"),
        ([3], 400, "the body must be a JSON object"),
        ({"parallelism": 3}, 409, "the job is CREATED; a rescale can only start while it is RUNNING"),
    ],
)
def test_a_bad_rescale_request_is_one_error_line_naming_the_field(
    tmp_path: Path, body: Any, status: int, message: str
) -> None:
    jm = JobMaster(_plan(tmp_path, max_parallelism=8))
    [(got, answer)] = _calls(jm, [("/rescale", body, "t0k")])
    assert got == status, answer
    error = ErrorBody.model_validate(answer).error
    assert message in error and "\n" not in error
    assert jm.rescale is None


def test_the_rescaled_plan_changes_parallelism_workers_and_graph_only(tmp_path: Path) -> None:
    plan = _plan(tmp_path, max_parallelism=8, parallelism=2, workers=2)
    up = rescaled_plan(plan, 5)
    assert up.graph.slots == 5 and up.config.parallelism == 5 and up.config.workers == 5
    assert up.graph.max_parallelism == plan.graph.max_parallelism == 8
    assert {v.id for v in up.graph.vertices} == {v.id for v in plan.graph.vertices}
    assert up.graph.fingerprint() != plan.graph.fingerprint()
    assert (up.job_id, up.checkpoints_uri, up.settings) == (plan.job_id, plan.checkpoints_uri, plan.settings)
    down = rescaled_plan(up, 1)
    assert down.graph.slots == 1 and down.config.parallelism == 1
    assert down.config.workers == 5, "never fewer workers than the config had: spare ones idle"
    assert plan.graph.slots == 2, "the plan rescaled is not changed"


def test_a_rescaled_plan_at_a_parallelism_out_of_range_is_refused(tmp_path: Path) -> None:
    plan = _plan(tmp_path, max_parallelism=4)
    for bad in (0, 5):
        with pytest.raises(InvalidRescale, match="parallelism must be between 1 and the job's max parallelism 4"):
            rescaled_plan(plan, bad)


def test_the_rescale_reports_its_progress() -> None:
    rescale = Rescale(source=2, target=3)
    assert rescale.view().status is RescaleStatus.IN_PROGRESS and rescale.view().gap_ms is None
    rescale.running()
    assert rescale.status is RescaleStatus.COMPLETED and rescale.gap_ms is not None and rescale.gap_ms >= 0
    rescale.fail("late")
    assert rescale.status is RescaleStatus.COMPLETED and rescale.reason is None, "the first end wins"
    failed = Rescale(source=2, target=1)
    failed.fail("the savepoint failed")
    failed.running()
    assert failed.view().status is RescaleStatus.FAILED and failed.view().reason == "the savepoint failed"


def test_get_job_shows_the_rescale(tmp_path: Path) -> None:
    jm = JobMaster(_plan(tmp_path))
    assert jm.job_overview().rescale is None
    jm.rescale = Rescale(source=1, target=2)
    view = JobOverview.model_validate(jm.job_overview().to_json()).rescale
    assert view is not None and (view.source, view.target, view.status) == (1, 2, RescaleStatus.IN_PROGRESS)


class _Link:
    """A control link that records what it was sent (the registry's view of a slot's connection)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.closed = False

    def send(self, message: Any) -> None:
        self.sent.append(message)

    async def close(self, wait_s: float = 1.0) -> None:
        self.closed = True


def _link() -> ControlLink:
    return _Link()  # type: ignore[return-value]


def test_spares_fill_a_rescale_up_and_surplus_slots_go_on_a_rescale_down() -> None:
    async def main() -> None:
        registry = SlotRegistry()
        registry.open_for(2)
        a, b = registry.register(_link(), ("h", 1), 11), registry.register(_link(), ("h", 2), 12)
        assert a is not None and b is not None
        spare_link = _link()
        assert registry.register(spare_link, ("h", 3), 13) is None
        spare = registry.add_spare(spare_link, ("h", 3), 13)
        registry.open_for(3)
        assert spare.promoted is not None and spare.promoted.index == 2 and spare.promoted.pid == 13
        assert not registry.spares and sorted(registry.slots) == [0, 1, 2]
        gone = await registry.shrink(1)
        assert [c.index for c in gone] == [1, 2] and list(registry.slots) == [0]
        for conn in gone:
            link: Any = conn.link
            assert link.closed and link.sent[-1].outcome == "finished"
        kept: Any = registry.slots[0].link
        assert not kept.closed and kept.sent == []

    asyncio.run(main())
