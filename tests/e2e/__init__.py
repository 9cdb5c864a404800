"""End-to-end tests: the operator and the runtime against a real Kubernetes API server."""
