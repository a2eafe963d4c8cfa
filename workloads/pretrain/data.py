"""Training data from files, in a deterministic order that a step number alone locates, so resuming at
step N reads exactly what an uninterrupted run would have read.

Text: `.npy` arrays of token ids (pre-tokenised, loaded memory-mapped, no pickle), `.txt` files (one
document each) and `.jsonl` lines with a "text" field. With packing, documents are joined with EOS and
cut into full sequences; without, each document is one padded sequence.
Image-text: `.jsonl` lines {"image": "<file>.npy", "text": "..."} (HxWx3 uint8 or 3xHxW float arrays,
paths relative to the file); each pair is image placeholder tokens, then the text; with packing,
whole pairs share a sequence while they fit."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

IGNORE = -100  # label of tokens that carry no loss (padding, image placeholders)


class Tokenizer(Protocol):
    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes shifted past three specials: for presets, which have no trained tokenizer."""

    pad_id, bos_id, eos_id = 0, 1, 2

    def encode(self, text: str) -> list[int]:
        return [b + 3 for b in text.encode()]

    def decode(self, ids: list[int]) -> str:
        """Specials and ids past the 256 bytes (a preset's vocabulary is larger) decode to nothing."""
        return bytes(i - 3 for i in ids if 3 <= i < 259).decode(errors="replace")

    @staticmethod
    def save(directory: Path, specials: dict[str, int] | None = None, **config: Any) -> None:
        """Write this tokenizer as Hugging Face files (tokenizer.json + tokenizer_config.json) with the
        same ids, so programs that load a checkpoint's tokenizer (vLLM, transformers) tokenise as the
        trainer does: byte-level BPE without merges, one token per byte. `specials` (text -> id, past
        258) are added as special tokens; `config` goes to tokenizer_config.json (e.g. chat_template)."""
        from tokenizers import AddedToken, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as Backend
        from transformers import PreTrainedTokenizerFast
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        names = {"<pad>": 0, "<s>": 1, "</s>": 2}
        specials = specials or {}
        byte_chars = bytes_to_unicode()  # type: ignore[no-untyped-call]  # (transformers: untyped)
        vocab = {**names, **{char: byte + 3 for byte, char in byte_chars.items()}, **specials}
        backend = Backend(models.BPE(vocab=vocab, merges=[]))
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        backend.decoder = decoders.ByteLevel()
        added = [AddedToken(t, special=True, normalized=False) for t in [*names, *specials]]
        backend.add_special_tokens(added)
        pad, bos, eos = names
        fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
            tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad, **config
        )
        fast.save_pretrained(directory)


class HFTokenizer:
    def __init__(self, path: Path) -> None:
        import transformers

        self.inner = transformers.AutoTokenizer.from_pretrained(path)
        self.eos_id = int(self.inner.eos_token_id)
        self.bos_id = int(self.inner.bos_token_id if self.inner.bos_token_id is not None else self.eos_id)
        self.pad_id = int(self.inner.pad_token_id if self.inner.pad_token_id is not None else self.eos_id)

    def encode(self, text: str) -> list[int]:
        return list(self.inner.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return str(self.inner.decode(ids, skip_special_tokens=True))


def tokenizer_for(model_path: Path | None) -> Tokenizer:
    has_own = model_path is not None and any(
        (model_path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")
    )
    return HFTokenizer(model_path) if has_own and model_path else ByteTokenizer()


def files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if not path.exists():
        raise FileNotFoundError(f"data path {path} does not exist")
    found = sorted(p for p in path.rglob("*") if p.suffix in suffixes) if path.is_dir() else [path]
    if not found:
        raise FileNotFoundError(f"no {'/'.join(suffixes)} files under {path}")
    return found


def jsonl_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """("file:line", record) for every non-empty line of the .jsonl files under `path`."""
    for file in files(path, (".jsonl",)):
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if line.strip():
                yield f"{file}:{number}", json.loads(line)


def documents(path: Path, tokenizer: Tokenizer) -> Iterator[np.ndarray]:
    for file in files(path, (".npy", ".txt", ".jsonl")):
        if file.suffix == ".npy":
            yield np.load(file, mmap_mode="r", allow_pickle=False).astype(np.int64, copy=False)
        elif file.suffix == ".txt":
            yield np.asarray(tokenizer.encode(file.read_text()), dtype=np.int64)
        else:
            for _, record in jsonl_records(file):
                yield np.asarray(tokenizer.encode(record["text"]), dtype=np.int64)


class Sequences(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]: ...


@dataclass
class PackedText:
    """All documents joined by EOS in one int64 stream, cut into `seq_length` windows."""

    stream: np.ndarray
    seq_length: int

    def __len__(self) -> int:
        return len(self.stream) // self.seq_length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = index * self.seq_length
        ids = torch.from_numpy(np.array(self.stream[start : start + self.seq_length]))
        # One tensor for ids and labels: the model shifts labels into a new tensor, never in place.
        return {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}


@dataclass
class PaddedText:
    docs: list[np.ndarray]
    seq_length: int
    pad_id: int

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return padded(
            torch.from_numpy(np.array(self.docs[index][: self.seq_length])), self.seq_length, self.pad_id
        )


def padded(
    ids: torch.Tensor, length: int, pad_id: int, no_loss: torch.Tensor | None = None
) -> dict[str, Any]:
    n = len(ids)
    input_ids = torch.full((length,), pad_id, dtype=torch.long)
    input_ids[:n] = ids
    labels = torch.full((length,), IGNORE, dtype=torch.long)
    labels[:n] = ids
    if no_loss is not None:
        labels[:n][no_loss] = IGNORE
    mask = torch.zeros(length, dtype=torch.long)
    mask[:n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": mask}


@dataclass
class ImageText:
    """Image-text pairs, each `BOS <image tokens> text EOS`; with packing, consecutive pairs share a
    sequence while they fit whole, and the sequence carries their images in order."""

    records: list[tuple[Path, list[int]]]
    seq_length: int
    tokenizer: Tokenizer
    image_token: int
    image_tokens: int  # placeholders per image = the vision tower's patch count
    image_size: int
    packing: bool = True

    def __post_init__(self) -> None:
        if self.image_tokens + 2 > self.seq_length:
            raise ValueError(
                f"--seq-length {self.seq_length} cannot hold one image ({self.image_tokens} tokens)"
            )
        self.packs: list[list[int]] = []
        used = self.seq_length
        for index in range(len(self.records)):
            size = min(self.seq_length, len(self._tokens(index)))
            if not self.packing or used + size > self.seq_length:
                self.packs.append([])
                used = 0
            self.packs[-1].append(index)
            used += size

    def _tokens(self, index: int) -> list[int]:
        tok = self.tokenizer
        head = [tok.bos_id] + [self.image_token] * self.image_tokens
        return (head + self.records[index][1] + [tok.eos_id])[: self.seq_length]

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pack = self.packs[index]
        ids = torch.tensor([t for i in pack for t in self._tokens(i)], dtype=torch.long)
        sample = padded(ids, self.seq_length, self.tokenizer.pad_id, no_loss=ids == self.image_token)
        sample["pixel_values"] = torch.stack([pixels(self.records[i][0], self.image_size) for i in pack])
        return sample


def pixels(path: Path, size: int) -> torch.Tensor:
    """A 3 x size x size float image in [-1, 1] from an .npy array (no pickle)."""
    array = np.load(path, allow_pickle=False)
    image = torch.from_numpy(np.array(array, dtype=np.float32))
    if image.ndim != 3:
        raise ValueError(f"{path}: expected an HxWx3 or 3xHxW array, got shape {tuple(image.shape)}")
    if image.shape[-1] == 3 and image.shape[0] != 3:
        image = image.permute(2, 0, 1)
    if array.dtype == np.uint8:
        image = image / 255.0
    if image.shape[1:] != (size, size):
        image = torch.nn.functional.interpolate(image[None], size=(size, size), mode="bilinear")[0]
    return (image - 0.5) / 0.5


def load(
    path: Path,
    data_format: str,
    seq_length: int,
    packing: bool,
    tokenizer: Tokenizer,
    vision: dict[str, int] | None = None,
) -> Sequences:
    if data_format == "image-text":
        if vision is None:
            raise ValueError("--data-format image-text needs a vision-language model (e.g. tiny-vl)")
        records = []
        for file in files(path, (".jsonl",)):
            for line in file.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    records.append((file.parent / row["image"], tokenizer.encode(row["text"])))
        return ImageText(records, seq_length, tokenizer, **vision, packing=packing)
    docs = list(documents(path, tokenizer))
    if not packing:
        return PaddedText(docs, seq_length, tokenizer.pad_id)
    stream = np.concatenate([np.append(d, tokenizer.eos_id) for d in docs])
    if len(stream) < seq_length:
        raise ValueError(f"{path}: {len(stream)} tokens, fewer than one sequence of {seq_length}")
    return PackedText(stream, seq_length)


@dataclass(frozen=True)
class Order:
    """Which sequences rank r reads at step s: the global batch of step s is the next
    `micro x accumulation x world` positions of a seeded shuffle that is redrawn every epoch."""

    size: int
    seed: int
    micro: int
    accumulation: int
    world: int

    @property
    def global_batch(self) -> int:
        return self.micro * self.accumulation * self.world

    def micro_batches(self, step: int, rank: int) -> list[list[int]]:
        start = step * self.global_batch + rank * self.micro * self.accumulation
        positions = range(start, start + self.micro * self.accumulation)
        indices = [self.index(p) for p in positions]
        return [indices[i : i + self.micro] for i in range(0, len(indices), self.micro)]

    def index(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        return int(self._permutation(epoch)[offset])

    def _permutation(self, epoch: int) -> torch.Tensor:
        cache = self.__dict__.setdefault("_cache", {})
        if epoch not in cache:
            cache.clear()
            cache[epoch] = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(self.seed + epoch)
            )
        return cache[epoch]  # type: ignore[no-any-return]


def collate(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack per-token tensors; images are concatenated (the model matches them to image tokens in
    order, and packed sequences carry different numbers of them)."""
    return {
        key: (torch.cat if key == "pixel_values" else torch.stack)([s[key] for s in samples])
        for key in samples[0]
    }
