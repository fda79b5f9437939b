"""Turn a folder of articles into stored chunks: load, chunk with exact offsets, embed, store in Chroma.

    from ingest import sync, ChunkStore, get_embedder
    report = sync(Path("data/corpus"), ChunkStore("store/", "minilm"), get_embedder("minilm"))
"""

from ingest.chunking import Chunk, chunk_document, sentence_spans
from ingest.embed import Embedder, FakeEmbedder, get_embedder
from ingest.errors import RagError, SetupError, UserError
from ingest.loaders import Document, load_document
from ingest.pipeline import IngestReport, sync
from ingest.store import ChunkStore, DocRecord

__all__ = ["Chunk", "ChunkStore", "DocRecord", "Document", "Embedder", "FakeEmbedder", "IngestReport",
           "RagError", "SetupError", "UserError", "chunk_document", "get_embedder", "load_document",
           "sentence_spans", "sync"]
