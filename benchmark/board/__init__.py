"""Leaderboards: store (append-only results per board version), aggregate, compare, render."""
