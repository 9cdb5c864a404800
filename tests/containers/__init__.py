"""The real-container tier: the built images on two real kubelets + containerds (docs/testbed.md)."""
