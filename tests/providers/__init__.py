"""Tests of llm_nb/providers: what every provider does (test_base.py), each provider's own wire
(test_openai.py, test_llamacpp.py, test_ollama.py), the dialects of the OpenAI wire, and real
servers' recorded answers read right."""
