"""Errors of local deployment that a user can cause (a process that does not start, a bad option)."""

from __future__ import annotations

from ..errors import NonnError


class DeployError(NonnError):
    """A node or the gateway could not be started, or a deployment option is invalid."""
