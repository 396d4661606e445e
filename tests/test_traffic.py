"""The e2e helpers' own measures, on made-up probe records."""

from __future__ import annotations

import itertools

import pytest
from traffic import Answers


def answers(count: int, lost: set[int], held: range = range(0)) -> Answers:
    """A probe every 5 ms answered 1 ms later, but the ``lost`` ones; the
    ``held`` ones all arrive together 40 ms after the last of them was sent
    (a prober kept off the CPU)."""
    sent = [i * 0.005 for i in range(count)]
    late = sent[held[-1]] + 0.040 if held else 0.0
    got = [(i, late if i in held else t + 0.001, "h2") for i, t in enumerate(sent)]
    return Answers(sent, sorted((g for g in got if g[0] not in lost), key=lambda g: g[1]))


def test_longest_loss_spans_a_run_of_unanswered_probes() -> None:
    assert answers(100, set()).longest_loss() == 0.0
    assert answers(100, {10}).longest_loss() == pytest.approx(0.010)
    assert answers(100, {10, 11, 12, 40}).longest_loss() == pytest.approx(0.020)
    assert answers(100, set(range(20, 30))).longest_loss() == pytest.approx(0.055)


def test_answers_held_back_are_no_loss() -> None:
    held = answers(100, set(), held=range(20, 30))
    assert held.longest_loss() == 0.0
    times = [t for _, t, _ in held.got]
    assert max(b - a for a, b in itertools.pairwise(times)) > 0.040
