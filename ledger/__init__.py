"""Keiretsu ledger: canonical encoding, keys and signed transactions, blocks, the LevelDB store,
the executor that applies committed batches, and the read-only query side (ledger/query.py).

It knows nothing of Raft, sockets or HTTP; docs/PROTOCOL.md and docs/STORAGE.md describe its bytes.
"""
