"""The model repository at run time: which models and pipelines exist, which versions serve, and why not.

Versions change while the server runs (polling or explicit load/unload). A new version is loaded and
warmed before it can be chosen. A version that leaves is first taken out of selection (UNLOADING), and
closed when the last call holding it has finished: engine calls run in `call_scope()`, which leases every
version it looks up. A version a pipeline still needs (its towers would have no common version without it)
stays until the pipeline can move on, so replacing a CLIP version folder by folder never breaks a call.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from server.backends.base import Backend
from server.backends.registry import build_backend, platforms
from server.backends.source import ModelSource
from server.batching.batcher import BatchObserver
from server.batching.settings import DEFAULT_MAX_QUEUE_ITEMS
from server.core.cache import ResponseCache, VersionCache
from server.core.errors import InvalidInput, ModelLoadError, ModelNotFound, ModelNotReady
from server.pipelines.kinds import PIPELINE_KINDS, PipelineKind
from server.repository.fingerprint import Fingerprint, fingerprint
from server.repository.model_config import load_model_config
from server.repository.specs import ModelSpec, PipelineSpec, spec_of
from server.repository.versions import discover_versions, select_versions

if TYPE_CHECKING:
    from server.backends.onnx.session import SessionFactory

log = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_held: ContextVar[list | None] = ContextVar("crossmodal_leases", default=None)


class State(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"  # out of selection; closes when its last call finishes
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(eq=False)
class VersionStatus:
    name: str
    version: int  # 0 when the model failed before any version could be read
    state: State
    reason: str = ""
    model: Backend | None = None
    spec: ModelSpec | None = None  # the config the model was loaded with
    leases: int = 0  # calls holding it now
    leaving: bool = False  # no longer wanted; unloads as soon as no pipeline needs it
    cache: VersionCache | None = None  # this load's response cache entries, dropped when it closes

    @property
    def kind(self) -> str:
        return self.model.model_type if self.model is not None else ""


def _forget(cache: VersionCache | None) -> None:
    if cache is not None:
        cache.clear()


def check_model_name(name: str) -> str:
    """A model name is a plain folder name: it can never point outside the repository."""
    if not MODEL_NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidInput(
            f"model name {name!r} is not a plain folder name (letters, digits, '_', '-', '.'; no paths)"
        )
    return name


class ModelRepository:
    def __init__(
        self,
        root: Path,
        factory: SessionFactory,
        batch_observer: Callable[[str, int], BatchObserver] | None = None,
        max_queue_items: int = DEFAULT_MAX_QUEUE_ITEMS,
        pipeline_kinds: Mapping[str, PipelineKind] = PIPELINE_KINDS,
        response_cache: ResponseCache | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self._pipeline_kinds = pipeline_kinds
        self._factory = factory
        self._batch_observer = batch_observer
        self._max_queue_items = max_queue_items
        self.response_cache = response_cache
        self._lock = threading.RLock()  # the tables; held across a pipeline's lookups (consistent())
        self._changes = threading.Lock()  # one load / unload / poll at a time
        self._versions: dict[str, dict[int, VersionStatus]] = {}
        self._pipelines: dict[str, PipelineSpec] = {}
        self._unloading: list[VersionStatus] = []
        self._seen: dict[str, Fingerprint] = {}
        self._closing = False  # set by close(): loads still running stop at the next model
        # Closes a version whose last call just ended: calls end on the event loop, and closing joins the
        # version's batcher threads, which the loop must never wait for.
        self._closer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="version-close")

    # -- what is on disk ---------------------------------------------------------------------------------

    def model_names_on_disk(self) -> list[str]:
        return sorted(
            p.name
            for p in self.root.iterdir()
            if (p / "config.pbtxt").is_file() and MODEL_NAME.fullmatch(p.name)
        )

    def load_all(self) -> None:
        """Loads every model folder (one with a config.pbtxt); failures are recorded, never fatal."""
        for name in self.model_names_on_disk():
            if self._closing:
                log.info("repository closing: the start-up load stops before %s", name)
                return
            try:
                self.load_model(name)
            except Exception as error:  # one odd model folder never stops the others (nor the server)
                log.exception("model %s failed to load", name)
                self._model_failed(name, f"{type(error).__name__}: {error}")

    def poll(self) -> list[str]:
        """Loads what changed on disk since the last look, unloads what disappeared; returns the names."""
        on_disk = set(self.model_names_on_disk())
        changed = [n for n in sorted(on_disk) if fingerprint(self.root / n) != self._seen.get(n)]
        gone = sorted(set(self._seen) - on_disk)
        for name in changed:
            self.load_model(name)
        for name in gone:
            self.unload_model(name)
        return changed + gone

    # -- load and unload ---------------------------------------------------------------------------------

    def load_model(self, name: str) -> list[VersionStatus]:
        """(Re)loads one model folder: new or changed versions are warmed before they serve."""
        check_model_name(name)
        model_dir = self.root / name
        if not (model_dir / "config.pbtxt").is_file():
            raise ModelNotFound(f"no model folder '{name}' with a config.pbtxt in the repository")
        with self._changes:
            now = fingerprint(model_dir)
            before, self._seen[name] = self._seen.get(name), now
            try:
                spec = spec_of(load_model_config(model_dir, platforms()), self._pipeline_kinds)
                if isinstance(spec, PipelineSpec):
                    self._set_pipeline(name, spec)
                    return []
                wanted = select_versions(discover_versions(model_dir), spec.version_policy, name)
                if not wanted:
                    raise ModelLoadError(
                        f"model '{name}': no version folders (positive integers) in {model_dir}"
                    )
            except (ModelLoadError, OSError) as error:
                self._model_failed(name, str(error))
                return self.statuses(name)
            changed = now.changed_versions(before)
            for version in wanted:
                current = self._status(name, version)
                if current is None or current.state is not State.READY or version in changed:
                    self._load_version(
                        ModelSource(
                            name,
                            version,
                            model_dir / str(version),
                            spec,
                            self._max_queue_items,
                            self._cache_for(spec),
                        )
                    )
            with self._lock:
                self._clear_model_failure(name)
                for status in self._versions.get(name, {}).values():
                    status.leaving = status.version not in wanted
            self._unload_leavers()
            return self.statuses(name)

    def _cache_for(self, spec: ModelSpec) -> VersionCache | None:
        """A fresh view per load: a version reloaded from changed files starts with an empty cache."""
        cache = self.response_cache
        if not spec.response_cache or cache is None or not cache.enabled:
            return None
        return cache.for_load(spec.name)

    def unload_model(self, name: str) -> None:
        """Takes every version of `name` out of selection; each closes after its last call."""
        check_model_name(name)
        idle: list[VersionStatus] = []
        with self._changes:
            with self._lock:
                self._seen.pop(name, None)
                if self._pipelines.pop(name, None) is not None:
                    log.info("pipeline %s: unloaded", name)
                else:
                    versions = self._versions.pop(name, None)
                    if versions is None:
                        raise ModelNotFound(f"no model named '{name}' is loaded")
                    for status in versions.values():
                        self._start_unloading(status, idle)
            self._close_all(idle)
            self._unload_leavers()  # versions kept for a pipeline may be free to go now

    def _load_version(self, source: ModelSource) -> None:
        name, version = source.name, source.version
        serving = self._status(name, version)
        if serving is not None and serving.state is State.UNAVAILABLE and serving.model is not None:
            self._retire(serving)  # the load that failed while serving closes once its calls finish
            serving = None
        if serving is None or serving.state is not State.READY:
            self._put(VersionStatus(name, version, State.LOADING))
        try:
            model = build_backend(source, self._factory)
        except ModelLoadError as error:
            _forget(source.cache)
            log.error("model %s version %d failed to load: %s", name, version, error)
            if serving is not None and serving.state is State.READY:
                serving.reason = f"reload failed, still serving the previous load: {error}"
            else:
                self._put(VersionStatus(name, version, State.UNAVAILABLE, str(error)))
            return
        except BaseException:
            _forget(source.cache)
            raise
        if self._closing:  # the server stopped while this version loaded: it never serves
            model.close()
            _forget(source.cache)
            return
        if self._batch_observer is not None:
            model.batcher.observer = self._batch_observer(name, version)
        idle: list[VersionStatus] = []
        with self._lock:
            if serving is not None and serving.state is State.READY:
                self._start_unloading(serving, idle)  # the previous load of this version finishes its calls
            self._put(
                VersionStatus(name, version, State.READY, model=model, spec=source.spec, cache=source.cache)
            )
        self._close_all(idle)
        log.info("model %s version %d: READY on %s (%s)", name, version, model.provider, model.model_type)

    def _unload_leavers(self) -> None:
        idle: list[VersionStatus] = []
        with self._lock:
            self._settle_failures()
            for name, versions in self._versions.items():
                for status in list(versions.values()):
                    if not status.leaving:
                        continue
                    if status.state is State.READY and self._needed(status):
                        log.info(
                            "model %s version %d: kept while a pipeline still needs it", name, status.version
                        )
                        continue
                    del versions[status.version]
                    self._start_unloading(status, idle)
        self._close_all(idle)

    def _needed(self, status: VersionStatus) -> bool:
        """Would some pipeline lose its last usable version if `status` went now?"""

        def ready(model: str, keep_leaving: bool) -> set[int]:
            return {
                v
                for v, s in self._versions.get(model, {}).items()
                if s.state is State.READY and (keep_leaving or not s.leaving)
            }

        def common(models: tuple[str, ...], keep_leaving: bool) -> set[int]:
            return set.intersection(*(ready(model, keep_leaving) for model in models))

        for spec in self._pipelines.values():
            shared = spec.same_version
            # Only a version all these parts share can serve: keep it while no kept version is shared.
            if (
                status.name in shared
                and spec.complete
                and status.version in common(shared, True)
                and not common(shared, False)
            ):
                return True
            if status.name in spec.any_version and ready(status.name, True) and not ready(status.name, False):
                return True
        return False

    def _retire(self, status: VersionStatus) -> None:
        idle: list[VersionStatus] = []
        self._start_unloading(status, idle)
        self._close_all(idle)

    def _start_unloading(self, status: VersionStatus, idle: list[VersionStatus]) -> None:
        """Takes `status` out of selection; when no call holds it, it joins `idle`, which the caller closes
        after releasing the table lock (closing joins the batcher's threads, which may still finish a run).
        A version that failed while serving still has its model to close."""
        with self._lock:
            if status.model is None or status.state not in (State.READY, State.UNAVAILABLE):
                return
            status.state, status.reason = State.UNLOADING, "being replaced or removed"
            self._unloading.append(status)
            if status.leases == 0:
                idle.append(status)
        log.info(
            "model %s version %d: UNLOADING (%d calls in flight)", status.name, status.version, status.leases
        )

    def _close_all(self, statuses: list[VersionStatus]) -> None:
        for status in statuses:
            self._close(status)

    def _close(self, status: VersionStatus) -> None:
        status.model.close()
        _forget(status.cache)
        with self._lock:
            if status in self._unloading:
                self._unloading.remove(status)
        log.info("model %s version %d: unloaded", status.name, status.version)

    def _set_pipeline(self, name: str, spec: PipelineSpec) -> None:
        with self._lock:
            self._pipelines[name] = spec
            # A pipeline has no versions of its own: a failure recorded for an earlier, broken config is
            # the only entry its name can have here, and it is stale now.
            self._clear_model_failure(name)
            if not self._versions.get(name, True):
                del self._versions[name]
        log.info("pipeline %s: %s", name, dict(spec.parameters))

    def _model_failed(self, name: str, reason: str) -> None:
        log.error("model %s failed to load: %s", name, reason)
        with self._lock:
            versions = self._versions.setdefault(name, {})
            versions[0] = VersionStatus(
                name, 0, State.UNAVAILABLE, reason
            )  # versions loaded before keep serving

    def _clear_model_failure(self, name: str) -> None:
        self._versions.get(name, {}).pop(0, None)

    def _put(self, status: VersionStatus) -> None:
        with self._lock:
            self._versions.setdefault(status.name, {})[status.version] = status

    def _status(self, name: str, version: int) -> VersionStatus | None:
        with self._lock:
            self._settle_failures()
            return self._versions.get(name, {}).get(version)

    def _settle_failures(self) -> None:
        """Ready versions whose backend failed beyond repair (mark_failed) serve no more: UNAVAILABLE,
        with the reason. Looked at on every lookup, so no batch thread ever takes the table lock."""
        with self._lock:
            for versions in self._versions.values():
                for status in versions.values():
                    failed = status.model.failed if status.model is not None else None
                    if status.state is State.READY and failed:
                        status.state, status.reason = State.UNAVAILABLE, f"failed while serving: {failed}"
                        log.error("model %s version %d: UNAVAILABLE: %s", status.name, status.version, failed)

    # -- serving -----------------------------------------------------------------------------------------

    @contextmanager
    def call_scope(self) -> Iterator[None]:
        """Every version looked up inside is leased until the scope ends (one engine call)."""
        held: list[VersionStatus] = []
        token = _held.set(held)
        try:
            yield
        finally:
            _held.reset(token)
            finished = []
            with self._lock:
                for status in held:
                    status.leases -= 1
                    if status.state is State.UNLOADING and status.leases == 0:
                        finished.append(status)
            if finished:
                self._close_elsewhere(finished)

    def _close_elsewhere(self, statuses: list[VersionStatus]) -> None:
        try:
            self._closer.submit(self._close_all, statuses)
        except RuntimeError:  # the repository has closed (no closer thread any more): close them here
            self._close_all(statuses)

    @contextmanager
    def consistent(self) -> Iterator[None]:
        """Holds the tables still across several lookups (a pipeline's towers must match)."""
        with self._lock:
            yield

    def pipeline_spec(self, name: str) -> PipelineSpec:
        with self._lock:
            spec = self._pipelines.get(name)
            is_model = name in self._versions
            known = sorted(self._pipelines)
        if spec is None:
            hint = "; it is a model, not a pipeline" if is_model else ""
            raise ModelNotFound(f"no pipeline named '{name}'{hint} (pipelines: {known})")
        return spec

    def is_pipeline(self, name: str) -> bool:
        with self._lock:
            return name in self._pipelines

    def ready_versions(self, name: str) -> list[int]:
        with self._lock:
            self._settle_failures()
            if name not in self._versions:
                raise ModelNotFound(f"no model named '{name}' in the repository")
            return sorted(v for v, s in self._versions[name].items() if s.state is State.READY)

    def model(self, name: str, version: int) -> Backend:
        """A ready version (0 = the newest ready one), leased to the current call scope if any."""
        with self._lock:
            status = self._ready(name, version)
            held = _held.get()
            if held is not None:
                status.leases += 1
                held.append(status)
            return status.model

    def model_spec(self, name: str, version: int) -> ModelSpec:
        """The spec a ready version (0 = the newest ready one) was loaded with."""
        with self._lock:
            return self._ready(name, version).spec

    def _ready(self, name: str, version: int) -> VersionStatus:
        with self._lock:
            self._settle_failures()
            versions = self._versions.get(name)
            if versions is None:
                raise ModelNotFound(f"no model named '{name}' in the repository")
            if version == 0:
                ready = [s for v, s in sorted(versions.items()) if s.state is State.READY]
                if not ready:
                    reasons = "; ".join(s.reason for s in versions.values() if s.reason) or "still loading"
                    raise ModelNotReady(f"model '{name}' has no ready version ({reasons})")
                status = ready[-1]
            else:
                status = versions.get(version)
                if status is None:
                    raise ModelNotFound(
                        f"model '{name}' has no version {version} (versions: {sorted(versions)})"
                    )
                if status.state is not State.READY:
                    raise ModelNotReady(
                        f"model '{name}' version {version} is {status.state.value}: {status.reason}"
                    )
            return status

    def index(self) -> list[VersionStatus]:
        with self._lock:
            self._settle_failures()
            current = [s for name in sorted(self._versions) for _, s in sorted(self._versions[name].items())]
            return current + list(self._unloading)

    def statuses(self, name: str) -> list[VersionStatus]:
        return [s for s in self.index() if s.name == name]

    def pipelines(self) -> list[str]:
        with self._lock:
            return sorted(self._pipelines)

    def close(self) -> None:
        """Stops every loaded version (their queued work finishes first); loads still running stop."""
        self._closing = True
        self._closer.shutdown(wait=True)  # the versions whose last call ended are closed first
        for status in self.index():
            if status.model is not None:
                status.model.close()
                _forget(status.cache)
