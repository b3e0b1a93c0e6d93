"""The registry of clouds: core asks it for everything cloud-specific.

A cloud is one folder `trustwatch/<name>/` whose `cloud.py` declares `CLOUD`, an object
that satisfies `CloudPlugin`: its name, its baseline section model, its events module
(recognize, unwrap, parse), its rules, its enricher, its console links and the API
operations it watches. Core modules (baseline, engine, intake, package, alerts) iterate
`registered()` and never name a cloud. A plugin from outside the package (a test's toy
cloud, a third-party folder) joins with `register()`.

Discovery is a directory listing, not an import of each cloud's SDK: `cloud.py` modules
import only what their declaration needs; events, rules and enrichers load on first use.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol, TextIO, runtime_checkable

from typing_extensions import override

if TYPE_CHECKING:
    from trustwatch.alerts.links import Link
    from trustwatch.changes import Change, Skipped
    from trustwatch.dedup import DedupStore
    from trustwatch.findings import Finding
    from trustwatch.remediation import Remediator
    from trustwatch.schema import Model
    from trustwatch.sweep import StateModule
    from trustwatch.sweepstate import SweepStateStore

    Enricher = Callable[[Change], "Change | str"]


class EventsModule(Protocol):
    """What every cloud's `events` module offers (see trustwatch.intake)."""

    def recognizes(self, doc: Any) -> bool:
        """Does this JSON document belong to the cloud (in any of its delivery shapes)?"""
        ...

    def records(self, doc: Any) -> Iterator[Any]:
        """Unwrap delivery envelopes and batches into audit records."""
        ...

    def parse(self, record: Any) -> list[Change] | Skipped:
        """One audit record; raises EventError if it is malformed."""
        ...


class GraphPart(Protocol):
    """A cloud's `graph` part: its share of the sweep report's trust graph."""

    def draw(self, baseline: Any, findings: Sequence[Finding], graph: Any) -> None:
        """Add the section's identities and the findings' drift to `graph`.

        `graph` is a trustwatch.trustgraph.GraphBuilder, named `Any` here: the functions'
        bundles follow every import of this module, and the report is no part of them.
        """
        ...


class DemoPart(Protocol):
    """A cloud's act in `trustwatch demo` (on its own stand-ins, no cloud account)."""

    def show(self, baseline: Any, examples: Path, out: TextIO) -> list[Finding]:
        """Run the act, write what it shows to `out`; the findings it made."""
        ...


@runtime_checkable
class CloudPlugin(Protocol):
    """The one object a cloud folder declares (`trustwatch/<name>/cloud.py: CLOUD`)."""

    name: str  # the key of its baseline section, `Finding.cloud`, `functions/<name>/`
    entry_point: str  # the file in functions/<name>/ that the platform calls

    def baseline_section(self) -> type[Model]:
        """The dataclass (`trustwatch.schema.Model`) of the cloud's section of the baseline file."""
        ...

    def check_baseline(self, baseline: Any) -> list[str]:
        """Cross-section problems (dotted path: message) pydantic cannot see alone."""
        ...

    def events(self) -> EventsModule:
        """The events module: recognizes / records / parse."""
        ...

    def load_rules(self) -> None:
        """Import the rules module, which registers its rules with the engine."""
        ...

    def enricher(self, environ: Mapping[str, str]) -> Enricher | None:
        """Fetches what an event lacks from the cloud's API, or None when none is needed."""
        ...

    def console_link(self, finding: Finding) -> Link | None:
        """The console page where a human checks or fixes the finding's identity."""
        ...

    def watched_operations(self) -> Mapping[str, tuple[str, ...]]:
        """Event source (service) -> the API operations the events module turns into changes.

        deploy/ filters the platform's event routing to exactly these.
        """
        ...

    def describe_baseline(self, section: Any) -> str:
        """A short count of what the section watches, for `baseline validate`."""
        ...

    def dedup_store(self, environ: Mapping[str, str]) -> DedupStore | None:
        """The cloud's state store, if the environment names one of its settings.

        Those are TRUSTWATCH_STATE_TABLE or TRUSTWATCH_STATE_URL, whatever the cloud:
        `stores.store_from_env` asks no cloud when neither is set.
        """
        ...

    def dedup_store_url_forms(self) -> str:
        """The TRUSTWATCH_STATE_URL forms dedup_store() takes ("" for none), for errors."""
        ...

    def sweep_store(self, environ: Mapping[str, str]) -> SweepStateStore | None:
        """The cloud's sweep state store on the dedup store's settings, if they are its."""
        ...

    def baseline_schemes(self) -> tuple[str, ...]:
        """The URL schemes of baseline locations this cloud reads (`s3`, `gs`, …)."""
        ...

    def baseline_reader(self, scheme: str) -> Callable[[str, Any], bytes] | None:
        """read(location, credential) -> bytes for a baseline URL of `scheme`, if ours."""
        ...

    def bundle(self, files: dict[str, Any], requirements: list[str], out_dir: Path) -> list[Path]:
        """Shape the function's files and requirements into what its platform deploys.

        Used by `trustwatch package`; returns the paths written, zip last.
        """
        ...

    def remediator(self, environ: Mapping[str, str]) -> Remediator | None:
        """What puts the cloud's findings back to the baseline (trustwatch.remediation)."""
        ...

    def state(self) -> StateModule | None:
        """The cloud's `state` part, which sweeps read (trustwatch.sweep), if it has one."""
        ...

    def graph(self) -> GraphPart | None:
        """The cloud's `graph` part, which draws its report's trust graph, if it has one."""
        ...

    def demo(self) -> DemoPart | None:
        """The cloud's act in `trustwatch demo`, if it has one."""
        ...


# The parts of a cloud folder a function imports by name (intake, engine, baseline and the
# stores ask every cloud), and the parts only its own cloud's function imports (its
# scheduled sweep reads its state).
RUNTIME_PARTS = ("cloud", "baseline", "events", "rules", "links", "store", "source")
OWN_RUNTIME_PARTS = ("enrich", "remediate", "state")

_PACKAGE = Path(__file__).resolve().parent
_registry: dict[str, CloudPlugin] | None = None


def _discover() -> dict[str, CloudPlugin]:
    found: dict[str, CloudPlugin] = {}
    for folder in sorted(_PACKAGE.iterdir()):
        if (folder / "cloud.py").is_file() and (folder / "__init__.py").is_file():
            module: ModuleType = importlib.import_module(f"trustwatch.{folder.name}.cloud")
            plugin = module.CLOUD
            if plugin.name != folder.name:
                raise RuntimeError(f"{folder}/cloud.py declares cloud {plugin.name!r}")
            found[plugin.name] = plugin
    return found


def _plugins() -> dict[str, CloudPlugin]:
    global _registry
    if _registry is None:
        _registry = _discover()
    return _registry


def registered() -> tuple[CloudPlugin, ...]:
    """Every cloud, in name order (the order intake asks them to recognize a document)."""
    return tuple(_plugins().values())


def names() -> tuple[str, ...]:
    """The registered clouds' names, in name order."""
    return tuple(_plugins())


def get(name: str) -> CloudPlugin:
    """The cloud called `name`; ValueError naming the known ones otherwise."""
    plugin = _plugins().get(name)
    if plugin is None:
        raise ValueError(f"unknown cloud {name!r}; expected one of: {', '.join(names())}")
    return plugin


def register(plugin: CloudPlugin) -> Callable[[], None]:
    """Add a cloud from outside the package; returns the function that removes it again.

    Register before the first baseline is loaded: the baseline model gains the cloud's
    section when it is built (`trustwatch.baseline.baseline_model`).
    """
    if not isinstance(plugin, CloudPlugin):
        raise TypeError(f"{plugin!r} does not offer every part of a CloudPlugin")
    plugins = _plugins()
    if plugin.name in plugins:
        raise ValueError(f"cloud {plugin.name!r} is registered already")
    plugins[plugin.name] = plugin
    _changed()

    def unregister() -> None:
        if plugins.get(plugin.name) is plugin:
            del plugins[plugin.name]
            _changed()

    return unregister


_listeners: list[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call `listener` whenever the set of clouds changes (caches built from it reset)."""
    _listeners.append(listener)


def _changed() -> None:
    for listener in _listeners:
        listener()


class CloudFolder(CloudPlugin):
    """A `CloudPlugin` made of a folder's modules, found by their names.

    The names are the same in every cloud, so that the clouds read as one design:

    - `baseline.py`: `Section` (the section model, with `summary()`), and where the
      section depends on the rest of the file, `check_baseline(baseline) -> list[str]`;
    - `events.py`: `recognizes`, `records`, `parse`, `watched_operations()`;
    - `rules.py`: the `@rule` functions;
    - `links.py`: `console_link(finding)`;
    - `bundle.py`: `build(files, requirements, out_dir)`, the deployable bundle;
    - `store.py`: `store_from_env(environ)` and `URL_FORMS`, its dedup store, and
      `sweep_store_from_env(environ)`, its sweep state store (trustwatch.sweepstate);
    - `source.py` (where its storage can hold a baseline): `SCHEMES`, `read(location, …)`;
    - `enrich.py` (only where events lack what rules need): `enricher_from_env(environ)`;
    - `remediate.py` (where findings can be put back): `remediator_from_env(environ)`;
    - `state.py` (what sweeps read): `units`, `read`, `catch_up` (trustwatch.sweep);
    - `graph.py` (the report's trust graph): `draw(baseline, findings, graph)`
      (trustwatch.trustgraph);
    - `demo.py` (its act in `trustwatch demo`): `show(baseline, examples, out)`.

    Each module is imported on first use, so declaring a cloud costs nothing.
    """

    def __init__(self, name: str, *, entry_point: str, package: str | None = None) -> None:
        self.name = name
        self.entry_point = entry_point
        self.package = package or f"trustwatch.{name}"

    def __repr__(self) -> str:
        return f"CloudFolder({self.name!r}, package={self.package!r})"

    def _module(self, part: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{part}")

    @override
    def baseline_section(self) -> type[Model]:
        section: type[Model] = self._module("baseline").Section
        return section

    @override
    def check_baseline(self, baseline: Any) -> list[str]:
        check = getattr(self._module("baseline"), "check_baseline", None)
        return list(check(baseline)) if check else []

    @override
    def events(self) -> EventsModule:
        module: Any = self._module("events")
        return module  # type: ignore[no-any-return]

    @override
    def load_rules(self) -> None:
        self._module("rules")

    @override
    def enricher(self, environ: Mapping[str, str]) -> Enricher | None:
        if importlib.util.find_spec(f"{self.package}.enrich") is None:
            return None
        enricher: Enricher | None = self._module("enrich").enricher_from_env(environ)
        return enricher

    @override
    def console_link(self, finding: Finding) -> Link | None:
        link: Link | None = self._module("links").console_link(finding)
        return link

    @override
    def watched_operations(self) -> Mapping[str, tuple[str, ...]]:
        watched: Mapping[str, tuple[str, ...]] = self._module("events").watched_operations()
        return watched

    @override
    def describe_baseline(self, section: Any) -> str:
        return str(section.summary())

    @override
    def dedup_store(self, environ: Mapping[str, str]) -> DedupStore | None:
        store: DedupStore | None = self._module("store").store_from_env(environ)
        return store

    @override
    def dedup_store_url_forms(self) -> str:
        return str(self._module("store").URL_FORMS)

    @override
    def sweep_store(self, environ: Mapping[str, str]) -> SweepStateStore | None:
        if importlib.util.find_spec(f"{self.package}.store") is None:
            return None
        make = getattr(self._module("store"), "sweep_store_from_env", None)
        store: SweepStateStore | None = make(environ) if make else None
        return store

    @override
    def baseline_schemes(self) -> tuple[str, ...]:
        if importlib.util.find_spec(f"{self.package}.source") is None:
            return ()
        return tuple(self._module("source").SCHEMES)

    @override
    def baseline_reader(self, scheme: str) -> Callable[[str, Any], bytes] | None:
        if scheme not in self.baseline_schemes():
            return None
        read: Callable[[str, Any], bytes] = self._module("source").read
        return read

    @override
    def bundle(self, files: dict[str, Any], requirements: list[str], out_dir: Path) -> list[Path]:
        written: list[Path] = self._module("bundle").build(files, requirements, out_dir)
        return written

    @override
    def remediator(self, environ: Mapping[str, str]) -> Remediator | None:
        if importlib.util.find_spec(f"{self.package}.remediate") is None:
            return None
        remediator: Remediator | None = self._module("remediate").remediator_from_env(environ)
        return remediator

    @override
    def state(self) -> StateModule | None:
        if importlib.util.find_spec(f"{self.package}.state") is None:
            return None
        module: Any = self._module("state")
        return module  # type: ignore[no-any-return]

    @override
    def demo(self) -> DemoPart | None:
        if importlib.util.find_spec(f"{self.package}.demo") is None:
            return None
        module: Any = self._module("demo")
        return module  # type: ignore[no-any-return]

    @override
    def graph(self) -> GraphPart | None:
        if importlib.util.find_spec(f"{self.package}.graph") is None:
            return None
        module: Any = self._module("graph")
        return module  # type: ignore[no-any-return]
