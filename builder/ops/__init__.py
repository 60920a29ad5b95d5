"""Ops: the work a build step does (copy/add; run and meta live beside them)."""
