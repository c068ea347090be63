"""A byte-level SentencePiece vocabulary, small enough for test models.

llama.cpp's SPM tokenizer (``tokenizer.ggml.model = "llama"``) needs little to
load and run: a token list, optional scores and token types, and the 256 byte
tokens ``<0x00>``..``<0xFF>``: it looks up ``<0x0A>`` for the newline token
while loading and falls back to byte tokens for any text its pieces do not
cover, so every string tokenizes. Token ids must be unique strings (the
loader maps text to id). A few merged pieces with scores make the tokenizer's
bigram merging do real work. Facts from llama.cpp ``src/llama-vocab.cpp``
(``llama_vocab::impl::load`` and ``llm_tokenizer_spm``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gguf

UNK_ID = 0
BOS_ID = 1
EOS_ID = 2
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")
N_BYTE_TOKENS = 256
SPACE = "\u2581"  # SentencePiece's visible space, which SPM prefixes to words

DEFAULT_PIECES: tuple[str, ...] = (
    SPACE,
    f"{SPACE}t",
    "he",
    f"{SPACE}the",
    f"{SPACE}a",
    "in",
    "er",
    "an",
    "on",
    f"{SPACE}i",
    "re",
    "at",
    "en",
    f"{SPACE}s",
    f"{SPACE}w",
    "or",
    "ll",
    f"{SPACE}he",
    "llo",
    f"{SPACE}hello",
    f"{SPACE}o",
    f"{SPACE}c",
    "ing",
    "nd",
    f"{SPACE}and",
    f"{SPACE}of",
    f"{SPACE}to",
    "ed",
    f"{SPACE}in",
)
"""Common English pieces; with the specials and the bytes they make 288 tokens."""

MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + N_BYTE_TOKENS


@dataclass(frozen=True)
class SpmVocab:
    """Parallel token arrays as GGUF stores them under ``tokenizer.ggml.*``."""

    tokens: tuple[str, ...]
    scores: tuple[float, ...]
    token_types: tuple[int, ...]
    unk_id: int = UNK_ID
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID


def byte_spm_vocab(vocab_size: int | None = None) -> SpmVocab:
    """Specials, then the 256 byte tokens, then merged pieces up to ``vocab_size``.

    Pieces get decreasing negative scores so that SPM prefers the earlier ones
    when merging, as a trained SentencePiece model would.
    """
    pieces = _pieces(vocab_size)
    tokens = (*SPECIAL_TOKENS, *_byte_tokens(), *pieces)
    scores = (0.0,) * MIN_VOCAB_SIZE + tuple(-float(rank) for rank in range(1, len(pieces) + 1))
    token_types = (
        int(gguf.TokenType.UNKNOWN),
        int(gguf.TokenType.CONTROL),
        int(gguf.TokenType.CONTROL),
        *(int(gguf.TokenType.BYTE),) * N_BYTE_TOKENS,
        *(int(gguf.TokenType.NORMAL),) * len(pieces),
    )
    return SpmVocab(tokens=tokens, scores=scores, token_types=token_types)


def add_spm_vocab(writer: gguf.GGUFWriter, vocab: SpmVocab) -> None:
    """Write the vocabulary and its special ids as llama.cpp reads them."""
    writer.add_tokenizer_model("llama")
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_scores(list(vocab.scores))
    writer.add_token_types(list(vocab.token_types))
    writer.add_unk_token_id(vocab.unk_id)
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)


def _byte_tokens() -> tuple[str, ...]:
    return tuple(f"<0x{value:02X}>" for value in range(N_BYTE_TOKENS))


def _pieces(vocab_size: int | None) -> Sequence[str]:
    """The default pieces, cut or padded with unique filler words to fit ``vocab_size``."""
    if vocab_size is None:
        return DEFAULT_PIECES
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size {vocab_size} is too small: a byte-level SPM vocabulary needs at "
            f"least {MIN_VOCAB_SIZE} tokens (3 specials + 256 bytes)"
        )
    n_pieces = vocab_size - MIN_VOCAB_SIZE
    fillers = (f"{SPACE}w{index}" for index in range(max(0, n_pieces - len(DEFAULT_PIECES))))
    return (*DEFAULT_PIECES[:n_pieces], *fillers)
