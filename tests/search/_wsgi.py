"""GET a path of a WSGI app (optuna-dashboard's) in process, without a server."""

from __future__ import annotations

import io
import json
import sys
from typing import Any, Dict, List


def wsgi_get(app: Any, path: str) -> Dict[str, Any]:
    """The JSON body of ``GET path`` on ``app``; fails the test unless the status is 200."""
    status: List[str] = []
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
    }
    body = b"".join(app(environ, lambda s, h, *a: status.append(s)))
    assert status and status[0].startswith("200"), (path, status)
    return json.loads(body)
