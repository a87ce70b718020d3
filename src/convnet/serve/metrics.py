"""Request counts and latency histograms in the Prometheus text exposition format (version
0.0.4: ``# HELP`` / ``# TYPE`` lines, then ``name{label="value"} number`` samples; a histogram
is cumulative ``_bucket`` samples up to ``le="+Inf"``, then ``_sum`` and ``_count``), written by
hand: no client library is needed for a handful of series.

Label values are bounded: paths are the server's routes (anything else counts as "other"), so
a client probing random URLs cannot grow the series without limit.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence

__all__ = ["LATENCY_BUCKETS", "BATCH_BUCKETS", "Metrics"]

# Prometheus' default histogram buckets (seconds), which cover 5 ms to 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128)


class _Histogram:
    def __init__(self, bounds: Sequence[float]):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        i = next((i for i, b in enumerate(self.bounds) if value <= b), len(self.bounds))
        self.counts[i] += 1
        self.total += value

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, running = [], 0
        for bound, count in zip((*map(_number, self.bounds), "+Inf"), self.counts):
            running += count
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {_number(self.total)}")
        out.append(f"{name}_count{braces} {running}")
        return out


class Metrics:
    """Thread-safe counters and histograms of a server.

    Args:
        paths: the routes counted by name; others count as "other".
        gauges: name -> (help text, function returning the current value), read at each scrape.
    """

    def __init__(self, paths: Sequence[str], gauges: dict[str, tuple[str, Callable[[], float]]] | None = None):
        self.paths = frozenset(paths)
        self.gauges = dict(gauges or {})
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self._latency: dict[str, _Histogram] = {}
        self._batches = _Histogram(BATCH_BUCKETS)

    def route(self, path: str) -> str:
        if path in self.paths:
            return path
        if path.startswith("/static/"):
            return "/static"
        return "other"

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        route = self.route(path)
        method = method if method in ("GET", "POST", "HEAD") else "other"
        with self._lock:
            self._requests[(route, method, status)] += 1
            self._latency.setdefault(route, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, size: int) -> None:
        with self._lock:
            self._batches.observe(size)

    def render(self) -> str:
        """All series in the text format, ending in a newline."""
        with self._lock:
            lines = ["# HELP convnet_requests_total HTTP requests answered, by route, method and status code.",
                     "# TYPE convnet_requests_total counter"]
            for (route, method, status), n in sorted(self._requests.items()):
                lines.append(f'convnet_requests_total{{path="{_escape(route)}",method="{method}",status="{status}"}} {n}')
            lines += ["# HELP convnet_request_duration_seconds Time from a request's arrival to its answer, by route.",
                      "# TYPE convnet_request_duration_seconds histogram"]
            for route, hist in sorted(self._latency.items()):
                lines += hist.lines("convnet_request_duration_seconds", f'path="{_escape(route)}"')
            lines += ["# HELP convnet_batch_size Inputs per forward pass of the batching worker.",
                      "# TYPE convnet_batch_size histogram"]
            lines += self._batches.lines("convnet_batch_size", "")
        for name, (text, read) in sorted(self.gauges.items()):
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {_number(read())}"]
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) and not float(value).is_integer() else str(int(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
