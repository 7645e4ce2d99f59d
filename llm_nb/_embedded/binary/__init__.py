"""The llama-server program: the prebuilt one from the xllamacpp wheel (``prebuilt``), the
native one built from source (``build``), and which of them runs (``program``)."""
