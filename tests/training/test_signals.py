"""SIGINT/SIGTERM as stop requests, and a sweep member that gets the same signal twice at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Run in a process of its own: a signal taken as a second request aborts the process.
SCRIPT = textwrap.dedent(
    """
    import signal
    from robustai.training.signals import (
        Terminated, one_request_per_signal, raise_on_sigterm, stop_on_signals,
    )

    with one_request_per_signal(30.0):
        with stop_on_signals() as stop:
            signal.raise_signal(signal.SIGTERM)  # the member's own copy
            signal.raise_signal(signal.SIGTERM)  # the one its sweep's launcher forwarded
            assert stop.is_set() and stop.signum == signal.SIGTERM
        print("loop: one request")
        raised = 0
        for _ in range(2):
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                raised += 1
        with raise_on_sigterm():
            for _ in range(2):
                try:
                    signal.raise_signal(signal.SIGTERM)
                except Terminated:
                    raised += 1
        print(f"outside the loop: raised {raised}")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    print("restored")
    """
)


def test_a_sweep_member_takes_the_same_signal_twice_at_once_as_one_request() -> None:
    """Ctrl-C in a terminal, or a scheduler that signals every process of a job, reaches a
    joblib sweep's member directly and again through the launching process, which forwards it:
    that second copy aborted the member instead of letting it save its checkpoint."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # The SIGTERM of the first loop counts as acted on: the outside-the-loop SIGTERMs repeat it.
    assert done.stdout.split("\n")[:3] == [
        "loop: one request",
        "outside the loop: raised 1",
        "restored",
    ]


def test_a_single_run_still_aborts_on_a_second_signal() -> None:
    code = textwrap.dedent(
        """
        import signal
        from robustai.training.signals import stop_on_signals

        with stop_on_signals() as stop:
            signal.raise_signal(signal.SIGTERM)
            print("stopping", flush=True)
            signal.raise_signal(signal.SIGTERM)
            print("not aborted")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == -15 and done.stdout == "stopping\n"
