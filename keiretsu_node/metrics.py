"""Prometheus metrics of one node, in a registry of its own (several nodes may share a process).

Part of keiretsu_node/. prometheus_client does the exposition format; we name what to count.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

APPLY_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.block_height = Gauge("keiretsu_block_height", "Height of the last applied block", registry=r)
        self.raft_term = Gauge("keiretsu_raft_term", "Current Raft term", registry=r)
        self.is_leader = Gauge("keiretsu_is_leader", "1 if this node leads the cluster", registry=r)
        self.leader_changes = Counter("keiretsu_leader_changes", "Changes of leader seen by this node", registry=r)
        self.mempool_txs = Gauge("keiretsu_mempool_txs", "Transactions waiting in the mempool", registry=r)
        self.mempool_bytes = Gauge("keiretsu_mempool_bytes", "Bytes waiting in the mempool", registry=r)
        self.rejected = Counter("keiretsu_rejected_transactions", "Submissions refused at admission",
                                ["reason"], registry=r)
        self.committed = Counter("keiretsu_committed_transactions", "Transactions committed in blocks",
                                 ["contract", "result"], registry=r)
        self.dropped = Counter("keiretsu_dropped_transactions", "Ordered but left out of a block",
                               ["reason"], registry=r)
        self.block_apply = Histogram("keiretsu_block_apply_seconds", "Time to execute and persist a block",
                                     buckets=APPLY_SECONDS_BUCKETS, registry=r)
        self.block_txs = Histogram("keiretsu_block_transactions", "Transactions per block",
                                   buckets=(0, 1, 10, 100, 500, 1000, 2000, 5000, 10000), registry=r)
        self.peers = Gauge("keiretsu_peers_connected", "Peers with a live authenticated link", registry=r)
        self.block_time_ahead = Gauge("keiretsu_block_time_ahead_seconds",
                                      "Last applied block's time minus this node's clock (a clock is wrong if large)",
                                      registry=r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
