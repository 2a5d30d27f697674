"""The application core (the processor) and the transports that feed it."""
