"""WireGuard helpers shared by the operator and the agent: key generation and checks, no I/O."""
