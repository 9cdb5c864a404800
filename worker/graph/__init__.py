"""The pipeline as data: transformations, the job graph with chained vertices, slot assignment."""
