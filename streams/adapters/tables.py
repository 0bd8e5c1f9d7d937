"""The worker's Faust tables: the engine's state store and the per-service change state."""

from __future__ import annotations

from typing import Any

import faust

from streams.settings import Settings


class StateTable(faust.Table):  # type: ignore[misc]
    """A table whose writes go to the changelog partition of the source partition being processed.

    Faust picks the changelog partition from the "current event"; our agents work on batches
    grouped by partition, so they name the partition explicitly around their writes.
    """

    write_partition: int | None = None

    def partition_for_key(self, key: Any) -> int | None:
        if self.write_partition is None:
            raise RuntimeError("state table written outside a partition batch")
        return self.write_partition


def state_table(app: faust.App, settings: Settings, *, name: str, help: str) -> StateTable:
    """A :class:`StateTable` of str keys (JSON in the changelog) and raw bytes values, one changelog
    partition per source partition; added to the app."""
    table = StateTable(app, name=name, default=None, beacon=app.tables.beacon, partitions=settings.partitions,
                       help=help)
    # Set before the changelog topic is first built from them.
    table.key_serializer = "json"
    table.value_serializer = "raw"
    app.tables.add(table)
    return table
