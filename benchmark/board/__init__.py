"""Leaderboards: protocol (a board's protocol.json), store (append-only results per board version), aggregate,
compare, render. Nothing here imports a task: a board pins each task's scorer, and a record names its own."""
