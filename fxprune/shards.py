"""A checkpoint directory of ``*.safetensors`` shards, read one tensor at a time.

The directory is untrusted input: the index file (``model.safetensors.index.json``) is parsed as
data and its shard names must be plain file names of that directory (no path, no link out of
it); tensors are read with the ``safetensors`` library (no code in a shard can run). Each tensor is
read through its own memory map, closed as soon as the tensor is copied out, so reading a whole
checkpoint never holds more than one tensor (and its mapped pages) at a time.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .errors import CheckpointError

__all__ = ["INDEX", "SHARD_NAME", "ShardedCheckpoint"]

INDEX = "model.safetensors.index.json"
SHARD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.safetensors")


def _safe_open(path: Path):
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover - the hf extra brings it
        raise CheckpointError("reading safetensors shards needs the safetensors package: "
                              "pip install 'fxprune[hf]'") from None
    try:
        return safe_open(str(path), framework="pt")
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: say which
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(exc).__name__}: "
                              f"{(str(exc).splitlines() or [''])[0][:200]})") from None


class ShardedCheckpoint:
    """The tensors of a directory of safetensors shards: names, shapes and dtypes from the file
    headers, each tensor read on demand (``get``)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise CheckpointError(f"weights directory {self.directory} does not exist")
        self.shards = self._shard_files()
        self.where: dict[str, Path] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.dtypes: dict[str, str] = {}
        for shard in self.shards:
            with _safe_open(shard) as f:
                for name in f.keys():
                    if name in self.where:
                        raise CheckpointError(f"tensor {name!r} is in two shards ({self.where[name].name} and "
                                              f"{shard.name}); the checkpoint is inconsistent")
                    sl = f.get_slice(name)
                    self.where[name] = shard
                    self.shapes[name] = tuple(int(d) for d in sl.get_shape())
                    self.dtypes[name] = str(sl.get_dtype())
        self._check_index()

    def _shard_files(self) -> list[Path]:
        index = self.directory / INDEX
        if index.is_file():
            self.weight_map = self._read_index(index)
            names = sorted(set(self.weight_map.values()))
        else:
            self.weight_map = None
            names = sorted(p.name for p in self.directory.glob("*.safetensors") if SHARD_NAME.fullmatch(p.name))
        if not names:
            raise CheckpointError(f"{self.directory} holds no safetensors shards (model.safetensors, or shards listed "
                                  f"in {INDEX})")
        out = []
        for name in names:
            path = self.directory / name
            if not path.is_file() or path.resolve().parent != self.directory.resolve():
                raise CheckpointError(f"{self.directory}: shard {name!r} is not a file in this directory")
            out.append(path)
        return out

    def _read_index(self, index: Path) -> dict[str, str]:
        try:
            data = json.loads(index.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{index} is not readable JSON ({type(exc).__name__}: {exc})") from None
        wmap = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(wmap, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in wmap.items()):
            raise CheckpointError(f"{index}: expected {{\"weight_map\": {{tensor name: shard file name}}}}")
        bad = sorted({v for v in wmap.values() if not SHARD_NAME.fullmatch(v)})
        if bad:
            raise CheckpointError(f"{index} names shard(s) {bad[:3]} that are not plain *.safetensors file names "
                                  "of that directory")
        return wmap

    def _check_index(self) -> None:
        if self.weight_map is None:
            return
        for name, shard in self.weight_map.items():
            if name not in self.where:
                raise CheckpointError(f"{INDEX} lists tensor {name!r} in {shard}, which does not hold it")
            if self.where[name].name != shard:
                raise CheckpointError(f"{INDEX} lists tensor {name!r} in {shard}, but it is in {self.where[name].name}")

    def __contains__(self, name: object) -> bool:
        return name in self.where

    def keys(self) -> list[str]:
        return list(self.where)

    def in_shard(self, shard: Path) -> list[str]:
        """The tensor names of ``shard``, in file order (from the headers read at construction)."""
        return [n for n, s in self.where.items() if s == shard]

    def nbytes(self, name: str) -> int:
        return _DTYPE_BYTES.get(self.dtypes[name], 4) * int(torch.Size(self.shapes[name]).numel())

    def get(self, name: str) -> torch.Tensor:
        """Tensor ``name`` (a CPU copy; its shard's memory map is closed again)."""
        if name not in self.where:
            raise CheckpointError(f"{self.directory} has no tensor {name!r}")
        with _safe_open(self.where[name]) as f:
            return f.get_tensor(name)


_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
                "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
