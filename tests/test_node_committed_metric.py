"""The node's committed-transactions metric, counted per block by contract and result."""

from __future__ import annotations

from types import SimpleNamespace

from keiretsu_node.metrics import NodeMetrics
from keiretsu_node.node import Node
from ledger.reasons import Reason


def test_the_committed_metric_counts_each_block_by_contract_and_result() -> None:
    def tx(contract: str) -> SimpleNamespace:
        return SimpleNamespace(body=SimpleNamespace(contract=contract))

    reasons = [Reason.OK, Reason.OK, Reason.INSUFFICIENT_FREE_BALANCE, Reason.OK]
    applied = SimpleNamespace(txs=[tx("cash"), tx("cash"), tx("cash"), tx("market")],
                              block=SimpleNamespace(receipts=[SimpleNamespace(reason=r) for r in reasons]))
    node = SimpleNamespace(metrics=NodeMetrics())
    Node._count_committed(node, applied)  # type: ignore[arg-type]
    Node._count_committed(node, applied)  # type: ignore[arg-type]
    value = node.metrics.registry.get_sample_value
    assert value("keiretsu_committed_transactions_total", {"contract": "cash", "result": "valid"}) == 4
    assert value("keiretsu_committed_transactions_total", {"contract": "cash", "result": "invalid"}) == 2
    assert value("keiretsu_committed_transactions_total", {"contract": "market", "result": "valid"}) == 2
    assert value("keiretsu_committed_transactions_total", {"contract": "market", "result": "invalid"}) is None
