"""Jobs run by the exactly-once integration tests, the fault-injection suite and the soak mode."""
