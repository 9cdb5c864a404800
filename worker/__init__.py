"""The streaming runtime: the DataStream API, the JobMaster, the workers and local mode."""
