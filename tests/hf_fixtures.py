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
KINDS = ("clip", "siglip", "siglip2", "chinese_clip", "altclip")


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
    elif kind == "altclip":  # an XLM-R text tower (RoBERTa: positions start after the padding index) and CLIP's vision
        from transformers import AltCLIPConfig, AltCLIPModel, AltCLIPProcessor

        text = {"vocab_size": len(WORDS) + 1, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                "num_attention_heads": 2, "max_position_embeddings": 18, "pad_token_id": 1, "bos_token_id": 0,
                "eos_token_id": 2, "project_dim": 12}
        model = AltCLIPModel(AltCLIPConfig(text_config=text, vision_config=VISION, projection_dim=8))
        processor = AltCLIPProcessor(image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, **norm),
            tokenizer=xlm_roberta_tokenizer())
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


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
