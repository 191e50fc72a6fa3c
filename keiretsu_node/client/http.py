"""The HTTP client of the Python SDK: submit signed transactions, wait for receipts, query.

Part of keiretsu_node/client. What the CLI, the tests and a participant's own software use to
talk to a node; every error from a node arrives as ApiError with the node's stable code.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import msgpack

from ledger.keys import is_address
from ledger.tx import SignedTx

DEFAULT_TIMEOUT_S = 30
BUSY_RETRIES = 20
CONNECT_TIMEOUT_S = 10.0
MAX_BUSY_WAIT_S = 10.0  # one wait between BUSY retries, whatever Retry-After says

# The client's own codes (status 0): no node answered, so they are not refusals.
UNREACHABLE = "UNREACHABLE"  # no connection was made: nothing was sent
NO_ANSWER = "NO_ANSWER"  # sent, but no answer came: the outcome is unknown


class ApiError(Exception):
    """A node said no (HTTP status, its stable code and explanation), or no node answered
    (status 0: UNREACHABLE, nothing was sent; NO_ANSWER, the request may have taken effect)."""

    def __init__(self, status: int, code: str, detail: str, retry_after_s: float | None = None,
                 *, outcome_unknown: bool = False) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after_s = retry_after_s  # the node's Retry-After, when it sent one
        # A submission may have been accepted: look it up by its id (sending the same bytes again
        # is safe: a duplicate is refused). Set for a request that may have changed something and
        # got no node's refusal: no answer, a failure other than BUSY or NOT_READY (a node's 500,
        # a proxy's 502 or 504), or a success that does not decode.
        self.outcome_unknown = outcome_unknown


# What a node answers before it changes anything: the request is refused, nothing happened.
REFUSED_BEFORE_ANYTHING = frozenset({"BUSY", "NOT_READY"})


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _lin(linearizable: bool) -> dict[str, str]:
    return {"linearizable": "true"} if linearizable else {}


class Client:
    """An async client for one node. Use `async with Client(url) as c:`."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        # The connection has its own bound, so a node that never accepts is UNREACHABLE (nothing
        # was sent), not NO_ANSWER.
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, CONNECT_TIMEOUT_S))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        writes = method != "GET"  # a request that may change something: its outcome matters
        try:
            async with self._http().request(method, self.base_url + path, **kwargs) as resp:
                try:
                    if resp.content_type in ("application/json", "application/problem+json"):
                        body = await resp.json()
                    else:
                        body = await resp.text()
                except ValueError as exc:  # a body that is not what its type says (a proxy's page)
                    raise ApiError(resp.status, f"HTTP_{resp.status}", f"an answer that does not decode: {exc}",
                                   outcome_unknown=writes and (resp.status < 400 or resp.status >= 500)) from exc
                if resp.status >= 400:
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
                    code = body["code"] if isinstance(body, dict) and "code" in body else f"HTTP_{resp.status}"
                    detail = body.get("detail", "") if isinstance(body, dict) and "code" in body else str(body)[:200]
                    unknown = writes and resp.status >= 500 and code not in REFUSED_BEFORE_ANYTHING
                    raise ApiError(resp.status, code, detail, retry_after, outcome_unknown=unknown)
                return body
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise ApiError(0, UNREACHABLE, f"{self.base_url}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiError(0, NO_ANSWER, f"{method} {self.base_url}{path}: no answer ({type(exc).__name__}); "
                                         "the outcome is unknown", outcome_unknown=writes) from exc

    # ---------------------------------------------------------------- transactions

    async def submit(self, tx: SignedTx, *, wait: bool = False, timeout_ms: int = 10_000) -> dict[str, Any]:
        """Submit one transaction; with wait=True, return once it is committed (or the wait ends).

        A full mempool (BUSY) is retried after the node's Retry-After (at least a growing
        backoff, at most MAX_BUSY_WAIT_S a wait), a bounded number of times. NO_ANSWER means the
        outcome is unknown: look the transaction up, or submit the same bytes again (safe).
        """
        params = {"wait": "true", "timeout_ms": str(timeout_ms)} if wait else {}
        for attempt in range(BUSY_RETRIES):
            try:
                return await self._request("POST", "/v1/transactions", data=tx.raw, params=params,
                                           headers={"Content-Type": "application/msgpack"})
            except ApiError as exc:
                if exc.code != "BUSY" or attempt == BUSY_RETRIES - 1:
                    raise
                await asyncio.sleep(min(MAX_BUSY_WAIT_S, max(exc.retry_after_s or 0.0, 0.2 * (attempt + 1))))
        raise AssertionError("unreachable")

    async def submit_batch(self, txs: list[SignedTx], *, wait: bool = False,
                           timeout_ms: int = 10_000) -> list[dict[str, Any]]:
        params = {"wait": "true", "timeout_ms": str(timeout_ms)} if wait else {}
        body = msgpack.packb([tx.raw for tx in txs], use_bin_type=True)
        result = await self._request("POST", "/v1/transactions/batch", data=body, params=params,
                                     headers={"Content-Type": "application/msgpack"})
        return result["results"]

    async def tx(self, tx_id: bytes | str) -> dict[str, Any]:
        tx_hex = tx_id.hex() if isinstance(tx_id, bytes) else tx_id
        return await self._request("GET", f"/v1/transactions/{tx_hex}")

    async def wait_committed(self, tx_id: bytes | str, timeout_s: float = 10) -> dict[str, Any]:
        """Poll until the transaction is committed or dropped, or the time is up."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            status = await self.tx(tx_id)
            if status["status"] in ("committed", "dropped"):
                return status
            if asyncio.get_running_loop().time() >= deadline:
                return status
            await asyncio.sleep(0.05)

    # ---------------------------------------------------------------- queries

    async def block(self, height: int | str = "latest", *, headers_only: bool = False) -> dict[str, Any]:
        params = {"headers_only": "true"} if headers_only else {}
        return await self._request("GET", f"/v1/blocks/{height}", params=params)

    async def account(self, address: str, *, linearizable: bool = False) -> dict[str, Any]:
        """Balances and participant record; linearizable=True reflects every acknowledged commit."""
        return await self._request("GET", f"/v1/accounts/{address}", params=_lin(linearizable))

    async def history(self, subject: str, *, limit: int = 100, after: str | None = None) -> dict[str, Any]:
        params: dict[str, str] = {"limit": str(limit)}
        if after:
            params["after"] = after
        kind = "accounts" if is_address(subject) else "securities"
        return await self._request("GET", f"/v1/{kind}/{subject}/history", params=params)

    async def security(self, isin: str, *, linearizable: bool = False) -> dict[str, Any]:
        return await self._request("GET", f"/v1/securities/{isin}", params=_lin(linearizable))

    async def holders(self, isin: str, *, limit: int = 1000, linearizable: bool = False) -> dict[str, Any]:
        return await self._request("GET", f"/v1/securities/{isin}/holders",
                                   params={"limit": str(limit), **_lin(linearizable)})

    async def participant(self, address: str) -> dict[str, Any]:
        return await self._request("GET", f"/v1/participants/{address}")

    async def query(self, contract: str, name: str, **params: Any) -> Any:
        return await self._request("GET", f"/v1/query/{contract}/{name}",
                                   params={k: str(v) for k, v in params.items()})

    async def status(self) -> dict[str, Any]:
        return await self._request("GET", "/v1/status")

    async def ready(self) -> bool:
        try:
            await self._request("GET", "/healthz/ready")
        except ApiError:
            return False
        return True

    async def metrics(self) -> str:
        return await self._request("GET", "/metrics")
