"""How the worker cuts a batch into parts and when it gives the event loop a turn (streams.adapters.pipeline:
parts, Pacer)."""

from __future__ import annotations

import asyncio

from streams.adapters.pipeline import Pacer, parts


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


def test_the_pacer_gives_a_turn_only_once_the_hot_path_has_held_the_loop_for_its_time() -> None:
    async def main() -> tuple[list[bool], list[str], list[bool], list[str], int]:
        ran: list[str] = []
        eager, patient = Pacer(turn_s=0.0), Pacer(turn_s=3600.0)
        asyncio.get_running_loop().call_soon(ran.append, "waiting")  # a callback waiting for the loop
        held = [await patient.turn_if_due() for _ in range(3)]
        before = list(ran)  # the patient pacer never let go: nothing else ran
        given = [await eager.turn_if_due() for _ in range(3)]
        return held, before, given, ran, eager.turns

    held, before, given, after, turns = asyncio.run(main())
    assert held == [False, False, False] and before == []
    assert given == [True, True, True] and after == ["waiting"] and turns == 3
