"""Order enrichment with async I/O against a small HTTP service (Flink's async I/O pattern, in Python).

Orders ``(order_id, user_id, amount)`` are enriched with their user's profile from an HTTP service
(``GET /users/<id>`` → ``{"tier": ..., "country": ...}``, 404 for an unknown user). The lookups run
as coroutines (``AsyncDataStream.unordered_wait``, up to 50 in flight, 2 s timeout): the task keeps
reading orders while answers are on their way, a slow service holds the source back instead of
filling memory, and the lookups in flight at a checkpoint are stored with it and sent again after
a restore. The function also counts its lookups and their latency (user metrics on ``/metrics``).

Run it: ``python examples/enrichment.py`` starts the profile service on a free local port and runs
the job locally (the lines are printed). Against a running service:
``streamjob run examples/enrichment.py service=http://127.0.0.1:8099 [count=1000] [out=file:///tmp/enriched]``
(``ENRICHMENT_SERVICE_URL`` and ``ENRICHMENT_COUNT`` work too). ``tests/unit/test_example_enrichment.py``
crashes and resumes it in process; ``tests/integration/test_example_enrichment.py`` runs it as written.
"""

import asyncio
import os
import threading
import time

import aiohttp
from aiohttp import web

from streamjob.worker.api import AsyncDataStream, AsyncFunction, StreamExecutionEnvironment, Time
from streamjob.worker.api.file_sink import FileSink

USERS = 50
KNOWN_USERS = 45  # users 45..49 have no profile: the service answers 404
TIERS = ("bronze", "silver", "gold")
COUNTRIES = ("DE", "FR", "JP", "US")


def order(i):
    """Order ``i``: (order id, user id, amount in cents)."""
    return (i, (i * 7) % USERS, 100 + (i * 37) % 900)


def profile_of(user_id):
    """What the service knows about ``user_id`` (None: unknown)."""
    if user_id >= KNOWN_USERS:
        return None
    return {"tier": TIERS[user_id % 3], "country": COUNTRIES[user_id % 4]}


def enriched_line(order_id, user_id, amount, profile):
    return f"order {order_id} user {user_id} amount {amount} tier {profile['tier']} country {profile['country']}"


UNKNOWN = {"tier": "none", "country": "??"}


class ProfileService:
    """The example's HTTP service in a background thread: ``GET /users/<id>`` after a 0-12 ms delay."""

    def __init__(self):
        self.url = None
        self._ready = threading.Event()
        self._loop = None
        self._thread = threading.Thread(target=self._serve, name="profile-service", daemon=True)

    async def _user(self, request):
        user_id = int(request.match_info["user_id"])
        await asyncio.sleep((user_id % 7) * 0.002)
        profile = profile_of(user_id)
        if profile is None:
            raise web.HTTPNotFound()
        return web.json_response(profile)

    def _serve(self):
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/users/{user_id:\\d+}", self._user)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def start(self):
        """Starts serving; returns the base URL."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the profile service did not start within 10 s")
        return self.url

    def stop(self):
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


class ProfileLookup(AsyncFunction):
    """Fetches the order's user profile; an unknown user gets the ``UNKNOWN`` profile."""

    def __init__(self, service_url):
        self.service_url = service_url
        self.session = None

    def open(self, runtime_context):
        # open() runs on the task's event loop: the session's connections live there
        self.session = aiohttp.ClientSession()
        metrics = runtime_context.get_metric_group()
        self.lookups = metrics.counter("profile_lookups")
        self.latency = metrics.histogram("profile_latency_ms")

    async def async_invoke(self, value):
        order_id, user_id, amount = value
        started = time.monotonic()
        async with self.session.get(f"{self.service_url}/users/{user_id}") as response:
            if response.status == 404:
                profile = UNKNOWN
            else:
                response.raise_for_status()
                profile = await response.json()
        self.lookups.inc()
        self.latency.update((time.monotonic() - started) * 1000)
        return [enriched_line(order_id, user_id, amount, profile)]

    def timeout(self, value):
        order_id, user_id, amount = value
        return [enriched_line(order_id, user_id, amount, {"tier": "unavailable", "country": "??"})]

    def close(self):
        if self.session is not None:
            asyncio.get_running_loop().create_task(self.session.close())  # close() runs on the task's loop


def enrich(orders, service_url):
    """Each order as an enriched line (the pipeline without its source and sink, for tests)."""
    return AsyncDataStream.unordered_wait(orders, ProfileLookup(service_url), Time.seconds(2), 50).uid("profiles")


def build(args=None):
    opts = dict(arg.partition("=")[::2] for arg in args or [])
    service = opts.get("service") or os.environ.get("ENRICHMENT_SERVICE_URL")
    if not service:
        raise ValueError("give the profile service: service=http://HOST:PORT (or run python examples/enrichment.py)")
    count = int(opts.get("count") or os.environ.get("ENRICHMENT_COUNT", "1000"))
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(1000)
    orders = env.from_generator(order, count, 500).uid("orders")
    lines = enrich(orders, service)
    if opts.get("out"):
        lines.add_sink(FileSink(opts["out"])).uid("sink")
    else:
        lines.print()
    return env


def main():
    service = ProfileService()
    os.environ["ENRICHMENT_SERVICE_URL"] = service.start()  # the slot processes inherit it
    try:
        build().execute("enrichment")
    finally:
        service.stop()


if __name__ == "__main__":
    main()
