"""Fault injection on real node processes: namespaces, a faulty proxy per link, seeded schedules.

Part of tests/. Jepsen-style: clients record what was acknowledged, faults run from a seed,
and after healing every node is checked for lost, duplicated or divergent data.
"""
