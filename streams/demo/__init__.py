"""Tooling to show and test the product; not part of the product's data path.

- :mod:`~streams.demo.scenario`: scenario files (``kind: Scenario``, docs/scenarios.md): parsing and
  the deterministic timeline of a migration story (pure);
- :mod:`~streams.demo.player`: plays a timeline into Kafka (``slo-stream replay`` and the demo);
- :mod:`~streams.demo.story`: ``slo-stream demo``, the bundled story (``scenarios/migration.yaml``)
  played through the whole product and narrated;
- :mod:`~streams.demo.pagerduty_receiver`: a local PagerDuty Events API v2 receiver (the demo, the tests);
- :mod:`~streams.demo.traffic`: a small deterministic traffic generator (the tests, the benchmarks).

It may import anything in :mod:`streams`; nothing in ``streams.core``, ``streams.adapters``,
``streams.render``, ``streams.app`` or ``streams.settings`` may import it (an import-linter contract
in pyproject.toml). Only the CLI's ``demo`` and ``replay`` commands reach it, when they run.
"""
