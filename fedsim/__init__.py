"""fedsim core: scenario schema, data, models, local training, runtimes, results and the CLI."""
