"""fedsim core: scenario schema, data, models, local training, runtimes, results and the CLI."""

import os as _os

# Flower reads this when first imported: no usage events sent from simulations (users can
# still set FLWR_TELEMETRY_ENABLED=1).
_os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
