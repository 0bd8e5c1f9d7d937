"""Generators: pure functions from SLOs (:class:`streams.core.model.Slo`) to plain data, and the
serialisers that turn that data into the text of the generated files.

- :mod:`~streams.render.prometheus`: recording and burn-rate alerting rules;
- :mod:`~streams.render.alertmanager`: the Alertmanager config (pages and tickets to PagerDuty);
- :mod:`~streams.render.prometheusrule`: those rules as a prometheus-operator PrometheusRule;
- :mod:`~streams.render.dashboards` (on :mod:`~streams.render.grafana`, grafana-foundation-sdk): the
  Grafana dashboards;
- :mod:`~streams.render.promql`: the names, checks and PromQL literals they share;
- :mod:`~streams.render.writer`: data -> text (do-not-edit headers, YAML, JSON);
- :mod:`~streams.render.outputs`: every file ``slo-stream generate`` writes, name -> text.

Nothing here does I/O: ``slo-stream generate`` writes what :func:`streams.render.outputs.outputs`
returns through :mod:`streams.adapters.generated`.
"""
