"""Tests of llm_nb/_wire and of what a call does on the wire: decoders, errors, retries, the
HTTP client, timeouts of a broken or slow server, connection lifetime, concurrent streams."""
