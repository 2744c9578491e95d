"""Orchestration: the runner, the runtimes, sweeps (the CLI is :mod:`fedsim.cli`).

The only layer that imports both sides: it builds the ClientApp (``clients/``) and the
ServerApp (``server/``) for a scenario and drives them on a runtime (``inline``, ``ray``,
``vectorized``).
"""
