"""The running server: ``LlamaServer`` (one llama-server child process), the servers alive in
this process (``live``) and the default one (``default``)."""
