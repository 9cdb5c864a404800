"""The public DataStream API: what a job author imports."""
