"""`newsdesk run`'s stop signals: the first stops in order, only a second hurries the stop."""

from __future__ import annotations

import signal

import pytest

from newsdesk.local import FIRST_STOP_NOTICE, QUICK_STOP_NOTICE, Stop


def test_a_first_signal_stops_in_order_and_a_second_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    stop = Stop()
    stop.on_signal(signal.SIGINT, None)
    assert (stop.requested, stop.underway, stop.at_once) == (True, True, False)
    stop.on_signal(signal.SIGINT, None)
    stop.on_signal(signal.SIGTERM, None)
    assert stop.at_once
    assert capfd.readouterr().err.splitlines() == [FIRST_STOP_NOTICE, QUICK_STOP_NOTICE]


def test_a_first_signal_after_a_child_exited_does_not_cut_the_stop_short(
    capfd: pytest.CaptureFixture[str],
) -> None:
    stop = Stop()
    stop.begin()  # a child exited: the service is already stopping, in order
    stop.on_signal(signal.SIGTERM, None)  # a supervisor's one SIGTERM, or the user's first Ctrl-C
    assert not stop.at_once
    assert not stop.requested  # the exit status still says a child failed
    stop.on_signal(signal.SIGINT, None)
    assert stop.at_once
    assert capfd.readouterr().err.splitlines() == [FIRST_STOP_NOTICE, QUICK_STOP_NOTICE]
