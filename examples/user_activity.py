"""Login and purchase counts per user on the RocksDB state backend (the seeds' StatePersistenceExample).

Run it: ``streamjob run examples/user_activity.py`` (add ``--state-backend hashmap`` to compare).
"""

from dataclasses import dataclass

from streamjob.worker.api import (
    EmbeddedRocksDBStateBackend,
    HashMapStateBackend,
    RichMapFunction,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)


@dataclass(frozen=True)
class UserEvent:
    user_id: str
    event_type: str
    timestamp: int


class UserActivityTracker(RichMapFunction):
    """Two ValueStates per user: login count and purchase count."""

    def open(self, runtime_context):
        self.logins = runtime_context.get_state(ValueStateDescriptor("login-count", int, 0))
        self.purchases = runtime_context.get_state(ValueStateDescriptor("purchase-count", int, 0))

    def map(self, event: UserEvent) -> str:
        if event.event_type == "login":
            count = self.logins.value() + 1
            self.logins.update(count)
            return f"User {event.user_id} login count: {count}"
        if event.event_type == "purchase":
            count = self.purchases.value() + 1
            self.purchases.update(count)
            return f"User {event.user_id} purchase count: {count}"
        return f"User {event.user_id} performed {event.event_type}"


def configure_state_backend(env, backend_type: str, checkpoint_dir: str = "file:///tmp/streamjob-checkpoints"):
    if backend_type == "hashmap":
        env.set_state_backend(HashMapStateBackend())
    elif backend_type == "rocksdb":
        env.set_state_backend(EmbeddedRocksDBStateBackend(incremental=True))
    else:
        raise ValueError(f"unknown backend type: {backend_type}")
    env.get_checkpoint_config().set_checkpoint_storage(checkpoint_dir)


def build():
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(10000)
    configure_state_backend(env, "rocksdb")
    events = env.from_elements(
        UserEvent("user1", "login", 1_000),
        UserEvent("user2", "login", 2_000),
        UserEvent("user1", "purchase", 3_000),
        UserEvent("user3", "login", 4_000),
    ).uid("user-events")
    events.key_by(lambda e: e.user_id).map(UserActivityTracker()).uid("activity-tracker").print()
    env.execute("State Persistence Example")


if __name__ == "__main__":
    build()
