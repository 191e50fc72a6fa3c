"""Keiretsu keiretsu_node package."""
