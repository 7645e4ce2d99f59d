"""Tests of llm_nb/_stats: a call's row and the recorder (test_recorder.py), the hardware
sampler and host facts (test_hardware.py), the store on disk (test_store_*.py: its schema,
durability, faults, reading, summary and a session's rows), and what the call log keeps:
replayable requests (test_replay.py), exports (test_export.py) and named conversations
(test_conversations.py)."""
