"""Test helpers for projects that keep their spiking models spike-driven in CI::

    from spikec.testing import assert_spike_driven

    def test_model_is_spike_driven():
        assert_spike_driven(MyModel(), torch.rand(1, 3, 32, 32))
"""

from __future__ import annotations

from spikec.diagnostics import Report

__all__ = ["assert_spike_driven"]


def assert_spike_driven(model, example_input, *, strict: bool = False, fail_on: str = "error", observe: int = 0,
                        input_layout: str = "B") -> Report:
    """Fail with the text diagnostics unless ``model`` passes ``spikec verify --spike-driven``.

    ``strict`` and ``fail_on`` ("error" or "warning") mean what the CLI options do; ``observe`` > 0 also
    runs that many random inputs and fails if a value falls outside its static domain (a spikec bug).
    Returns the report for further checks.
    """
    __tracebackhide__ = True  # pytest shows the caller's line, not this helper's
    from spikec.api import verify

    report = verify(model, example_input, strict=strict, observe=observe, input_layout=input_layout)
    if report.exit_code(fail_on):
        raise AssertionError(f"{report.model} is not spike-driven:\n{report.to_text()}")
    if report.disagreements:
        raise AssertionError(f"observed values outside their static domain (a spikec bug):\n{report.to_text()}")
    return report
