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
#: The tiny models written: the CLIP family gapdiag's documentation names, and BLIP for any other ``AutoModel`` with
#: ``get_image_features``/``get_text_features``.
KINDS = ("clip", "siglip", "siglip2", "chinese_clip", "altclip", "blip")


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


def xlm_roberta_tokenizer(max_length: int = 16) -> Any:
    """An XLM-R tokenizer (AltCLIP's) over :data:`WORDS`: a SentencePiece-style Unigram vocabulary built in code.

    The vocabulary is laid out as XLM-R's is (``<s> <pad> </s> <unk> <mask>``, then ``▁word`` pieces), so that the
    tokenizer transformers rebuilds from the saved ``tokenizer.json`` (its own pre-tokenizer, ``unk_id`` 3) is the
    one written.
    """
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab = [(w, 0.0) for w in specials] + [(f"\u2581{w}", -1.0) for w in WORDS[4:]]
    from transformers import XLMRobertaTokenizer  # transformers 5: one class, built from a vocabulary

    return XLMRobertaTokenizer(vocab=vocab, model_max_length=max_length)


def write_hf_model(folder: Path, kind: str = "clip", *, seed: int = 0, mean: float | None = None) -> Path:
    """Save a tiny random ``kind`` model (one of :data:`KINDS`) with its processor into ``folder``.

    ``mean`` overrides the image processor's normalisation mean (a processor setting the cache key must follow).
    """
    import torch

    torch.manual_seed(seed)
    norm = {} if mean is None else {"image_mean": [mean] * 3}
    model, processor = BUILDERS[kind](folder, norm)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


#: CLIP's image processor at the tiny models' 32 pixels.
CLIP_IMAGES = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}}


def _clip(folder: Path, norm: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    return (CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=8)),
            CLIPProcessor(image_processor=CLIPImageProcessor(**CLIP_IMAGES, **norm), tokenizer=tokenizer()))


def _siglip(folder: Path, norm: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipProcessor

    return (SiglipModel(SiglipConfig(text_config=TEXT, vision_config=VISION)),
            SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}, **norm),
                            tokenizer=tokenizer()))


def _siglip2(folder: Path, norm: dict[str, Any]) -> tuple[Any, Any]:
    """Patches of the image at its own aspect ratio, with a mask and the patch grid's shape."""
    from transformers import Siglip2Config, Siglip2ImageProcessor, Siglip2Model, Siglip2Processor

    # Siglip2Processor's own call applies its default patch size and count (16, 256) over the saved ones: the
    # tiny model keeps them, so that the model card's processor(images=...) and the image processor agree.
    # Its captions are padded to 64 tokens the same way.
    vision = {k: v for k, v in VISION.items() if k != "image_size"} | {"patch_size": 16, "num_patches": 256}
    text = TEXT | {"max_position_embeddings": 64}
    return (Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)),
            Siglip2Processor(image_processor=Siglip2ImageProcessor(patch_size=16, max_num_patches=256, **norm),
                             tokenizer=tokenizer(64)))


def bert_tokenizer(folder: Path) -> Any:
    """A BERT word-piece tokenizer over :data:`WORDS` (its ``vocab.txt`` written into ``folder``)."""
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"  # the special tokens, then the caption words
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS[4:]]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab), model_max_length=16)


#: A BERT text tower's config over :func:`bert_tokenizer`'s vocabulary (its own special-token ids).
BERT_TEXT = {k: v for k, v in TEXT.items() if not k.endswith("token_id")} | {"vocab_size": len(WORDS) + 1}


def _chinese_clip(folder: Path, norm: dict[str, Any]) -> tuple[Any, Any]:
    from transformers import (
        ChineseCLIPConfig,
        ChineseCLIPImageProcessor,
        ChineseCLIPModel,
        ChineseCLIPProcessor,
    )

    return (ChineseCLIPModel(ChineseCLIPConfig(text_config=BERT_TEXT, vision_config=VISION, projection_dim=8)),
            ChineseCLIPProcessor(image_processor=ChineseCLIPImageProcessor(**CLIP_IMAGES, **norm),
                                 tokenizer=bert_tokenizer(folder)))


def _altclip(folder: Path, norm: dict[str, Any]) -> tuple[Any, Any]:
    """An XLM-R text tower (RoBERTa: positions start after the padding index) and CLIP's vision tower."""
    from transformers import AltCLIPConfig, AltCLIPModel, AltCLIPProcessor, CLIPImageProcessor

    text = {"vocab_size": len(WORDS) + 1, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 18, "pad_token_id": 1, "bos_token_id": 0,
            "eos_token_id": 2, "project_dim": 12}
    return (AltCLIPModel(AltCLIPConfig(text_config=text, vision_config=VISION, projection_dim=8)),
            AltCLIPProcessor(image_processor=CLIPImageProcessor(**CLIP_IMAGES, **norm),
                             tokenizer=xlm_roberta_tokenizer()))


def _blip(folder: Path, norm: dict[str, Any]) -> tuple[Any, Any]:
    """BLIP's retrieval towers: a model type gapdiag does not name anywhere (the generic ``AutoModel`` path)."""
    from transformers import BlipConfig, BlipImageProcessor, BlipModel, BlipProcessor

    text = BERT_TEXT | {"encoder_hidden_size": VISION["hidden_size"], "pad_token_id": 0, "bos_token_id": 2,
                        "eos_token_id": 3, "sep_token_id": 3}
    return (BlipModel(BlipConfig(text_config=text, vision_config=VISION, projection_dim=8)),
            BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}, **norm),
                          tokenizer=bert_tokenizer(folder)))


BUILDERS = {"clip": _clip, "siglip": _siglip, "siglip2": _siglip2, "chinese_clip": _chinese_clip,
            "altclip": _altclip, "blip": _blip}


def own_features(folder: Path, images: list[Any], captions: list[str], *,
                 max_length: int | None = None) -> tuple[Any, Any]:
    """The model's own ``get_image_features``/``get_text_features`` through its own processor, as the model card
    shows them (SigLIP's captions padded to the full length; images in RGB, as gapdiag decodes them), one image and
    one caption at a time; ``max_length``: captions cut to that many tokens."""
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
        cut = {} if max_length is None else {"truncation": True, "max_length": max_length}
        text = [pooled(model.get_text_features(**processor(text=[c], padding=padding, return_tensors="pt", **cut)))[0]
                .numpy() for c in captions]
    return image, text
