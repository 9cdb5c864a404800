"""The pipeline as data: transformations, the job graph (chained vertices, slots needed) and its channels (topology)."""
