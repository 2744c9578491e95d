"""What runs on the server: ServerApp, strategy, aggregation rules, adversary stage, probes."""
