"""Connectors to external systems (``kafka``): sources and sinks built on the public contracts.

Each connector module imports its client library lazily, so a job that does not use Kafka does
not need ``confluent-kafka``.
"""
