"""Generators that need more than the standard library: pure functions from SLOs to plain data.

``streams.render.dashboards`` builds the Grafana dashboards with grafana-foundation-sdk. Nothing here
does I/O: ``slo-stream generate`` (streams/cli.py) writes what these functions return.
"""
