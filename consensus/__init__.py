"""Keiretsu consensus: Raft as a deterministic sans-IO core (raft.py), its durable log
(storage.py) and a thin asyncio driver (driver.py); the ledger sees only opaque ordered bytes.
"""
