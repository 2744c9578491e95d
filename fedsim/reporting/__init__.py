"""Reports and figures of runs and sweeps.

One run's report (:mod:`~fedsim.reporting.run_report`) and a sweep's
(:mod:`~fedsim.reporting.sweep_report`, with its defence tables in
:mod:`~fedsim.reporting.sweep_defences` and table helpers in :mod:`~fedsim.reporting.tables`);
the figures both draw (:mod:`~fedsim.reporting.plots`).
"""
