"""End-to-end tests: the operator and the runtime against a real Kubernetes API server."""

#: The key of the operators the e2e tests start as processes (every job's secret derives from it);
#: replicas of one test share it, as the chart's replicas share their Secret.
E2E_OPERATOR_KEY = "e2e-operator-key-" + "5" * 32
