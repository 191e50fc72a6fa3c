"""Keiretsu consensus package."""
