"""Per-user balance with exactly-once state (the seeds' ExactlyOnceProcessingExample, in Python).

Run it: ``streamjob run examples/balance.py --checkpoint-interval 1s``. ``balances`` is the pipeline
without its source and sink, so that a test can feed it (``tests/unit/test_example_balance.py`` crashes
and resumes it in process with ``streamjob.worker.testing``).
"""

from dataclasses import dataclass

from streamjob.worker.api import (
    CheckpointingMode,
    ExternalizedCheckpointCleanup,
    RichMapFunction,
    StreamExecutionEnvironment,
    ValueStateDescriptor,
)


@dataclass(frozen=True)
class Transaction:
    user_id: str
    amount: float
    timestamp: int


class BalanceManager(RichMapFunction):
    """Keeps each user's balance in keyed ValueState (default 0.0)."""

    def open(self, runtime_context):
        self.balance = runtime_context.get_state(ValueStateDescriptor("user-balance", float, 0.0))

    def map(self, tx: Transaction) -> str:
        new_balance = self.balance.value() + tx.amount
        self.balance.update(new_balance)
        return f"User {tx.user_id} balance: {new_balance}"


def balances(transactions):
    """Each transaction's new balance line, with the balance per user in keyed state."""
    return transactions.key_by(lambda tx: tx.user_id).map(BalanceManager()).uid("balance-manager")


def build():
    env = StreamExecutionEnvironment.get_execution_environment()
    env.enable_checkpointing(5000)
    config = env.get_checkpoint_config()
    config.set_checkpointing_mode(CheckpointingMode.EXACTLY_ONCE)
    config.set_checkpoint_timeout(60000)
    config.set_min_pause_between_checkpoints(2000)
    config.set_max_concurrent_checkpoints(1)
    config.set_externalized_checkpoint_cleanup(ExternalizedCheckpointCleanup.RETAIN_ON_CANCELLATION)

    transactions = env.from_elements(
        Transaction("user1", 100.0, 1_000),
        Transaction("user2", 200.0, 2_000),
        Transaction("user1", 150.0, 3_000),
        Transaction("user3", 300.0, 4_000),
    ).uid("transactions")

    balances(transactions).print()
    env.execute("Exactly Once Processing Example")


if __name__ == "__main__":
    build()
