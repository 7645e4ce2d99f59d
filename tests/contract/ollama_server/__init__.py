"""An HTTP server that keeps Ollama's wire contract, for tests.

No Ollama binary can be installed on these machines, so llm_nb's Ollama provider is tested against
this server. Two things keep it from drifting away from the real one:

* Every JSON body and NDJSON line is validated, strictly and on the exact bytes about to be sent,
  with the official ``ollama`` package's pydantic types (``ChatResponse``, ``ListResponse`` ...).
  A failure, or a field the type would silently drop, is recorded in ``violations`` and answered
  with HTTP 500 (or an ``{"error"}`` line mid-stream), so drift breaks tests instead of hiding.
* Text, token counts and durations come from a real llama-server (``backend_url``), reached over
  its OpenAI-compatible API. A small deterministic generator stands in only when no backend is
  given, so unit tests run without the binary.

Behaviour follows ollama/ollama ``server/routes.go`` (ChatHandler, PullHandler, DeleteHandler,
EmbedHandler, ``streamResponse``, ``waitForStream``) as summarised in shared/PROTOCOLS.md.
The server listens on 127.0.0.1 only, on a free port, in a background thread.

Modules, bottom-up: ``wire`` (what the parts hand each other), ``contract`` (the check),
``catalogue`` (the models and how Ollama describes them), ``requests`` (reading a request's
fields as Ollama does), ``store`` (installed and loaded models; tags, ps, show, delete, pull),
``fake`` and ``backend`` (the model: deterministic, or a real llama-server), ``chat`` and
``embed`` (those routes), ``handler`` (HTTP and NDJSON streaming), ``server`` (all of it
together: ``OllamaContractServer``).
"""
