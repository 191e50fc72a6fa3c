"""Keiretsu contracts package."""
