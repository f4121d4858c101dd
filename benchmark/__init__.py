"""MGCA chest X-ray downstream benchmark: data, backbones, runner, scoring and leaderboard."""

__version__ = "0.1.0"
