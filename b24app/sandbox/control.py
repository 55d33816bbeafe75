"""A small client for a running sandbox's control API (used by the commands and the test plugin)."""

from __future__ import annotations

from typing import Any

import requests

__all__ = ["ControlClient", "ControlError"]


class ControlError(RuntimeError):
    """The control API refused a request or could not be reached."""


class ControlClient:
    """Talks to `/_sandbox/control`, `/_sandbox/reset` and `/_sandbox/deliveries` on the hub."""

    def __init__(self, hub_url: str, timeout: float = 10.0) -> None:
        self.hub_url = hub_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def _check(self, response: requests.Response) -> Any:
        try:
            data = response.json()
        except ValueError as exc:
            raise ControlError(f"{response.status_code} from {response.url}") from exc
        if response.status_code != 200 or (isinstance(data, dict) and data.get("ok") is False):
            message = data.get("error") if isinstance(data, dict) else data
            raise ControlError(f"{response.status_code}: {message}")
        return data

    def state(self) -> dict[str, Any]:
        """GET /_sandbox/control."""
        try:
            response = self.session.get(f"{self.hub_url}/_sandbox/control", timeout=self.timeout)
        except requests.RequestException as exc:
            raise ControlError(f"the sandbox at {self.hub_url} is not reachable: {exc}") from exc
        result: dict[str, Any] = self._check(response)
        return result

    def control(self, **body: Any) -> dict[str, Any]:
        """POST /_sandbox/control with `body` as JSON; returns the reply."""
        try:
            response = self.session.post(
                f"{self.hub_url}/_sandbox/control", json=body, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise ControlError(f"the sandbox at {self.hub_url} is not reachable: {exc}") from exc
        result: dict[str, Any] = self._check(response)
        return result

    def reset(self) -> dict[str, Any]:
        """POST /_sandbox/reset."""
        result: dict[str, Any] = self._check(
            self.session.post(f"{self.hub_url}/_sandbox/reset", timeout=self.timeout)
        )
        return result

    def deliveries(self, **filters: Any) -> list[dict[str, Any]]:
        """GET /_sandbox/deliveries with optional member_id/since/after_id/user_id filters."""
        params = {k: v for k, v in filters.items() if v is not None}
        result: list[dict[str, Any]] = self._check(
            self.session.get(
                f"{self.hub_url}/_sandbox/deliveries", params=params, timeout=self.timeout
            )
        )
        return result

    def events(self) -> list[dict[str, Any]]:
        """GET /_sandbox/events: the event POSTs attempted so far."""
        result: list[dict[str, Any]] = self._check(
            self.session.get(f"{self.hub_url}/_sandbox/events", timeout=self.timeout)
        )
        return result
