"""Loads a job's pipeline from its entrypoint, in the JobMaster and in every worker alike.

Entrypoints: ``package.module:function`` (the function returns the environment or calls
``env.execute()``), ``path/to/job.py[:function]`` (without a function, ``build``, ``main`` or a
top-level ``execute()`` is used), or ``package.module``. User code is imported, never unpickled;
all processes build the same graph from the same code. Errors become ``EntrypointError`` with
the fix, never a bare traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from streamjob.worker.api.environment import StreamExecutionEnvironment, executor
from streamjob.worker.errors import EntrypointError, StreamJobError

_FUNCTIONS = ("build", "main", "build_pipeline")


class JobCaptured(BaseException):
    """Raised by ``execute()`` under the loader, carrying the environment (not an error)."""

    def __init__(self, env: StreamExecutionEnvironment, job_name: str, restore: str | None = None) -> None:
        super().__init__(job_name)
        self.env = env
        self.job_name = job_name
        self.restore = restore


def _capture(env: StreamExecutionEnvironment, *, job_name: str, restore: str | None, **options: Any) -> NoReturn:
    """The loader's ``PipelineExecutor``: ``env.execute()`` hands the built pipeline back instead of running it.

    The snapshot the code asked to start from (``execute(restore=…)``, ``execute_from_savepoint``) rides
    along: the JobMaster restores it on the job's first start, unless the command or the operator names one.
    """
    raise JobCaptured(env, job_name, restore)


@dataclass
class LoadedJob:
    """A built pipeline and where it came from."""

    env: StreamExecutionEnvironment
    job_name: str
    module_name: str
    restore_from: str | None = None
    """The snapshot the job's code names (``execute_from_savepoint``); ``JobConfig.restore_from`` wins."""


def _split(entrypoint: str) -> tuple[str, str | None]:
    if ":" in entrypoint:
        target, func = entrypoint.rsplit(":", 1)
        return target, func or None
    return entrypoint, None


def _import_file(path: Path) -> ModuleType:
    if not path.exists():
        raise EntrypointError(
            f"entrypoint file {path} does not exist; check the path (relative paths are resolved from {Path.cwd()})"
        )
    folder = str(path.parent.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None) == str(path.resolve()):
        return existing
    spec = importlib.util.spec_from_file_location(name, path.resolve())
    if spec is None or spec.loader is None:
        raise EntrypointError(f"entrypoint {path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import(target: str) -> ModuleType:
    if target.endswith(".py") or "/" in target:
        return _import_file(Path(target))
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as err:
        if err.name and target.startswith(err.name):
            raise EntrypointError(
                f"cannot import the job module '{target}' ({err}); make sure it is installed in the image or on "
                "PYTHONPATH, or give a file path such as jobs/my_job.py"
            ) from err
        raise


def _user_error(entrypoint: str, err: BaseException) -> EntrypointError:
    ours = str(Path(__file__).resolve().parent)
    frames = traceback.extract_tb(err.__traceback__)
    where = next(
        (
            f"{f.filename}:{f.lineno} in {f.name}"
            for f in reversed(frames)
            if not str(Path(f.filename).resolve()).startswith(ours)
        ),
        "",
    )
    detail = f" at {where}" if where else ""
    return EntrypointError(f"the job's entrypoint {entrypoint} raised {type(err).__name__}: {err}{detail}")


def load_job(entrypoint: str, args: list[str] | None = None) -> LoadedJob:
    """Imports the entrypoint with ``execute()`` captured and returns the built pipeline."""
    if not entrypoint or not isinstance(entrypoint, str):
        raise EntrypointError("no entrypoint given: pass module:function or a job file path")
    target, func_name = _split(entrypoint)
    token = executor().set(_capture)
    try:
        try:
            module = _import(target)
            result: Any = None
            func = None
            if func_name is not None:
                func = getattr(module, func_name, None)
                if func is None or not callable(func):
                    raise EntrypointError(
                        f"entrypoint {entrypoint}: module {module.__name__} has no function '{func_name}'"
                    )
            else:
                func = next((getattr(module, n) for n in _FUNCTIONS if callable(getattr(module, n, None))), None)
            if func is not None:
                params = inspect.signature(func).parameters
                result = func(list(args or [])) if params else func()
        except JobCaptured as captured:
            return LoadedJob(captured.env, captured.job_name, target, captured.restore)
        except StreamJobError:
            raise
        except SyntaxError as err:
            raise EntrypointError(
                f"the job file {err.filename} has a syntax error at line {err.lineno}: {err.msg}"
            ) from err
        except Exception as err:
            raise _user_error(entrypoint, err) from err
    finally:
        executor().reset(token)
    if isinstance(result, StreamExecutionEnvironment):
        return LoadedJob(result, result.job_name, target, result.restore_path)
    if func is None:
        raise EntrypointError(
            f"entrypoint {entrypoint} has no build() function and no env.execute() call: define `def build(args):` "
            "that gets StreamExecutionEnvironment.get_execution_environment(), adds the pipeline and calls "
            f'env.execute("name") (or returns env), or name another function with {target}:FUNCTION'
        )
    raise EntrypointError(
        f"entrypoint {entrypoint}: {getattr(func, '__name__', 'its function')}() did not build a pipeline; it "
        "must return the StreamExecutionEnvironment or call env.execute(...)"
    )


def job_types(loaded: LoadedJob) -> tuple[type, ...]:
    """The job's classes that state and in-flight records may hold by field encoding.

    Its allowed record classes (``job_record_classes``) that ``SafeSerializer`` can declare:
    dataclasses, named tuples, enums and plain classes (``state/serializers.py``).
    """
    from streamjob.worker.state.serializers import field_encodable

    return field_encodable(job_record_classes(loaded))


def job_record_classes(loaded: LoadedJob) -> tuple[type, ...]:
    """The classes a record may hold: registered ones and those defined at the top of the job's modules.

    Collected once, when the job is loaded, as exact classes: the record codec resolves a pickled
    global only by an exact ``(module, qualname)`` match with one of them, so a name reached by
    attribute traversal (``build.__class__``) or a function of the job's modules never qualifies.
    The job's modules are its entrypoint module and, for a package, the package's loaded submodules.
    """
    top = loaded.module_name.removesuffix(".py").replace("/", ".").split(".")[0]
    if loaded.module_name.endswith(".py") or "/" in loaded.module_name:
        top = Path(loaded.module_name).stem
    found: list[type] = list(loaded.env.allowed_types)
    for module_name, module in list(sys.modules.items()):
        if module is None or (module_name != top and not module_name.startswith(top + ".")):
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, type) and value.__module__ == module_name and value.__qualname__ == attr:
                found.append(value)
    return tuple(dict.fromkeys(found))
