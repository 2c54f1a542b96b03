"""spikec's exception tree. The CLI maps each branch to an exit code (docs/design.md, §8).

``SpikecError`` carries an optional location so that every message about the user's model can name the
op, the module path and the source line, like a compiler's diagnostic::

    model.py:88: error: conv2d in block.0.attn.q_conv: weight expects 384 input channels, got 256
"""

from __future__ import annotations

__all__ = ["SpikecError", "InputError", "UnsupportedError", "VerifyError", "PassError", "LoweringError", "IRError"]


class SpikecError(Exception):
    """Base of every error spikec raises on purpose. ``where`` is a ``file:line`` or module path prefix."""

    exit_code = 3

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InputError(SpikecError):
    """The user's input is wrong: a missing or corrupt file, a model that does not fit, an unsupported op."""

    exit_code = 2


class UnsupportedError(InputError):
    """The model uses something spikec does not support yet (a known limitation, e.g. a soft reset or
    average pooling): the user's model cannot be compiled as it is, so exit 2 with what to do, not an
    internal error."""


class IRError(SpikecError):
    """An IR graph or its text/JSON form breaks the IR's rules (a parse error, a failed verifier)."""

    exit_code = 2


class VerifyError(SpikecError):
    """A check found problems in the model (exit code 1)."""

    exit_code = 1


class PassError(SpikecError):
    """A pass could not run or broke its postcondition; the message starts with the pass name."""

    exit_code = 3


class LoweringError(SpikecError):
    """A backend cannot map a node of the IR to its target."""

    exit_code = 2
