"""Instrument I/O: the in-memory data model and readers/writers per instrument."""
