"""Maps operator/ and worker/ to streamjob.operator and streamjob.worker (see docs/architecture.md)."""

from setuptools import find_packages, setup

MAPPED = {"streamjob.worker": "worker", "streamjob.operator": "operator"}


def _packages() -> list[str]:
    found: list[str] = []
    for name, folder in MAPPED.items():
        found.append(name)
        found.extend(f"{name}.{sub}" for sub in find_packages(folder))
    return found


# The PodTemplateSpec field tree the operator checks pod templates against (model/pod_template_schema.py).
setup(
    packages=_packages(),
    package_dir=MAPPED,
    package_data={"streamjob.operator.model": ["pod_template_fields.json"]},
)
