"""The exported checkpoint: what the backbone registry loads, images and text.

``export_checkpoint(run/best.ckpt, NAME.ckpt)`` writes

* ``NAME.ckpt``: the run checkpoint in the released MGCA layout (``state_dict`` with image and
  text encoders, projection heads and prototypes; ``hyper_parameters``) without the optimizer
  state, plus a ``text_tower`` entry holding what the weights do not say (the run's tokenizer,
  the BERT config, the token budget: ``benchmark.backbones.text.mgca.export_section``), so the
  file alone gives the text tower of zero-shot and retrieval tasks;
* ``NAME.safetensors``: the image encoder alone under its native (timm / torchvision) names.

Training exports its best checkpoint at the end (``export=...``); ``python -m pretrain.export
RUN/best.ckpt NAME.ckpt`` exports one again (a run exported by an earlier version, say).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from benchmark.backbones.safe_pickle import CheckpointError
from benchmark.backbones.text.mgca import EXPORT_KEY, export_section, pretrained_tokenizer
from benchmark.files import write_through
from pretrain.checkpoints import RESUME_KEYS, load_checkpoint, save_atomic
from pretrain.config import SMALL_BERT, ConfigError, PretrainConfig, config_from_dict, text_model_source
from pretrain.model import small_bert_config
from pretrain.text import load_tokenizer

IMAGE_ENCODER_PREFIX = "img_encoder_q.model."


def image_encoder_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image encoder's tensors under their native names (``img_encoder_q.model.`` stripped)."""
    return {key[len(IMAGE_ENCODER_PREFIX):]: value for key, value in state_dict.items() if key.startswith(IMAGE_ENCODER_PREFIX)}


def text_tower_entry(source: Path, params: dict[str, Any]) -> dict[str, Any]:
    """The ``text_tower`` entry of the run checkpoint ``source``: the tokenizer it trained with
    (``tokenizer.json`` beside it, or the text model folder's) and its BERT config."""
    config: PretrainConfig = config_from_dict(params["config"], str(source))
    folder = text_model_source(config)
    if folder == SMALL_BERT:
        tokenizer = load_tokenizer(source.parent / Path(params.get("tokenizer", "tokenizer.json")).name)
        bert_config = small_bert_config(config, params["data"]["vocab_size"])
    else:
        from transformers import BertConfig

        try:
            tokenizer = pretrained_tokenizer(folder)
            bert_config = BertConfig.from_pretrained(folder, num_hidden_layers=config.text_layers, local_files_only=True)
        except (OSError, ValueError) as error:
            raise ConfigError(f"{source}: the run's text_model {folder!r} is needed to export its tokenizer and BERT "
                              f"config ({error})") from None
    return export_section(tokenizer, bert_config.to_dict(), config.max_words)


def export_checkpoint(source: Path, target: Path) -> tuple[Path, Path]:
    """``target`` (.ckpt, released MGCA layout, no optimizer state, with its text tower entry) and
    ``target`` with suffix ``.safetensors`` (the image encoder alone) from the run checkpoint ``source``."""
    checkpoint = {key: value for key, value in load_checkpoint(source).items() if key not in RESUME_KEYS}
    params = checkpoint["hyper_parameters"]
    checkpoint[EXPORT_KEY] = text_tower_entry(source, params)
    save_atomic(checkpoint, target)
    tensors = target.with_suffix(".safetensors")
    encoder = {key: value.contiguous() for key, value in image_encoder_state(checkpoint["state_dict"]).items()}
    image_init = params.get("initialisation", {}).get("image", {})
    metadata = {"arch": params["arch"], "source": str(source), "image_init": str(image_init.get("path") or image_init.get("source"))}
    write_through(tensors, lambda temp: save_file(encoder, str(temp), metadata=metadata))
    return target, tensors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pretrain.export", description="export a run checkpoint (best.ckpt) "
                                     "as the backbone registry loads it: NAME.ckpt and NAME.safetensors")
    parser.add_argument("source", type=Path, help="a run's checkpoint (RUN/best.ckpt; its tokenizer.json beside it)")
    parser.add_argument("target", type=Path, help="the .ckpt file to write")
    args = parser.parse_args(argv)
    if args.target.suffix != ".ckpt":
        print(f"error: {args.target}: name a .ckpt file", file=sys.stderr)
        return 2
    try:
        ckpt, tensors = export_checkpoint(args.source, args.target)
    except (CheckpointError, ConfigError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {ckpt} and {tensors}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
