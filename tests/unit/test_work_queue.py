"""controller/queue.py: one pass at a time per resource, triggers coalescing into one more pass, backoff retries."""

from __future__ import annotations

import threading
import time

from mmft_operator.controller.queue import WorkQueue
from mmft_operator.kube import ApiError

KEY = ("FineTuneJob", "ml", "a")


def test_triggers_during_a_pass_coalesce_into_one_more_pass_that_verifies_if_any_asked() -> None:
    calls: list[tuple] = []
    inside, release = threading.Event(), threading.Event()

    def work(key, verify, retrying):  # noqa: ANN001
        calls.append((key, verify, retrying))
        if len(calls) == 1:
            inside.set()
            assert release.wait(10)

    queue = WorkQueue(work)
    first = threading.Thread(target=queue.submit, args=(KEY,))
    first.start()
    assert inside.wait(10)
    for verify in (False, True, False):
        queue.submit(KEY, verify)  # returns at once: the running pass takes it over
    queue.submit(("FineTuneJob", "ml", "other"))  # another resource runs on its own
    release.set()
    first.join(10)
    assert [c for c in calls if c[0] == KEY] == [(KEY, False, False), (KEY, True, False)]
    assert (("FineTuneJob", "ml", "other"), False, False) in calls


def test_failures_back_off_exponentially_up_to_30_seconds_or_longer_if_the_server_asks() -> None:
    queue = WorkQueue(lambda *_: None)
    delays = []
    for attempt in range(1, 8):
        queue._failures[KEY] = attempt
        delays.append(queue.backoff_seconds(KEY, RuntimeError("x")))
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    queue._failures[KEY] = 1
    assert queue.backoff_seconds(KEY, ApiError(429, "TooManyRequests", "slow down", retry_after=45)) == 45


def test_a_failed_pass_is_retried_as_retrying_and_success_clears_it() -> None:
    calls: list[bool] = []
    done = threading.Event()

    def work(key, verify, retrying):  # noqa: ANN001
        calls.append(retrying)
        if len(calls) == 1:
            raise ApiError(500, "InternalError", "etcd timeout")
        done.set()

    queue = WorkQueue(work)
    queue.submit(KEY)
    assert done.wait(10)  # the first retry after 1 s
    assert calls == [False, True]
    deadline = time.monotonic() + 10
    while KEY in queue._failures and time.monotonic() < deadline:  # cleared once the retry's pass returns
        time.sleep(0.01)
    assert KEY not in queue._failures


def test_a_requeue_runs_the_key_once_its_time_comes_and_an_earlier_time_replaces_a_later_one() -> None:
    ran: dict = {}
    done = threading.Event()

    def work(key, verify, retrying):  # noqa: ANN001
        ran.setdefault(key, []).append(time.monotonic())
        if len(ran) == 2:
            done.set()

    queue = WorkQueue(work)
    asked = time.monotonic()
    queue.submit_after(KEY, 3600)
    queue.submit_after(KEY, 0.3)  # earlier: replaces the hour
    queue.submit_after(KEY, 1800)  # later than the one waiting: the pass at 0.3 s plans again
    queue.submit_after(("FineTuneJob", "ml", "past"), -5)  # already due: at once
    assert done.wait(30), ran
    assert ran[KEY][0] - asked >= 0.3
    time.sleep(0.5)
    assert len(ran[KEY]) == 1 and len(ran[("FineTuneJob", "ml", "past")]) == 1
    assert queue._delayed.pending() == {}


def test_a_later_submission_runs_once_at_its_time_and_an_earlier_time_for_the_same_key_wins() -> None:
    ran: list[tuple[tuple, float]] = []
    done = threading.Event()

    def work(key, verify, retrying):  # noqa: ANN001
        ran.append((key, time.monotonic()))
        done.set()

    queue = WorkQueue(work)
    asked = time.monotonic()
    queue.submit_after(KEY, 30.0)
    queue.submit_after(KEY, 0.2)  # the grace of a newer verdict runs out sooner
    queue.submit_after(KEY, 5.0)  # a later time than one already due changes nothing
    assert done.wait(10), "the later submission never ran"
    time.sleep(0.5)
    assert [key for key, _ in ran] == [KEY], "one pass for the key, at the earliest time asked"
    assert ran[0][1] - asked >= 0.2
