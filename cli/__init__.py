"""Keiretsu cli package."""
