"""The process's metrics registry: Dex's HTTP metrics, Portico's event counters, build info, process."""

from __future__ import annotations

import platform
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

# prometheus_client (with the HTTP servers its exposition module imports: ~1.5 MB) is imported when metrics
# are first read, by a scrape or the admin API, not by a process that counts requests and nothing reads.
if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "DURATION_BUCKETS", "SIZE_BUCKETS", "AdminCollector", "AdminCounters", "HTTPStats",
           "Telemetry", "build_labels"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # prometheus_client's CONTENT_TYPE_PLAIN_0_0_4
# Dex's buckets (.25 … 10 s and 200 … 1500 bytes) with finer ones below and above: a token request takes
# milliseconds here, and a login page is a few kilobytes. Queries written for Dex work unchanged.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (200.0, 500.0, 900.0, 1500.0, 5000.0, 15000.0)
_HTTP_LABELS = ("code", "method", "handler")


class _Series:
    """One (code, method, handler): per-bucket (not cumulative) counts, so an update is two additions."""

    __slots__ = ("duration_counts", "duration_sum", "size_counts", "size_sum")

    def __init__(self) -> None:
        self.duration_counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.size_counts = [0] * (len(SIZE_BUCKETS) + 1)
        self.duration_sum = 0.0
        self.size_sum = 0.0


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*(str(b) for b in bounds), "+Inf"), counts, strict=True):
        total += count
        out.append((bound, float(total)))
    return out


class HTTPStats:
    """http_requests_total, request_duration_seconds and response_size_bytes, labelled as Dex does.

    Kept in plain dicts (no lock: only the event loop writes) and turned into metric families at scrape
    time. The handler label is a route pattern, so the number of series stays bounded.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], _Series] = {}
        self.in_flight = 0  # requests started and not yet finished (the middleware keeps it)

    def observe(self, code: int, method: str, handler: str, seconds: float, size: int) -> None:
        key = (str(code), method, handler)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series()
        series.duration_counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        series.duration_sum += seconds
        series.size_counts[bisect_left(SIZE_BUCKETS, size)] += 1
        series.size_sum += size

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        # list() copies in one C call, so a scrape in a thread never sees the dict change under it.
        items = list(self._series.items())
        requests = CounterMetricFamily("http_requests_total", "Count of all HTTP requests.",
                                       labels=_HTTP_LABELS)
        durations = HistogramMetricFamily("request_duration_seconds",
                                          "A histogram of latencies for requests.", labels=_HTTP_LABELS)
        sizes = HistogramMetricFamily("response_size_bytes", "A histogram of response sizes for requests.",
                                      labels=_HTTP_LABELS)
        for labels, series in items:
            duration_counts, size_counts = list(series.duration_counts), list(series.size_counts)
            requests.add_metric(list(labels), float(sum(duration_counts)))
            durations.add_metric(list(labels), _cumulative(DURATION_BUCKETS, duration_counts),
                                 series.duration_sum)
            sizes.add_metric(list(labels), _cumulative(SIZE_BUCKETS, size_counts), series.size_sum)
        yield requests
        yield durations
        yield sizes
        yield GaugeMetricFamily("portico_http_requests_in_flight", "Requests being handled right now.",
                                value=float(self.in_flight))


class _Counters:
    """Labelled counters fed by events (logins, tokens, rotations, storage errors)."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...],
                 initial: Iterable[tuple[str, ...]] = ()) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = labels
        # Known label sets start at 0, so rate() and absent() work before the first event.
        self.values: dict[tuple[str, ...], int] = dict.fromkeys(initial, 0)

    def inc(self, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0) + 1

    def family(self) -> Metric:
        from prometheus_client.metrics_core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in list(self.values.items()):
            family.add_metric(list(labels), float(value))
        return family


_Gauges = dict[str, tuple[str, Callable[[], "float | None"]]]


class _EventCollector:
    def __init__(self, counters: Iterable[_Counters], gauges: _Gauges, build: Mapping[str, str]) -> None:
        self._counters = tuple(counters)
        self._gauges = gauges  # shared: gauges added later are served too
        self._build = dict(build)

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import GaugeMetricFamily

        info = GaugeMetricFamily("portico_build_info", "A metric with a constant '1' value labeled by the "
                                 "version, Python version and platform Portico runs with.",
                                 labels=tuple(self._build))
        info.add_metric(list(self._build.values()), 1.0)
        yield info
        for counters in self._counters:
            yield counters.family()
        for name, (documentation, read) in self._gauges.items():
            value = read()
            if value is not None:
                yield GaugeMetricFamily(name, documentation, value=value)


def build_labels(version: str, commit: str = "") -> dict[str, str]:
    labels = {"version": version, "python_version": platform.python_version(),
              "platform": f"{platform.system().lower()}/{platform.machine()}"}
    if commit:
        labels["commit"] = commit
    return labels


class Telemetry:
    """Every metric of one process, in one CollectorRegistry of its own (no global registry), made when
    the metrics are first read (counting needs none of it)."""

    def __init__(self, build: Mapping[str, str], *, process: bool = True) -> None:
        self._registry: CollectorRegistry | None = None
        self._registry_lock = threading.Lock()  # scrapes render in worker threads
        self._process = process
        self.http = HTTPStats()
        self.logins = _Counters("portico_logins_total", "Logins by connector and result "
                                "(success, invalid_credentials).", ("connector", "result"))
        self.tokens = _Counters("portico_tokens_issued_total", "Successful token endpoint responses by "
                                "grant type.", ("grant",))
        self.key_rotations = _Counters("portico_key_rotations_total", "Signing-key rotations done by this "
                                       "process (success), or attempts that failed (error).", ("result",),
                                       initial=[("success",), ("error",)])
        self.storage_errors = _Counters("portico_storage_errors_total", "Storage operations that failed "
                                        "with a database error, by operation.", ("operation",))
        self.lockouts = _Counters("portico_lockouts_total", "Brute-force lockouts this process started, by "
                                  "kind (account, ip).", ("kind",), initial=[("account",), ("ip",)])
        self.rate_limited = _Counters("portico_rate_limited_total", "Requests answered 429 by a rate limit "
                                      "(token, token_client, device_code, login).", ("limit",))
        self._gauges: _Gauges = {}
        events = _EventCollector((self.logins, self.tokens, self.key_rotations, self.storage_errors,
                                  self.lockouts, self.rate_limited), self._gauges, build)
        self._own: list[Collector] = [self.http, events]
        self._extra: list[Collector] = []

    @property
    def registry(self) -> CollectorRegistry:
        """The registry: our collectors, the process ones, then those registered, in that order."""
        with self._registry_lock:
            if self._registry is None:
                self._registry = self._new_registry()
            return self._registry

    def _new_registry(self) -> CollectorRegistry:
        import prometheus_client

        registry = prometheus_client.CollectorRegistry()
        for collector in self._own:
            registry.register(collector)
        if self._process:
            # The standard process_*, python_info and python_gc_* series, as Dex exports process_* and go_*.
            # (They read the process when collected: made late, they answer the same.)
            prometheus_client.ProcessCollector(registry=registry)
            prometheus_client.PlatformCollector(registry=registry)
            prometheus_client.GCCollector(registry=registry)
        for collector in self._extra:
            registry.register(collector)
        return registry

    # --- events -------------------------------------------------------------------------------------

    def login(self, connector: str, result: str) -> None:
        self.logins.inc(connector, result)

    def token_issued(self, grant: str) -> None:
        self.tokens.inc(grant)

    def key_rotation(self, result: str) -> None:
        self.key_rotations.inc(result)

    def storage_error(self, operation: str) -> None:
        self.storage_errors.inc(operation)

    def lockout(self, kind: str) -> None:
        self.lockouts.inc(kind)

    def rate_limit_hit(self, limit: str) -> None:
        self.rate_limited.inc(limit)

    # --- wiring -------------------------------------------------------------------------------------

    def gauge(self, name: str, documentation: str, read: Callable[[], float | None]) -> None:
        """A gauge read at scrape time (None: not exported this time)."""
        self._gauges[name] = (documentation, read)

    def register(self, collector: Collector) -> None:
        """Another component's collector (e.g. the admin counters), served by /metrics as well."""
        with self._registry_lock:
            if self._registry is not None:
                self._registry.register(collector)
            self._extra.append(collector)

    # --- exposition ---------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The whole registry in the Prometheus text format 0.0.4 (content type CONTENT_TYPE)."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self.registry)

    def render_without(self, *excluded: Collector) -> str:
        """The registry less some collectors (for an exporter that prints those itself)."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(_Subset(self.registry, excluded)).decode()


class _Subset:
    def __init__(self, registry: CollectorRegistry, excluded: tuple[Collector, ...]) -> None:
        self._registry = registry
        self._excluded = excluded

    def collect(self) -> Iterator[Metric]:
        names = {metric.name for collector in self._excluded for metric in collector.collect()}
        for metric in self._registry.collect():
            if metric.name not in names:
                yield metric


class AdminCounters(Protocol):
    """What the admin layer counts (appliance.admin.metrics.Metrics): reloads and admin API calls."""

    reloads_applied: int
    reloads_rejected: int
    reloads_unchanged: int
    last_reload_ok: bool
    last_success_at: float
    admin_calls: int
    admin_denied: int


class AdminCollector:
    """The admin counters as metric families, named as the admin API's own Prometheus text names them."""

    def __init__(self, counters: AdminCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        c = self._counters
        reloads = CounterMetricFamily("portico_config_reloads_total",
                                      "Configuration reload attempts by result.", labels=("result",))
        reloads.add_metric(["applied"], float(c.reloads_applied))
        reloads.add_metric(["rejected"], float(c.reloads_rejected))
        reloads.add_metric(["unchanged"], float(c.reloads_unchanged))
        yield reloads
        yield GaugeMetricFamily("portico_config_last_reload_successful",
                                "Whether the last reload attempt was applied.", value=float(c.last_reload_ok))
        yield GaugeMetricFamily("portico_config_last_reload_success_timestamp_seconds",
                                "When the configuration was last loaded successfully.",
                                value=c.last_success_at)
        yield CounterMetricFamily("portico_admin_requests_total", "Admin API calls.",
                                  value=float(c.admin_calls))
        yield CounterMetricFamily("portico_admin_requests_denied_total", "Admin API calls refused.",
                                  value=float(c.admin_denied))
