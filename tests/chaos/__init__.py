"""The chaos campaign: seeded fault schedules applied to a StreamJob on the e2e test bed (``python -m tests.chaos``)."""
