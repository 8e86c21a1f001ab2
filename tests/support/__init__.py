"""Helpers tests use to make media, serve it and measure what assembler wrote."""
