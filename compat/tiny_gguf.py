"""A tiny random Llama as a GGUF file, so that llama.cpp's server runs with no model download.

Two layers, 64-wide, random weights (seeded: the same file every time): it answers gibberish,
but through llama.cpp's real sampling, chat template, streaming and tool-call code paths. The
tokenizer is a SentencePiece-style vocabulary made here (special tokens, the 256 byte tokens
for byte fallback, then ASCII words and letters with the ``▁`` word marker), so that nothing
needs to be fetched; the chat template is a plain ChatML one.

    python compat/tiny_gguf.py OUT.gguf
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path
from typing import Final

import gguf
import numpy as np

N_EMBD: Final = 64
N_LAYER: Final = 2
N_HEAD: Final = 4
N_FF: Final = 128
N_CTX: Final = 2048
SEED: Final = 20261205
WORDS: Final = (
    "the a and of to in is it you that he was for on are as with his they at be this have "
    "from or one had by word but not what all were we when your can said there use an each "
    "which she do how their if will up other about out many then them these so some her would "
    "make like him into time has look two more write go see number no way could people my "
    "than first water been call who oil its now find long down day did get come made may part "
    "weather city time Paris Tokyo hello count story light sea boat home keeper"
)
CHAT_TEMPLATE: Final = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL: Final = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of the made-up SentencePiece vocabulary."""
    tokens = list(_SPECIAL)
    types = [gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * (len(_SPECIAL) - 1)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces = [f"▁{w}" for w in dict.fromkeys(WORDS.split())]
    pieces += ["▁", *string.ascii_letters, *string.digits, *".,!?'-:;()"]
    pieces += [f"▁{c}" for c in string.ascii_letters + string.digits]
    tokens += list(dict.fromkeys(pieces))
    types += [gguf.TokenType.NORMAL] * (len(tokens) - len(types))
    scores = [0.0] * (len(_SPECIAL) + 256) + [-float(i) for i in range(len(tokens) - 261)]
    return tokens, scores, [int(t) for t in types]


def write(path: Path) -> Path:
    """Write the model to ``path`` and return it."""
    tokens, scores, types = vocabulary()
    rng = np.random.default_rng(SEED)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("streamproof tiny random llama")
    writer.add_context_length(N_CTX)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(_SPECIAL.index("<s>"))
    writer.add_eos_token_id(_SPECIAL.index("<|im_end|>"))
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)
    vocab = len(tokens)
    writer.add_tensor("token_embd.weight", weights(vocab, N_EMBD))
    for i in range(N_LAYER):
        block = f"blk.{i}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(N_EMBD, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{block}.{name}.weight", weights(N_EMBD, N_EMBD))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(N_EMBD, np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_up.weight", weights(N_FF, N_EMBD))
        writer.add_tensor(f"{block}.ffn_down.weight", weights(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", np.ones(N_EMBD, np.float32))
    writer.add_tensor("output.weight", weights(vocab, N_EMBD))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="the .gguf file to write")
    print(write(ap.parse_args().out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
