"""The streamjob benchmark suite: ``python -m bench`` (see ``bench.__main__``)."""
