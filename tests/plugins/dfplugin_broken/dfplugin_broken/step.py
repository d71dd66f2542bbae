"""Fails to import on purpose (a missing dependency)."""
import drizzleflow_dependency_that_does_not_exist  # noqa: F401
