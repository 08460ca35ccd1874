"""The Patronus operator: configuration and wiring of the controllers onto the runtime."""
