"""Answer questions about a folder of news articles with a local model, citing a checked passage for every claim.

    from rag import ask
    a = ask("How far did bitcoin fall after the leak?")
    a.text, a.citations, a.abstained, a.sentences, a.timings

Importing this package loads no model and touches no network; the first `ask()` does the work.
"""

from ingest.errors import RagError, SetupError, UserError
from rag.answer import NOT_FOUND, Answer, Citation, Pipeline, Sentence, ask, pipeline, stream
from rag.settings import Settings

__all__ = ["NOT_FOUND", "Answer", "Citation", "Pipeline", "RagError", "Sentence", "Settings", "SetupError",
           "UserError", "ask", "pipeline", "stream"]
