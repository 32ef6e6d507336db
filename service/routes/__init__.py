"""HTTP routers: thin, they validate, call the engine, and shape the response."""
