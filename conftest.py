"""Root conftest: registers the shared fixture plugins of every test tier."""

pytest_plugins = ["tests.support.s3server", "tests.support.kafka", "tests.cluster.fixtures"]
