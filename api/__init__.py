"""The HTTP edge: FastAPI app factory, routes by resource, auth roles."""
