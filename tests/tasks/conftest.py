"""Prepared demo data for the task tests (small images: tiny models, few iterations)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from benchmark.backbones import BackboneSpec, LoadedBackbone, build_backbone
from benchmark.cli import main as cli_main
from benchmark.data.demo import generate


@pytest.fixture(scope="session")
def segmentation_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo SIIM and RSNA (60 images each) prepared at 32 px: ``<root>/siim``, ``<root>/rsna``."""
    root = tmp_path_factory.mktemp("segmentation-data")
    generate(root / "raw", ["siim", "rsna"], images=60, size=64, seed=0)
    for name in ("siim", "rsna"):
        argv = ["prepare", name, "--raw", str(root / "raw" / name), "--out", str(root / "prepared"),
                "--image-size", "32", "--workers", "1"]
        assert cli_main(argv) == 0
    return root / "prepared"


StemWatcher = Callable[[LoadedBackbone], list[int]]


@pytest.fixture
def stem_sides() -> Iterator[StemWatcher]:
    """``watch(backbone)``: a list that collects, from then on until the test ends, the side of every image batch the
    backbone's encoder is fed (a forward pre-hook on its first convolution: a ResNet's conv1, a ViT's patch embedding)."""
    import torch

    handles = []

    def watch(backbone: LoadedBackbone) -> list[int]:
        sides: list[int] = []
        stem = next(module for module in backbone.model.modules() if isinstance(module, torch.nn.Conv2d))
        handles.append(stem.register_forward_pre_hook(lambda _module, args: sides.append(int(args[0].shape[-1]))))
        return sides

    yield watch
    for handle in handles:
        handle.remove()


def random_backbone(arch: str) -> LoadedBackbone:
    """A randomly initialised backbone of any architecture source (``timm:...``, ``xrv:...``)."""
    return build_backbone(BackboneSpec(name="random", arch=arch, weights="random", description="test"))


@pytest.fixture(scope="session")
def convnext() -> LoadedBackbone:
    """timm's own tiny ConvNeXt: a pyramid, ImageNet mean/std."""
    return random_backbone("timm:test_convnext")


@pytest.fixture(scope="session")
def xrv_densenet() -> LoadedBackbone:
    """torchxrayvision's DenseNet-121: a pyramid, 1 channel, [-1024, 1024]."""
    return random_backbone("xrv:densenet121-res224-all")


@pytest.fixture(scope="session")
def xrv_resnet() -> LoadedBackbone:
    """torchxrayvision's ResNet-50: the five ResNet stages, 1 channel, [-1024, 1024]."""
    return random_backbone("xrv:resnet50-res512-all")


@pytest.fixture(scope="session")
def open_clip_fixed_vit(tmp_path_factory: pytest.TempPathFactory, write_open_clip_folder) -> LoadedBackbone:
    """An open_clip ViT as open_clip publishes one (config folder), patch 8, position embeddings for 48 px only."""
    folder = write_open_clip_folder(tmp_path_factory.mktemp("open_clip") / "vit", 32, image_size=48)
    return random_backbone(f"open_clip:{folder}")


@pytest.fixture(scope="session")
def dinov2_patch14(tmp_path_factory: pytest.TempPathFactory) -> LoadedBackbone:
    """A transformers DINOv2 folder (RAD-DINO's layout), patch 14, any input size."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    folder = tmp_path_factory.mktemp("dinov2")
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             image_size=28, patch_size=14)).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(folder)
    return random_backbone(f"hf:{folder}")


TinyMgcaWriter = Callable[..., Path]


@pytest.fixture(scope="session")
def write_tiny_mgca() -> TinyMgcaWriter:
    """``write(run, captions, data=None)``: a pretraining run's checkpoint (tiny ResNet-18 MGCA at its seed-0
    initialisation, one-layer BERT, a WordPiece vocabulary of 80 from ``captions``) saved in ``run`` and exported with
    its text tower; ``data`` adds to the run's data record (the pair fingerprints a run records). Returns the export."""

    def write(run: Path, captions: list[str], data: dict | None = None) -> Path:
        import torch

        from pretrain.config import load_config
        from pretrain.export import export_checkpoint
        from pretrain.model import MGCA
        from pretrain.text import save_tokenizer, train_tokenizer

        config = load_config("demo", ["arch=resnet18", "text_layers=1", "text_hidden_size=32", "text_heads=2",
                                      "text_intermediate_size=64", "projection_hidden=32", "emb_dim=16", "num_prototypes=8",
                                      "max_words=16"])
        torch.manual_seed(0)
        tokenizer = train_tokenizer(captions, vocab_size=80)
        model = MGCA(config, tokenizer.get_vocab_size()).eval()
        save_tokenizer(tokenizer, run / "tokenizer.json")
        params = {"config": model.config.to_dict(), "data": {"vocab_size": tokenizer.get_vocab_size(), **(data or {})},
                  "arch": model.config.arch, "tokenizer": "tokenizer.json", "initialisation": {}}
        torch.save({"state_dict": model.state_dict(), "hyper_parameters": params, "epoch": 1}, run / "best.ckpt")
        return export_checkpoint(run / "best.ckpt", run / "export" / "tiny_mgca.ckpt")[0]

    return write


@pytest.fixture(scope="session")
def clip_folders(tmp_path_factory: pytest.TempPathFactory, write_open_clip_folder) -> dict[str, Path]:
    """A tiny open_clip CLIP (open_clip's bundled BPE tokenizer) and a tiny transformers CLIP folder (a word-level
    tokenizer over the words of the zero-shot prompts and the retrieval text pool), random weights."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    from tasks.retrieval.texts import text_pool
    from tasks.zeroshot.prompts import PROMPTS

    prompts = [text for columns in PROMPTS.values() for column in columns for text in (*column.positive, *column.negative)]
    root = tmp_path_factory.mktemp("clip")
    words = ["<pad>", "<unk>", "<eos>", *sorted({word for text in (*prompts, *text_pool()[1]) for word in text.split()})]
    torch.manual_seed(6)
    text = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=len(words),
                max_position_embeddings=12, eos_token_id=2, pad_token_id=0)
    vision = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32, patch_size=8)
    CLIPModel(CLIPConfig(vision_config=vision, text_config=text, projection_dim=20)).eval().save_pretrained(root / "hf")
    # trained at 32, its processor says 224 (as a released CLIP): the input follows the protocol's 224/256 ratio
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(root / "hf")
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>").save_pretrained(root / "hf")
    return {"open_clip": write_open_clip_folder(root / "open_clip", 32, text_vocab=49408), "hf": root / "hf"}


@pytest.fixture(scope="session")
def clip_grid() -> Callable[..., tuple]:
    """``run(board, source, folder, prepared, work)``: the grid over one CLIP folder (``source`` open_clip or hf), as
    ``run --checkpoint FOLDER --arch SOURCE:FOLDER`` plans it, cells in this process; (summary, records by dataset)."""

    def run(board, source: str, folder: Path, prepared: Path, work: Path) -> tuple:
        from benchmark.grid import BackboneChoice, GridRequest, run_grid

        request = GridRequest(backbones=(BackboneChoice("clip", folder, f"{source}:{folder}"),), data_dir=prepared,
                              work_dir=work / "work", cache_dir=work / "cache", progress=False, isolate=False)
        summary = run_grid(board, request)
        return summary, {record.identity.dataset: record for record in board.records()}

    return run
