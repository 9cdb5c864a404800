"""The kopf controller that runs StreamJob resources on Kubernetes."""
