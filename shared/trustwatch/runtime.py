"""What every cloud function needs at run time, built once per warm instance.

`function_responder()` reads the environment (Contract 5): where the baseline lives,
the alert sinks, the dedup store, and asks the cloud for its enricher. Every entry point
sets itself up the same way, through `FunctionRuntime`; everything is created on the first
event, so importing an entry point stays cheap and tests can set the environment first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from trustwatch import clouds
from trustwatch.remediation import Breaker, setting_from_env
from trustwatch.respond import Responder

log = logging.getLogger("trustwatch")

BASELINE_TTL_S = 300


def default_baseline_path(entry_point_file: str) -> Path:
    """The baseline bundled next to the function's entry point."""
    return Path(entry_point_file).resolve().parent / "baseline.yaml"


class FunctionRuntime:
    """The responder of one function instance of `cloud`, built on its first event."""

    def __init__(self, cloud: str, entry_point_file: str) -> None:
        self.cloud = cloud
        self.entry_point_file = entry_point_file
        self._responder: Responder | None = None

    def responder(self) -> Responder:
        if self._responder is None:
            self._responder = function_responder(self.cloud, self.entry_point_file)
        return self._responder


def function_responder(
    cloud: str, entry_point_file: str, *, environ: Mapping[str, str] | None = None
) -> Responder:
    """The responder a function of `cloud` runs, configured by its environment."""
    from trustwatch.alerts import Dispatcher
    from trustwatch.baseline_source import BaselineCache
    from trustwatch.dedup import MemoryDedupStore
    from trustwatch.stores import store_from_env

    env = os.environ if environ is None else environ
    location = env.get("TRUSTWATCH_BASELINE") or str(default_baseline_path(entry_point_file))
    ttl = int(env.get("TRUSTWATCH_BASELINE_TTL", BASELINE_TTL_S))
    cache = BaselineCache(ttl_s=ttl)
    store = store_from_env(env)
    if store is None:
        log.warning(
            "no dedup store configured (TRUSTWATCH_STATE_TABLE / TRUSTWATCH_STATE_URL): "
            "duplicates are suppressed within this instance only"
        )
        store = MemoryDedupStore()
    # The responder applies TRUSTWATCH_MIN_SEVERITY, or else the baseline's
    # defaults.min_severity (known only once the baseline loads); sinks without their own
    # threshold then take every finding it hands over.
    sink_env = dict(env)
    sink_env.setdefault("TRUSTWATCH_MIN_SEVERITY", "info")
    dispatcher = Dispatcher.from_env(sink_env, store=store)
    # No sink means findings would go nowhere: leave the sender unset so the first
    # finding to send raises (retry, then dead-letter) instead of vanishing.
    sender = dispatcher if dispatcher.sinks else None
    plugin = clouds.get(cloud)
    enrich = plugin.enricher(env)
    setting = setting_from_env(env)
    return Responder(
        lambda: cache.get(location),
        sender,
        enrich,
        env,
        # off: no remediator at all, so no state read and no cloud SDK on the event path
        remediator=None if setting == "off" else plugin.remediator(env),
        apply_remediation=setting == "apply",
        remediation_off=setting == "off",
        breaker=Breaker(store),
    )
