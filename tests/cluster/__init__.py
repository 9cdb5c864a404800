"""The e2e test bed: control plane, node agent, Helm and their pytest fixtures (see docs/testbed.md)."""
