"""The task runtime: operators, tasks, barriers, and the network exchange between slots."""
