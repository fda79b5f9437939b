"""llama-index interop: our hybrid retriever as a llama-index retriever, our verified answering as a query engine.

    from rag import pipeline
    from rag.llamaindex import HybridRetriever, VerifiedQueryEngine

    retriever = HybridRetriever(pipeline())        # for RetrieverQueryEngine, chat engines, any llama-index component
    engine = VerifiedQueryEngine(pipeline=pipeline())
    r = engine.query("How far did bitcoin fall after the leak?")
    r.response, r.source_nodes, r.metadata["rag"]  # verified text, cited passages, the rag extras (rag/extras.py)

Every node is an exact span of its document: `document_text[node.start_char_idx:node.end_char_idx] == node.text`,
with `doc_id` and `title` in its metadata and the document as its source (`node.ref_doc_id`). Only the query
engine verifies: a stock llama-index engine over `HybridRetriever` gets our passages but writes its own unchecked
answer. Left out: llama-index indexes, node parsers and synthesizers (the README says why) and true async (the
async methods run the sync ones). `import rag` does not import this module, so llama-index loads only when used.
"""

from __future__ import annotations

from llama_index.core.base.response.schema import Response
from llama_index.core.callbacks import CallbackManager
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode

from rag.answer import Citation, Pipeline, clean_question
from rag.extras import Passage, RagExtras
from rag.retrieve import Source


def node_of(passage: Citation | Source) -> TextNode:
    """A passage as a llama-index node whose offsets point into its document's text."""
    p = Passage.of(passage)
    return TextNode(
        id_=f"{p.doc_id}:{p.char_start}-{p.char_end}",
        text=p.quote,
        start_char_idx=p.char_start,
        end_char_idx=p.char_end,
        metadata={"doc_id": p.doc_id, "title": p.title, "number": p.number, "page": p.page},
        # A synthesizer's prompt shows the title with each passage, not our ids and numbers.
        excluded_llm_metadata_keys=["doc_id", "number", "page"],
        excluded_embed_metadata_keys=["doc_id", "number", "page"],
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=p.doc_id)},
    )


class HybridRetriever(BaseRetriever):
    """`Pipeline.retrieve` (dense + BM25, fused, sentence windows) as a llama-index retriever.

    `k` asks for another number of passages than the pipeline's prompt takes (`Settings.max_sources`).
    """

    def __init__(self, pipeline: Pipeline, k: int | None = None, callback_manager: CallbackManager | None = None):
        super().__init__(callback_manager=callback_manager)
        self.pipeline = pipeline
        self.k = k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        question = clean_question(query_bundle.query_str, self.pipeline.settings.max_question_chars)
        retrieval = self.pipeline.retrieve(question, max_sources=self.k)
        return [NodeWithScore(node=node_of(src), score=src.score) for src in retrieval.sources]


class VerifiedQueryEngine(CustomQueryEngine):
    """`Pipeline.ask` as a llama-index query engine: the verified answer and the passages it cites.

    `Response.response` is the answer text with its [n] markers, `source_nodes` the cited passages (scored by the
    support judge; empty when the tool abstained), `metadata["rag"]` the rag extras (abstained, citations,
    sentence flags, closest passages).
    """

    pipeline: Pipeline

    def custom_query(self, query_str: str) -> Response:
        answer = self.pipeline.ask(query_str)
        nodes = [NodeWithScore(node=node_of(c), score=c.score) for c in answer.citations]
        return Response(response=answer.text, source_nodes=nodes, metadata={"rag": RagExtras.of(answer).model_dump()})
