"""Tiny random transformers models of the CLIP family, written offline by ``save_pretrained`` (model, processor and
tokenizer in one folder), for ``-m hf:FOLDER``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The tokenizer's whole vocabulary: the words the test captions use (a word-level tokenizer, no download).
WORDS = ["<pad>", "<unk>", "<s>", "</s>", "a", "handwritten", "the", "number", "by", "hand", "photo", "of", "zero",
         "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
         "0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]
TEXT = {"vocab_size": len(WORDS), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "max_position_embeddings": 16, "pad_token_id": 0, "bos_token_id": 2,
        "eos_token_id": 3}
VISION = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
          "image_size": 32, "patch_size": 8}
KINDS = ("clip", "siglip", "siglip2", "chinese_clip")


def tokenizer(max_length: int = 16) -> Any:
    """A word-level fast tokenizer over :data:`WORDS`, with ``<s> ... </s>`` around each caption."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", model_max_length=max_length)


def write_hf_model(folder: Path, kind: str = "clip", *, seed: int = 0, mean: float | None = None) -> Path:
    """Save a tiny random ``kind`` model (``clip``, ``siglip``, ``siglip2`` or ``chinese_clip``) with its processor
    into ``folder``.

    ``mean`` overrides the image processor's normalisation mean (a processor setting the cache key must follow).
    """
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        SiglipProcessor,
    )

    torch.manual_seed(seed)
    norm = {} if mean is None else {"image_mean": [mean] * 3}
    if kind == "clip":
        model = CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=8))
        processor = CLIPProcessor(image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, **norm), tokenizer=tokenizer())
    elif kind == "siglip":
        model = SiglipModel(SiglipConfig(text_config=TEXT, vision_config=VISION))
        processor = SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}, **norm),
                                    tokenizer=tokenizer())
    elif kind == "siglip2":  # patches of the image at its own aspect ratio, with a mask and the patch grid's shape
        from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

        # Siglip2Processor's own call applies its default patch size and count (16, 256) over the saved ones: the
        # tiny model keeps them, so that the model card's processor(images=...) and the image processor agree.
        # Its captions are padded to 64 tokens the same way.
        vision = {k: v for k, v in VISION.items() if k != "image_size"} | {"patch_size": 16, "num_patches": 256}
        text = TEXT | {"max_position_embeddings": 64}
        model = Siglip2Model(Siglip2Config(text_config=text, vision_config=vision))
        processor = Siglip2Processor(image_processor=Siglip2ImageProcessor(patch_size=16, max_num_patches=256, **norm),
                                     tokenizer=tokenizer(64))
    elif kind == "chinese_clip":
        from transformers import (
            BertTokenizerFast,
            ChineseCLIPConfig,
            ChineseCLIPImageProcessor,
            ChineseCLIPModel,
            ChineseCLIPProcessor,
        )

        folder.mkdir(parents=True, exist_ok=True)
        vocab = folder / "vocab.txt"  # a BERT word-piece vocabulary: the special tokens, then the caption words
        vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS[4:]]) + "\n")
        text = {k: v for k, v in TEXT.items() if not k.endswith("token_id")} | {"vocab_size": len(WORDS) + 1}
        model = ChineseCLIPModel(ChineseCLIPConfig(text_config=text, vision_config=VISION, projection_dim=8))
        processor = ChineseCLIPProcessor(image_processor=ChineseCLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, **norm),
            tokenizer=BertTokenizerFast(vocab_file=str(vocab), model_max_length=16))
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def own_features(folder: Path, images: list[Any], captions: list[str]) -> tuple[Any, Any]:
    """The model's own ``get_image_features``/``get_text_features`` through its own processor, as the model card
    shows them (SigLIP's captions padded to the full length; images in RGB, as gapdiag decodes them), one image and
    one caption at a time."""
    import torch
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    padding = "max_length" if model.config.model_type in ("siglip", "siglip2") else True

    def pooled(out: Any) -> Any:
        return out if torch.is_tensor(out) else out.pooler_output

    with torch.inference_mode():
        image = [pooled(model.get_image_features(**processor(images=im.convert("RGB"), return_tensors="pt")))[0].numpy()
                 for im in images]
        text = [pooled(model.get_text_features(**processor(text=[c], padding=padding, return_tensors="pt")))[0]
                .numpy() for c in captions]
    return image, text
