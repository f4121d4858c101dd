"""MGCA chest X-ray downstream benchmark: data, backbones, the evaluation grid, scoring and leaderboard."""

__version__ = "0.1.0"
