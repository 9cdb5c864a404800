"""Benchmark jobs, loaded by ``streamjob run bench/jobs/<name>.py -- ARGS``."""
