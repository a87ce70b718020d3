"""``convnet serve``: a training run behind HTTP, with a web page (``static/``: plain HTML and
JavaScript shipped in the package, nothing fetched from elsewhere).

``create_app(run_dir, ServeSettings(...))`` is the Starlette application (run it with uvicorn,
as ``convnet serve`` does); it needs the optional extra ``serve`` (``pip install convnet[serve]``).
Inputs and answers go through the run's Task (``load_input_bytes``, ``postprocess``,
``to_response``), so every task is served the same way. See ``app.py`` for the endpoints and the
order in which the limits apply.
"""
from .app import STATIC_DIR, ServeSettings, Service, create_app
from .batching import Admission, MicroBatcher
from .limits import ServeError
from .metrics import Metrics

__all__ = ["Admission", "Metrics", "MicroBatcher", "STATIC_DIR", "ServeError", "ServeSettings", "Service", "create_app"]
