"""Guards for tests of calls that could block forever (a FIFO opened for reading)."""
from __future__ import annotations

import threading
from typing import Any, Callable


def run_with_timeout(fn: Callable[[], Any], seconds: float = 20.0) -> Any:
    """``fn()`` in a daemon thread: its result, or its exception re-raised here. A call still
    running after ``seconds`` fails the test instead of hanging the suite (the thread is left
    behind, blocked, and dies with the process)."""
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"call still blocked after {seconds} s"
    if "error" in result:
        raise result["error"]
    return result.get("value")
