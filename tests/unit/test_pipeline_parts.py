"""How the worker cuts a batch into parts between event-loop turns (streams.adapters.pipeline.parts)."""

from __future__ import annotations

from streams.adapters.pipeline import parts


def msgs(*sizes: int) -> list[tuple[bytes | None, bytes | None, int]]:
    return [(b"k", b"x" * n, i) for i, n in enumerate(sizes)]


def test_parts_keep_order_and_every_message_and_stay_under_the_budget_unless_one_message_is_larger() -> None:
    given = msgs(10, 20, 30, 100, 5, 5, 0, 90)
    got = parts(given, 50)
    assert [m for p in got for m in p] == given
    assert [[m[2] for m in p] for p in got] == [[0, 1], [2], [3], [4, 5, 6], [7]]
    assert all(sum(len(m[1] or b"") for m in p) <= 50 or len(p) == 1 for p in got)


def test_a_batch_under_the_budget_is_one_part_and_an_empty_batch_one_empty_part() -> None:
    assert parts(msgs(1, 2, 3), 1000) == [msgs(1, 2, 3)]
    assert parts([], 10) == [[]]
    assert parts([(b"k", None, 0)], 10) == [[(b"k", None, 0)]]
