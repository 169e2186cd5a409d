"""Phase names, one place. Every backend reports its runs in these terms."""

STARTUP = "startup"
TRANSFER_IN = "transfer_in"
COMPUTE = "compute"
TRANSFER_OUT = "transfer_out"

# The per-run phases, in the order they happen; startup is reported once per backend session.
RUN_PHASES = (TRANSFER_IN, COMPUTE, TRANSFER_OUT)
