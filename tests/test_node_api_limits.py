"""The HTTP API at its edges: numbers past what the ledger can hold, bodies nested past the
parser, failures nobody foresaw, and event subscribers that stop reading or go away."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import aiohttp
import pytest

from keiretsu_node import api, events
from keiretsu_node.client import KeyPair
from keiretsu_node.config import ApiConfig
from keiretsu_node.events import EventHub, NodeEvent
from tests.test_node_api import admit, assert_problem, get, post_tx, solo_node

MAX_SUBSCRIBERS = 1
BEYOND_U64 = str(2**64)


@pytest.fixture
async def node(tmp_path):
    async with solo_node(tmp_path, api=ApiConfig(max_event_subscribers=MAX_SUBSCRIBERS)) as n:
        yield n


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


async def test_numbers_past_what_a_key_can_hold_are_refused_and_not_a_crash(node, http) -> None:
    address = node.operator.address
    assert_problem(*(await get(http, node, f"/v1/blocks/{BEYOND_U64}")), 404, "NOT_FOUND")
    assert_problem(*(await get(http, node, "/v1/blocks/" + "9" * 40)), 404, "NOT_FOUND")
    for after in (f"{BEYOND_U64}-0-0", "1-2-0", "1-255-0", f"1-0-{2**32}", "-1-0-0"):
        assert_problem(*(await get(http, node, f"/v1/accounts/{address}/history?after={after}")), 400, "BAD_REQUEST")
    status, page = await get(http, node, f"/v1/accounts/{address}/history?after={2**64 - 1}-1-{2**32 - 1}")
    assert status == 200, page  # the largest cursor there can be is a cursor
    for path in (f"/v1/query/negotiated/proposal?proposal_id={BEYOND_U64}",
                 f"/v1/query/market/daily_bars?isin=XS0000000001&currency=EUR&first_day={BEYOND_U64}"
                 f"&last_day={BEYOND_U64}"):
        assert_problem(*(await get(http, node, path)), 400, "BAD_ARGUMENTS")


async def test_a_contract_query_can_be_linearizable(node, http) -> None:
    key = KeyPair.generate()
    await post_tx(http, node, admit(node, key).raw, wait="true")
    status, body = await get(http, node, f"/v1/query/queries/participant?address={key.address}&linearizable=true")
    assert status == 200 and body["participant"]["roles"] == ["investor"], body


@pytest.mark.parametrize("path", ["/v1/transactions", "/v1/transactions/batch"])
async def test_json_nested_past_the_parser_is_malformed(node, http, path) -> None:
    body = "[" * 100_000 + "]" * 100_000
    async with http.post(node.url + path, data=body, headers={"Content-Type": "application/json"}) as resp:
        assert_problem(resp.status, await resp.json(), 400, "MALFORMED")
    assert len(node.mempool) == 0


async def test_an_unforeseen_failure_answers_problem_json(node, http, monkeypatch, caplog) -> None:
    def broken(tx_id: bytes) -> dict:
        raise RuntimeError("a defect")

    monkeypatch.setattr(node, "tx_status", broken)
    async with http.get(f"{node.url}/v1/transactions/{'00' * 32}") as resp:
        assert resp.content_type == "application/problem+json"
        assert_problem(resp.status, await resp.json(), 500, "INTERNAL")
    assert "a defect" in caplog.text  # the traceback goes to the node's log, not to the client


async def test_an_event_stream_holds_its_slot_until_its_connection_ends(node, http) -> None:
    first = await http.get(f"{node.url}/v1/events")
    assert first.status == 200
    assert_problem(*(await get(http, node, "/v1/events")), 503, "BUSY")
    first.close()  # the subscriber goes away; the node finds out at its next write
    await post_tx(http, node, admit(node, KeyPair.generate()).raw, wait="true")
    for _ in range(200):
        if node.events.connections == 0:
            break
        await asyncio.sleep(0.01)
    assert node.events.connections == 0
    async with http.get(f"{node.url}/v1/events") as second:
        assert second.status == 200


def test_an_overflowed_subscriber_stops_receiving_but_keeps_its_slot_until_released() -> None:
    hub = EventHub(max_subscribers=1)
    sub = hub.subscribe(frozenset())
    assert sub is not None
    for height in range(events.SUBSCRIBER_QUEUE_EVENTS + 1):
        hub.publish_block(NodeEvent("block", {"height": height}), [])
    assert sub.closed and hub.dropped_subscribers == 1
    assert sub.queue.qsize() == events.SUBSCRIBER_QUEUE_EVENTS
    last = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())][-1]
    assert last.kind == "overflow"
    assert hub.subscribe(frozenset()) is None  # its connection may still be open: the slot is taken
    hub.release(sub)
    hub.release(sub)  # a second release frees nothing more
    assert hub.connections == 0
    assert hub.subscribe(frozenset()) is not None


async def test_a_subscriber_that_takes_no_bytes_is_cut_off(monkeypatch) -> None:
    monkeypatch.setattr(api, "SSE_WRITE_TIMEOUT_S", 0.05)
    aborted = []

    class NeverDrains:
        async def write(self, chunk: bytes) -> None:
            await asyncio.Event().wait()  # the client's window stays shut

    request = SimpleNamespace(transport=SimpleNamespace(abort=lambda: aborted.append(True)))
    assert await asyncio.wait_for(api._sse_write(request, NeverDrains(), b"event: block\n\n"), 5) is False
    assert aborted == [True]
