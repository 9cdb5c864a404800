"""Login and purchase counts per user (the seeds' StatePersistenceExample, ported line by line).

Run it: ``streamjob run examples/user_activity.py`` (the RocksDB backend; ``--state-backend hashmap``
overrides it). One substitution: the seed's RocksDB branch stores checkpoints at
``hdfs://namenode:port/flink/checkpoints``; streamjob stores them in S3-compatible storage or on a file
system (``hdfs://`` is refused at start, naming these), so that branch reads ``USER_ACTIVITY_CHECKPOINTS``
(e.g. ``s3://bucket/flink/checkpoints``), else ``file:///tmp/flink/checkpoints``.
"""

import os
import time
from dataclasses import dataclass

from streamjob.worker.api import (
    EmbeddedRocksDBStateBackend,
    HashMapStateBackend,
    RichMapFunction,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)


def main():
    env = StreamExecutionEnvironment.get_execution_environment()

    # enable checkpointing
    env.enable_checkpointing(10000)

    # configure the state backend and checkpoint storage
    configure_state_backend(env, "rocksdb")  # optional: "hashmap", "rocksdb"

    # the user events
    now = int(time.time() * 1000)
    user_events = env.from_elements(
        UserEvent("user1", "login", now),
        UserEvent("user2", "login", now + 1000),
        UserEvent("user1", "purchase", now + 2000),
        UserEvent("user3", "login", now + 3000),
    )

    # process the user events, keeping state
    results = track_activity(user_events)

    results.print()

    env.execute("State Persistence Example")


def track_activity(user_events):
    """``keyBy(userId).map(new UserActivityTracker())``, with uids so that a restore finds the state."""
    return user_events.uid("user-events").key_by(lambda event: event.user_id).map(UserActivityTracker()).uid("tracker")


def configure_state_backend(env, backend_type):
    """Configures the state backend."""
    backend = backend_type.lower()
    if backend == "hashmap":
        env.set_state_backend(HashMapStateBackend())
        env.get_checkpoint_config().set_checkpoint_storage("file:///tmp/flink-checkpoints")
    elif backend == "rocksdb":
        env.set_state_backend(EmbeddedRocksDBStateBackend())
        env.get_checkpoint_config().set_checkpoint_storage(
            os.environ.get("USER_ACTIVITY_CHECKPOINTS", "file:///tmp/flink/checkpoints")  # the seed: hdfs://…
        )
    else:
        raise ValueError(f"Unknown backend type: {backend_type}")


class UserActivityTracker(RichMapFunction):
    """The user activity tracker: a login count and a purchase count per user."""

    def open(self, runtime_context):
        self.login_count_state = runtime_context.get_state(ValueStateDescriptor("login-count", int, 0))
        self.purchase_count_state = runtime_context.get_state(ValueStateDescriptor("purchase-count", int, 0))

    def map(self, event):
        if event.event_type == "login":
            count = self.login_count_state.value()
            self.login_count_state.update(count + 1)
            return f"User {event.user_id} login count: {count + 1}"
        elif event.event_type == "purchase":
            count = self.purchase_count_state.value()
            self.purchase_count_state.update(count + 1)
            return f"User {event.user_id} purchase count: {count + 1}"

        return f"User {event.user_id} performed {event.event_type}"


@dataclass(frozen=True)
class UserEvent:
    """A user event."""

    user_id: str
    event_type: str
    timestamp: int


if __name__ == "__main__":
    main()
