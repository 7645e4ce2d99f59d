"""Wire level: incremental stream decoders, the HTTP transport, retries and error mapping."""
