"""slo-stream: streaming SLO burn-rate alerts, rollout correlation and rollout gates."""

__version__ = "0.1.0"
