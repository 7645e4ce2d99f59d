"""Tests of llm_nb/_stats: a call's row and its srv_* columns (test_row.py), the recorder
(test_recorder.py), pricing (test_pricing.py), the frames: summary, build label, CSV
(test_frames.py), the hardware sampler and host facts (test_hardware.py), the store on disk
(test_store_*.py: its schema, writes, durability, faults, reading, summary and a session's
rows), and what the call log keeps:
replayable requests (test_replay.py), exports (test_export.py) and named conversations
(test_conversations.py)."""
