"""The StreamJob resource as pydantic models: the spec users write, the status the operator keeps.

``spec`` and ``status`` are read by the controller, the validator, the diff and the builders;
``crd`` turns them into the CustomResourceDefinition checked in under ``crds/``.
"""

from streamjob.operator.model.spec import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAME,
    VERSION,
    JobState,
    RestartStrategyKind,
    StreamJobSpec,
    UpgradeMode,
)
from streamjob.operator.model.status import (
    Condition,
    Deployment,
    LifecycleState,
    Operation,
    OperationKind,
    OperationStep,
    RestartsStatus,
    SnapshotInfo,
    SnapshotRequest,
    StreamJobStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "SHORT_NAME",
    "VERSION",
    "Condition",
    "Deployment",
    "JobState",
    "LifecycleState",
    "Operation",
    "OperationKind",
    "OperationStep",
    "RestartStrategyKind",
    "RestartsStatus",
    "SnapshotInfo",
    "SnapshotRequest",
    "StreamJobSpec",
    "StreamJobStatus",
    "UpgradeMode",
]
