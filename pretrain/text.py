"""Report text as the reference feeds it to BERT, and the tokenizer (PROTOCOL.md 11.2, 11.4).

``caption`` turns a prepared report text (impression + " " + findings) into the reference's
caption: split on numbered-list markers and full stops, keep ``\\w+`` tokens lowercased and
ASCII, drop one-token sentences, drop the study below three tokens.

``encode`` tokenises captions to ``max_words`` tokens and maps every token to its *word slot*:
slot 0 is [CLS], words (WordPiece pieces of one pre-tokenised word) take slots 1, 2, ..., and
[SEP] the slot after the last word; padding goes to a dump slot ``max_words`` that the model
drops. Summing token features per slot is the reference's ``aggregate_tokens`` (pieces summed
into words, up to and including [SEP]).

The tokenizer of a local BERT folder and the [CLS]/[SEP] template are shared with the frozen MGCA
text tower (``benchmark/backbones/text/mgca.py``), which reads texts as pretraining does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MIN_STUDY_TOKENS = 3  # pretrain_dataset.py L118
# Captions tokenised per call: a tokenizers Encoding of 112 tokens holds ~17 KB (tokens, offsets,
# masks), so encoding MIMIC-CXR's 238k training captions in one call peaked at 4.2 GB.
ENCODE_CHUNK = 4096
_NUMBERED = re.compile(r"[0-9]+\.")
_WORD = re.compile(r"\w+")


def caption(text: str) -> str | None:
    """The reference's caption of one report (``create_path_2_sent_mapping``), or None when the
    study has fewer than three tokens (the reference drops it)."""
    text = text.replace("\n", " ")
    sentences = [part for point in _NUMBERED.split(text) for part in point.split(".")]
    kept: list[str] = []
    count = 0
    for sentence in sentences:
        tokens = _WORD.findall(sentence.replace("\ufffd\ufffd", " ").lower())
        if len(tokens) <= 1:
            continue
        ascii_tokens = [t for t in (token.encode("ascii", "ignore").decode("ascii") for token in tokens) if t]
        if ascii_tokens:
            kept.append(" ".join(ascii_tokens))
        count += len(ascii_tokens)
    return " ".join(kept) if count >= MIN_STUDY_TOKENS else None


def train_tokenizer(captions: Iterable[str], vocab_size: int) -> Tokenizer:
    """A BERT-style uncased WordPiece tokenizer trained on ``captions``, the same on every run.

    The trainer numbers the ``##`` continuation pieces in hash-map order and breaks ties between
    equally frequent merges by those numbers, so two trainings on the same captions give different
    vocabularies (huggingface/tokenizers#1794). Declaring every continuation piece of the corpus
    up front, sorted, fixes their numbers; they are then plain vocabulary entries again.
    """
    captions = list(captions)
    trainee = _bert_uncased(Tokenizer(models.WordPiece(unk_token="[UNK]")))
    words = {word for text in captions for word, _ in trainee.pre_tokenizer.pre_tokenize_str(trainee.normalizer.normalize_str(text))}
    pieces = sorted({"##" + letter for word in words for letter in word[1:]})
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *pieces], show_progress=False)
    trainee.train_from_iterator(captions, trainer)
    tokenizer = _bert_uncased(Tokenizer(models.WordPiece(vocab=trainee.get_vocab(), unk_token="[UNK]")))
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def _bert_uncased(tokenizer: Tokenizer) -> Tokenizer:
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    return tokenizer


@dataclass
class EncodedCaptions:
    input_ids: np.ndarray  # int64 [n, max_words]
    attention_mask: np.ndarray  # int64 [n, max_words]
    word_slots: np.ndarray  # int64 [n, max_words]: word slot of each token (see module docstring)


def encode(tokenizer: Tokenizer, captions: list[str], max_words: int) -> EncodedCaptions:
    """Token ids, attention masks and word slots of ``captions`` (tokenizer from
    :func:`benchmark.backbones.text.mgca.prepare_for_encoding`), tokenised :data:`ENCODE_CHUNK` at a time."""
    ids = np.empty((len(captions), max_words), dtype=np.int64)
    mask = np.empty((len(captions), max_words), dtype=np.int64)
    slots = np.full(ids.shape, max_words, dtype=np.int64)
    for start in range(0, len(captions), ENCODE_CHUNK):
        for row, encoding in enumerate(tokenizer.encode_batch(captions[start: start + ENCODE_CHUNK]), start):
            ids[row], mask[row] = encoding.ids, encoding.attention_mask
            _fill_slots(slots[row], encoding)
    return EncodedCaptions(ids, mask, slots)


def _fill_slots(slots: np.ndarray, encoding: Encoding) -> None:
    """The word slot of each token of one padded ``encoding``, written into ``slots`` (one row)."""
    words = np.array([-1 if word is None else word for word in encoding.word_ids], dtype=np.int64)
    real = np.flatnonzero(np.array(encoding.attention_mask))
    content = real[1:-1]  # between [CLS] and [SEP]
    # A new word starts where the word index changes; slot = 1 + number of word starts so far - 1.
    starts = np.r_[True, words[content][1:] != words[content][:-1]] if len(content) else np.array([], bool)
    slots[content] = np.cumsum(starts)
    slots[real[0]] = 0  # [CLS]
    slots[real[-1]] = int(starts.sum()) + 1  # [SEP]


def save_tokenizer(tokenizer: Tokenizer, path: Path) -> None:
    tokenizer.save(str(path))


def load_tokenizer(path: Path) -> Tokenizer:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: tokenizer missing (it is written beside the checkpoints at the start of a run)")
    return Tokenizer.from_file(str(path))
