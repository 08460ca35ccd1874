"""What every reconciler uses: the shared opening, no-op-aware apply, conditions, and the parse memo."""
