"""The JobMaster process: slot registry, deployment, checkpoint coordination and the REST API."""
