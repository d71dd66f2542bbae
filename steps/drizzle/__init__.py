"""The Cython drizzle/blot core, pixel maps and the drizzle steps."""
