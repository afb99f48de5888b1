"""The gang launcher's exit codes (mmft_trainer.gang), which the Job's podFailurePolicy acts on. Real torchrun
agents and workers: tests/ml/test_trainer_gang_torchrun.py."""

from __future__ import annotations

import signal

from mmft_operator.contracts.exit_codes import CONFIG_INVALID, GANG_RESTART, OUT_OF_MEMORY
from mmft_trainer.gang import OTHER_FAILURE, exit_code_for_workers
from mmft_trainer.preemption import PREEMPTED_EXIT_CODE


def test_workers_stopped_for_the_gang_ask_for_a_gang_restart():
    assert exit_code_for_workers([PREEMPTED_EXIT_CODE, PREEMPTED_EXIT_CODE]) == GANG_RESTART
    assert exit_code_for_workers([GANG_RESTART]) == GANG_RESTART


def test_a_workers_own_failure_keeps_its_code_or_spends_a_retry():
    assert exit_code_for_workers([PREEMPTED_EXIT_CODE, CONFIG_INVALID]) == CONFIG_INVALID
    assert exit_code_for_workers([OUT_OF_MEMORY]) == OUT_OF_MEMORY
    assert exit_code_for_workers([PREEMPTED_EXIT_CODE, -signal.SIGABRT]) == OTHER_FAILURE
    assert exit_code_for_workers([1]) == OTHER_FAILURE
