"""all-MiniLM-L6-v2 without torch: its transformer exported once to ONNX and run by onnxruntime, with the
`tokenizers` library and numpy doing what sentence-transformers does around it (truncate at the model's
max_seq_length, pad, mean-pool over the attention mask, L2-normalise), so the vectors are the same.

The export needs torch and the `onnx` package (torch's exporter writes through it); `export` does it from a loaded
sentence-transformers model, checks the file against that model on a few probe texts, and only then moves it into
place, so a file in the cache is whole and right. Running it needs neither torch nor sentence-transformers.
Left out: quantisation (its vectors would differ, and so would the store's fingerprint), GPUs, other models.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# What an export is checked against before it is kept: short, empty, unicode, and long enough to be truncated.
PROBES = ["", "a", "How far did bitcoin fall?", "Ünïcödé, 日本語 and emoji 🎉 in one line.",
          "The committee met on Tuesday and agreed the budget. " * 60]
TOLERANCE = 1e-5  # largest difference in any component from sentence-transformers (an export measures ~3e-7)

# Two cores: the CPU count, up to 4 (beyond that one question gains nothing and ingest little). No spinning: idle
# worker threads would otherwise busy-wait after each batch, taking a core from a model answering at the same time.
MAX_THREADS = 4


def max_seq_length(model_dir: Path) -> int:
    """The token limit sentence-transformers truncates at (256 for all-MiniLM-L6-v2)."""
    return int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])


def load_tokenizer(model_dir: Path) -> Any:
    """The fast tokenizer sentence-transformers uses, truncating at max_seq_length and not padding (`arrays` pads
    each batch to its longest text; tokenizer.json itself pads every text to 128 and truncates there)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_seq_length(model_dir))
    tok.no_padding()
    return tok


def arrays(encodings: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's three inputs for a batch of encodings, padded on the right with zeros (the [PAD] id is 0)."""
    width = max(len(e.ids) for e in encodings)
    ids, mask, types = (np.zeros((len(encodings), width), dtype=np.int64) for _ in range(3))
    for r, e in enumerate(encodings):
        n = len(e.ids)
        ids[r, :n], mask[r, :n], types[r, :n] = e.ids, 1, e.type_ids
    return ids, mask, types


def session_options() -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = max(1, min(os.cpu_count() or 1, MAX_THREADS))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: its warnings (unused initialisers, ...) are not the user's business
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return opts


class OnnxMiniLM:
    """A session over an exported file and the tokenizer; raises whatever onnxruntime raises for a bad file."""

    def __init__(self, onnx_file: Path, model_dir: Path) -> None:
        import onnxruntime as ort

        self.tokenizer = load_tokenizer(model_dir)
        self.session = ort.InferenceSession(str(onnx_file), session_options(), providers=["CPUExecutionProvider"])
        names = {i.name for i in self.session.get_inputs()}
        if names != set(INPUTS):
            raise ValueError(f"{onnx_file} takes {sorted(names)}, not {list(INPUTS)}")

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts) if texts else []
        out = np.zeros((len(texts), 384), dtype=np.float32)
        # Longest first, as sentence-transformers batches: less padding (padding itself changes no vector).
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids, mask, types = arrays([encodings[i] for i in rows])
            (hidden,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
            out[rows] = pool(hidden, mask)
        return out


def pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the tokens the mask keeps, then unit length: sentence-transformers' Pooling and Normalize."""
    m = mask[..., None].astype(np.float32)
    summed = (hidden.astype(np.float32) * m).sum(axis=1)
    vecs = summed / np.clip(m.sum(axis=1), 1e-9, None)
    return vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)


def export(st_model: Any, model_dir: Path, target: Path) -> None:
    """Write the transformer of a loaded SentenceTransformer to `target` as ONNX, atomically, after checking the
    file gives the model's own vectors on PROBES. Raises on any failure and leaves no file behind."""
    import torch

    transformer = st_model[0].auto_model.eval()

    class Hidden(torch.nn.Module):  # the graph's one output: the last hidden state, pooled outside in numpy
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    # Traced on a padded batch, so the graph keeps the attention mask's path (an all-ones mask may be skipped).
    enc = load_tokenizer(model_dir).encode_batch(["a padded example", "and a longer example to pad it against"])
    example = tuple(torch.from_numpy(a) for a in arrays(enc))
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.part-{os.getpid()}-{threading.get_ident()}")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
            # dynamo=False: the TorchScript exporter, which needs `onnx` but not onnxscript
            torch.onnx.export(Hidden().eval(), example, str(tmp), dynamo=False, input_names=list(INPUTS),
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17)
        got = OnnxMiniLM(tmp, model_dir).embed(PROBES)
        want = st_model.encode(PROBES, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        worst = float(np.abs(got - want).max())
        if not worst <= TOLERANCE:
            raise ValueError(f"the exported graph's vectors differ from sentence-transformers' by {worst:.1e}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
