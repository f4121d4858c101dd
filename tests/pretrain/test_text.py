"""Report captions as the reference builds them, and word slots of WordPiece tokens."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers

from pretrain import text
from benchmark.backbones.text.mgca import prepare_for_encoding
from pretrain.text import caption, encode, train_tokenizer

VOCAB = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4, "no": 5, "pneumo": 6, "##thorax": 7, "effusion": 8, "small": 9}


def test_caption_splits_numbered_lists_and_sentences() -> None:
    assert caption("1. Heart size is normal. 2. No effusion.") == "heart size is normal no effusion"


def test_caption_drops_one_token_sentences_and_short_studies() -> None:
    assert caption("Stable.  Lungs are clear.\nNo pneumothorax.") == "lungs are clear no pneumothorax"
    assert caption("Stable. Lungs clear.") is None  # two tokens in all: the reference drops the study


def test_caption_reference_quirks() -> None:
    # "3." reads as a list marker (the reference's regex), leaving "Tube" alone (dropped) and "5 cm ...".
    assert caption("Tube 3.5 cm above the carina.") == "5 cm above the carina"
    # Punctuation goes, non-ASCII characters are stripped from tokens, the U+FFFD pair becomes a space.
    assert caption("Café-au-lait spot, right\ufffd\ufffdbase.") == "caf au lait spot right base"


def _tokenizer(max_words: int) -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece(VOCAB, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return prepare_for_encoding(tokenizer, max_words)


def test_word_slots_sum_pieces_into_words_up_to_sep() -> None:
    encoded = encode(_tokenizer(8), ["no pneumothorax small effusion"], 8)
    # [CLS] no pneumo ##thorax small effusion [SEP] [PAD]
    assert encoded.input_ids.tolist() == [[2, 5, 6, 7, 9, 8, 3, 0]]
    assert encoded.attention_mask.tolist() == [[1, 1, 1, 1, 1, 1, 1, 0]]
    assert encoded.word_slots.tolist() == [[0, 1, 2, 2, 3, 4, 5, 8]]  # padding -> dump slot 8


def test_word_slots_of_truncated_captions() -> None:
    encoded = encode(_tokenizer(5), ["no pneumothorax small effusion", "small"], 5)
    assert encoded.input_ids.tolist() == [[2, 5, 6, 7, 3], [2, 9, 3, 0, 0]]
    assert encoded.word_slots.tolist() == [[0, 1, 2, 2, 3], [0, 1, 2, 5, 5]]


def test_encoding_in_chunks_gives_the_rows_of_one_call(monkeypatch) -> None:
    # encode tokenises ENCODE_CHUNK captions per call (memory); rows must not depend on the chunking.
    captions = ["no pneumothorax small effusion", "small", "no effusion", "pneumothorax", "small small no"]
    whole = encode(_tokenizer(6), captions, 6)
    monkeypatch.setattr(text, "ENCODE_CHUNK", 2)
    chunked = encode(_tokenizer(6), captions, 6)
    for name in ("input_ids", "attention_mask", "word_slots"):
        assert getattr(chunked, name).tolist() == getattr(whole, name).tolist()
    assert whole.word_slots.tolist()[1] == [0, 1, 2, 6, 6, 6]


def test_trained_vocabulary_covers_the_reports() -> None:
    captions = ["small left pleural effusion", "no pneumothorax", "moderate right pleural effusion"] * 5
    tokenizer = prepare_for_encoding(train_tokenizer(captions, vocab_size=60), 16)
    encoded = encode(tokenizer, ["small right pleural effusion"], 16)
    assert tokenizer.token_to_id("[UNK]") not in encoded.input_ids[0].tolist()
    slots = encoded.word_slots[0][encoded.attention_mask[0] == 1].tolist()
    assert sorted(set(slots)) == [0, 1, 2, 3, 4, 5] and slots == sorted(slots)  # 4 words between [CLS] and [SEP]



def test_the_trained_vocabulary_is_the_same_every_time() -> None:
    # Many equally frequent merges: the library's trainer alone gave a different vocabulary on
    # nearly every training of this corpus (hash order, huggingface/tokenizers#1794).
    captions = [f"small opacity in the left lower lobe number {i % 37} and effusion {i % 11}" for i in range(400)]
    captions += ["no acute cardiopulmonary process", "heart size is normal mild cardiomegaly pleural"] * 60
    vocabularies = {train_tokenizer(captions, vocab_size=150).to_str() for _ in range(4)}
    assert len(vocabularies) == 1


def test_special_tokens_stay_special_and_pieces_are_plain_entries() -> None:
    tokenizer = train_tokenizer(["small left pleural effusion", "no pneumothorax"] * 5, vocab_size=60)
    special = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
    assert special == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    assert tokenizer.token_to_id("##l") is not None
    assert tokenizer.decode(tokenizer.encode("small effusion").ids) == "small effusion"
