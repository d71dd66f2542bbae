"""Built-in recipe steps and the domain code under them (instrument I/O, WCS, drizzle core)."""
