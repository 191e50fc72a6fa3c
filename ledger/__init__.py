"""Keiretsu ledger package."""
