"""A client of the controller's HTTP API, as services and the command line use it."""

from __future__ import annotations

import json
from typing import Any


class CommandError(Exception):
    """A call to the controller failed; the message is for the user.

    `status` is the controller's HTTP status when it answered with an error, else None.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def call(controller: str, method: str, path: str, body: object = None) -> Any:
    """One JSON request to the controller's API."""
    # Imported here: urllib.request brings http.client, email and ssl, which processes that
    # only import this module for CommandError (the sidecar) should not keep resident.
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        controller.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"} if data is not None else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error", err.reason)
        except (ValueError, AttributeError):
            message = err.reason
        raise CommandError(f"{err.code}: {message}", err.code) from err
    except urllib.error.URLError as err:
        raise CommandError(f"cannot reach the controller at {controller}: {err.reason}") from err
