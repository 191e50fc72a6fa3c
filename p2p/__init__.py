"""Keiretsu p2p package."""
