"""Save and load models: bundled names, local folders, and Hugging Face Hub repos. Safetensors + JSON only.

A checkpoint folder holds
    config.json         GPT: {"model_type": "playground-gpt", ...GPTConfig}; Llama: a transformers LlamaConfig
    model.safetensors   GPT: our names; Llama: Hugging Face names (HF_LLAMA_NAMES), so transformers loads it
    tokenizer files     whatever `tokenizer.save(folder)` writes; read back by `load_tokenizer(folder)`
Our own extra facts (preset, training step, ...) ride along in config.json under "playground".

Loading never unpickles anything (no torch.load): pickle files can run code. Every safetensors header is
read and checked against the model's own parameter shapes before a byte of weights is used.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from playground import CHECKPOINTS
from playground.gpt import GPT, GPTConfig
from playground.hub import hub_offline, parse_hub_id
from playground.limits import LIMITS
from playground.llama import LlamaConfig, Transformer
from playground.models import count_params

log = logging.getLogger(__name__)

BUNDLED: dict[str, dict[str, Any]] = {
    "gpt-tiny": {
        "arch": "gpt",
        "folder": CHECKPOINTS / "gpt-tiny",
        "description": "the course's GPT, tiny preset, pretrained on the shipped corpus",
    },
    "llama-base": {
        "arch": "llama",
        "folder": CHECKPOINTS / "llama-base",
        "description": "a small Llama pretrained on the shipped corpus (not aligned: it continues text)",
    },
    "llama-aligned": {
        "arch": "llama",
        "folder": CHECKPOINTS / "llama-aligned",
        "description": "llama-base after ORPO alignment on the shipped preference data (answers chat turns)",
    },
}

GPT_TYPE = "playground-gpt"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# what snapshot_download may fetch: configs, safetensors weights, tokenizer files; never pickles
HUB_ALLOW = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.jinja"]

# Our Llama parameter names -> Hugging Face LlamaForCausalLM names ({i}: the layer). The one place they meet.
HF_LLAMA_NAMES = {
    "tok_embeddings.weight": "model.embed_tokens.weight",
    "layers.{i}.attention_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "layers.{i}.attention.wq.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "layers.{i}.attention.wq.bias": "model.layers.{i}.self_attn.q_proj.bias",
    "layers.{i}.attention.wk.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "layers.{i}.attention.wk.bias": "model.layers.{i}.self_attn.k_proj.bias",
    "layers.{i}.attention.wv.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "layers.{i}.attention.wv.bias": "model.layers.{i}.self_attn.v_proj.bias",
    "layers.{i}.attention.wo.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "layers.{i}.attention.wo.bias": "model.layers.{i}.self_attn.o_proj.bias",
    "layers.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "layers.{i}.feed_forward.w1.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "layers.{i}.feed_forward.w1.bias": "model.layers.{i}.mlp.gate_proj.bias",
    "layers.{i}.feed_forward.w3.weight": "model.layers.{i}.mlp.up_proj.weight",
    "layers.{i}.feed_forward.w3.bias": "model.layers.{i}.mlp.up_proj.bias",
    "layers.{i}.feed_forward.w2.weight": "model.layers.{i}.mlp.down_proj.weight",
    "layers.{i}.feed_forward.w2.bias": "model.layers.{i}.mlp.down_proj.bias",
    "norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# tensors some Hub files carry that are recomputed here, not learned
HF_IGNORED = re.compile(r"(^|\.)rotary_emb\.inv_freq$")

SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


@dataclass
class Bundle:
    """A model with its tokenizer and facts about it (info: arch, params, source, dtype, chat, vocab_size,
    context, and whatever the trainer added, e.g. preset, step)."""

    model: nn.Module
    tokenizer: Any
    info: dict = field(default_factory=dict)


def arch_of(model: nn.Module) -> str:
    if isinstance(model, GPT):
        return "gpt"
    if isinstance(model, Transformer):
        return "llama"
    raise ValueError(f"not a playground model: {type(model).__name__}")


def hf_name(ours: str) -> str:
    """Our Llama name -> the Hugging Face name (ValueError if the map does not know it)."""
    m = re.match(r"^layers\.(\d+)\.(.*)$", ours)
    key = f"layers.{{i}}.{m.group(2)}" if m else ours
    if key not in HF_LLAMA_NAMES:
        raise ValueError(f"no Hugging Face name for Llama parameter {ours!r}")
    return HF_LLAMA_NAMES[key].format(i=m.group(1)) if m else HF_LLAMA_NAMES[key]


# ------------------------------------------------------------------------------------------------ saving
def atomic_write(path: Path, write) -> None:
    """Write `path` via a temp file in the same folder then os.replace: readers never see half a file, and a
    failed or interrupted write leaves the previous file intact. `write(tmp_path)` writes the content."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a saved model should read like any other file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _jsonable(info: dict) -> dict:
    out = {}
    for k, v in info.items():
        try:
            json.dumps(v)
            out[k] = v
        except TypeError:
            out[k] = str(v)
    return out


def save(bundle: Bundle, folder: str | Path) -> Path:
    """Write config.json + model.safetensors (+ tokenizer files) into `folder`; what `load` reads back."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, arch = bundle.model, arch_of(bundle.model)
    extra = _jsonable({k: v for k, v in bundle.info.items() if k not in ("source", "folder")})
    if arch == "gpt":
        config = {"model_type": GPT_TYPE, **model.config.to_dict()}
        skip = {"lm_head.weight"} if model.config.tie_weights else set()
        tensors = {k: v for k, v in model.state_dict().items() if k not in skip}
    else:
        config = model.config.to_hf()
        skip = {"output.weight"} if model.config.tie_word_embeddings else set()
        tensors = {hf_name(k): v for k, v in model.state_dict().items() if k not in skip}
        config["torch_dtype"] = config["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
        tok = bundle.tokenizer  # transformers' generate() reads these from config.json
        for key, attr in (("bos_token_id", "bos_id"), ("eos_token_id", "eos_id"), ("pad_token_id", "_pad_id")):
            value = getattr(tok, attr, None) if tok is not None else None
            if isinstance(value, int) and value >= 0:
                config[key] = value
    config["playground"] = extra
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(folder / WEIGHTS, lambda p: save_file(tensors, p, metadata={"format": "pt"}))
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(folder / "config.json", lambda p: Path(p).write_text(text, encoding="utf-8"))
    if bundle.tokenizer is not None:
        bundle.tokenizer.save(folder)
    return folder


# ------------------------------------------------------------------------------------ reading safetensors
def read_header(path: Path) -> dict[str, dict]:
    """The JSON header of a safetensors file ({name: {dtype, shape, data_offsets}}), checked against the
    file's size so that a truncated or corrupt file is a clear ValueError, not a crash mid-load."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path.name} is not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100_000_000):
            raise ValueError(f"{path.name} is corrupt or truncated: header says {n:,} bytes, file has {size:,}")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path.name} is corrupt: its header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name} is corrupt: its header is not a JSON object")
    header.pop("__metadata__", None)
    for name, meta in header.items():
        _check_entry(path, name, meta)
    end = max((int(t["data_offsets"][1]) for t in header.values()), default=0)
    if 8 + n + end != size:
        raise ValueError(
            f"{path.name} is truncated or corrupt: the header needs {8 + n + end:,} bytes, file has {size:,}"
        )
    return header


# bytes per element of every safetensors dtype: a header entry must claim exactly shape x size bytes
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip


def _check_entry(path: Path, name: str, meta) -> None:
    """One header entry: a known dtype, a shape of non-negative ints, offsets that span shape x dtype bytes."""
    try:
        begin, end = (int(x) for x in meta["data_offsets"])
        shape = [int(d) for d in meta["shape"]]
        width = DTYPE_BYTES[meta["dtype"]]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path.name} is corrupt: bad header entry for {name!r}") from None
    numel = 1
    for d in shape:
        numel *= d
    if min(shape, default=0) < 0 or begin < 0 or end - begin != numel * width:
        raise ValueError(
            f"{path.name} is truncated or corrupt: {name!r} ({meta['dtype']} {shape}) needs {numel * width:,} "
            f"bytes, its offsets give {end - begin:,}"
        )


def weight_files(folder: Path) -> list[Path]:
    """model.safetensors, or the shards a model.safetensors.index.json names. Refuses pickle-only folders."""
    if (folder / WEIGHTS).exists():
        return [folder / WEIGHTS]
    if (folder / WEIGHTS_INDEX).exists():
        try:
            index = json.loads((folder / WEIGHTS_INDEX).read_text(encoding="utf-8"))
            names = sorted(set(index.get("weight_map", {}).values()))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError):
            raise ValueError(f"{WEIGHTS_INDEX} is not a valid index (a JSON object with a weight_map)") from None
        return [_shard(folder, name) for name in names]
    shards = sorted(folder.glob("*.safetensors"))
    if shards:
        return shards
    pickles = [p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if pickles:
        raise ValueError(
            f"{folder} has only pickle weights ({', '.join(pickles[:3])}); they can run code when "
            "loaded, so only .safetensors files are accepted"
        )
    raise ValueError(f"{folder} has no model.safetensors")


def _shard(folder: Path, name) -> Path:
    """A shard an index names: a plain .safetensors file name inside `folder`, never a path that leads out of it
    (an index naming /etc/passwd or ../../app.py would otherwise have its size and first bytes read)."""
    ok = isinstance(name, str) and name.endswith(".safetensors") and not name.startswith(".")
    if not ok or "/" in name or "\\" in name or "\x00" in name or Path(name).name != name:
        raise ValueError(f"{WEIGHTS_INDEX} names a weight file outside its folder or not a .safetensors file")
    return folder / name


def read_weights(folder: Path, expected: dict[str, torch.Size], optional: set[str]) -> dict[str, torch.Tensor]:
    """Tensors named in `expected` (file names) after checking names, shapes and dtypes in the headers."""
    from safetensors import safe_open

    where: dict[str, tuple[Path, dict]] = {}
    for path in weight_files(folder):
        if not path.exists():
            raise ValueError(f"{folder} is missing the weight file {path.name}")
        for name, meta in read_header(path).items():
            where[name] = (path, meta)
    missing = [n for n in expected if n not in where and n not in optional]
    unexpected = [n for n in where if n not in expected and not HF_IGNORED.search(n)]
    if missing or unexpected:
        raise ValueError(f"weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, (path, meta) in where.items():
        if name not in expected:
            continue
        if meta.get("dtype") not in SAFETENSORS_DTYPES:
            raise ValueError(
                f"{path.name}: {name} has dtype {meta.get('dtype')!r}; expected one of {sorted(SAFETENSORS_DTYPES)}"
            )
        if tuple(meta.get("shape", ())) != tuple(expected[name]):
            raise ValueError(
                f"{path.name}: {name} has shape {meta.get('shape')}, the config needs {list(expected[name])}"
            )
    tensors = {}
    for path in sorted({p for n, (p, _) in where.items() if n in expected}):
        with safe_open(str(path), framework="pt") as f:
            tensors.update({n: f.get_tensor(n) for n in f.keys() if n in expected})  # noqa: SIM118
    return tensors


# ----------------------------------------------------------------------------------------------- loading
def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.exists():
        raise ValueError(f"{folder} has no config.json: not a model folder")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


# Bounds on every dimension a config.json may claim, checked before anything is built: a hostile config with
# 100,000 layers took 17 minutes and 5 GB to build even on the meta device, and 5e6 positions a 1.2 GB RoPE table.
CONFIG_BOUNDS = {"layers": 256, "width": 16_384, "heads": 256, "ffn": 65_536, "vocab": 1_000_000,
                 "context": 131_072, "head_size": 1_024}  # fmt: skip


def typed_config(config: dict) -> GPTConfig | LlamaConfig:
    """The GPTConfig / LlamaConfig a config.json dict describes, every dimension checked against CONFIG_BOUNDS
    (ValueError naming the first one out of bounds). Builds no module and allocates nothing."""
    kind = config.get("model_type") if isinstance(config, dict) else None
    try:
        if kind == GPT_TYPE:
            fields = set(GPTConfig.__dataclass_fields__)
            typed = GPTConfig(**{k: v for k, v in config.items() if k in fields})
            dims = {"layers": typed.n_layer, "width": typed.n_embd, "heads": typed.n_head, "vocab": typed.vocab_size,
                    "context": typed.context_length, "ffn": typed.mlp_ratio * typed.n_embd}  # fmt: skip
        elif kind == "llama":
            typed = LlamaConfig.from_hf(config)
            dims = {"layers": typed.n_layers, "width": typed.dim, "heads": typed.n_heads, "vocab": typed.vocab_size,
                    "context": typed.max_seq_len, "ffn": typed.ffn_dim, "head_size": typed.head_size}  # fmt: skip
        else:
            raise ValueError(
                f"unsupported architecture model_type={kind!r}: only Llama and playground GPT checkpoints load"
            )
    except TypeError as exc:  # a value of the wrong type (a list where a number goes, ...)
        raise ValueError(f"config.json has a value of the wrong type ({exc})") from None
    for name, value in dims.items():
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= CONFIG_BOUNDS[name]:
            raise ValueError(f"config.json: {name} = {value!r} is out of bounds (1 to {CONFIG_BOUNDS[name]:,} here)")
    return typed


def check_config(config: dict, max_params: int | None, what: str) -> GPTConfig | LlamaConfig:
    """typed_config, then the parameter count computed from it (no model built) against `max_params`."""
    from playground.introspect import param_count_of

    typed = typed_config(config)
    n = param_count_of(typed).total
    if max_params is not None and n > max_params:
        raise ValueError(
            f"{what} has {n / 1e6:.1f}M parameters; the limit here is {max_params / 1e6:.1f}M "
            "(raise PLAYGROUND_MAX_MODEL_PARAMS on a bigger machine)"
        )
    return typed


def model_from_config(config: dict, device: str | torch.device = "meta") -> nn.Module:
    """An uninitialised model (on the meta device by default: no memory) for a config.json dict."""
    kind = config.get("model_type")
    with torch.device(device):
        if kind == GPT_TYPE:
            fields = set(GPTConfig.__dataclass_fields__)
            return GPT(GPTConfig(**{k: v for k, v in config.items() if k in fields}))
        if kind == "llama":
            return Transformer(LlamaConfig.from_hf(config))
    raise ValueError(f"unsupported architecture model_type={kind!r}: only Llama and playground GPT checkpoints load")


def _target_dtype(stored: torch.dtype, device: torch.device, dtype) -> torch.dtype:
    from playground.device import parse_dtype

    if dtype is not None:
        return parse_dtype(dtype)
    if device.type == "cuda" and stored in (torch.bfloat16, torch.float16):
        return stored  # a GPU runs half-precision weights natively
    return torch.float32  # CPU (and MPS): half-precision matmuls are slow or missing there


def load_folder(folder: str | Path, device="cpu", max_params: int | None = None, dtype=None, tokenizer=None) -> Bundle:
    """A model folder written by `save` or by transformers' save_pretrained (Llama, safetensors)."""
    folder = Path(folder)
    config = _read_config(folder)
    check_config(config, max_params, folder.name)  # bounds and size from the config alone, before building
    model = model_from_config(config)
    llama = isinstance(model, Transformer)
    tied = model.config.tie_word_embeddings if llama else model.config.tie_weights
    head = "output.weight" if llama else "lm_head.weight"
    to_file = hf_name if llama else (lambda k: k)
    expected = {to_file(k): v.shape for k, v in model.state_dict().items()}
    # a tied head is optional in the file: many Hub checkpoints store lm_head.weight too (a copy of the embedding)
    tensors = read_weights(folder, expected, optional={to_file(head)} if tied else set())
    if tied:
        tensors.pop(to_file(head), None)  # the embedding is the one we keep (as transformers does)
    device = torch.device(device)
    stored = next(iter(tensors.values())).dtype
    target = _target_dtype(stored, device, dtype)
    from_file = {to_file(k): k for k in model.state_dict()}
    state = {from_file[k]: v.to(device=device, dtype=target) for k, v in tensors.items()}
    if tied:
        state[head] = state["tok_embeddings.weight" if llama else "wte.weight"]
    model.load_state_dict(state, strict=True, assign=True)
    if tied:  # assign=True made two Parameters; tie them again so training updates one matrix
        if llama:
            model.output.weight = model.tok_embeddings.weight
        else:
            model.lm_head.weight = model.wte.weight
    model.eval()
    tok = tokenizer if tokenizer is not None else _folder_tokenizer(folder)
    vocab = model.config.vocab_size
    if tok.vocab_size > vocab:
        raise ValueError(f"the tokenizer has {tok.vocab_size} tokens but the model only {vocab}")
    info = {
        **config.get("playground", {}),
        "arch": "llama" if llama else "gpt",
        "params": count_params(model),
        "source": str(folder),
        "folder": str(folder),
        "dtype": str(target).removeprefix("torch."),
        "stored_dtype": str(stored).removeprefix("torch."),
        "chat": bool(getattr(tok, "chat_template", None)),
        "vocab_size": vocab,
        "context": model.config.max_seq_len if llama else model.config.context_length,
    }
    return Bundle(model, tok, info)


def _folder_tokenizer(folder: Path):
    from playground.tokenizer import load_tokenizer

    names = ("tokenizer.model", "tokenizer.json", "tokenizer_config.json")
    if not any((folder / name).exists() for name in names):
        raise ValueError(f"{folder} has no tokenizer files ({', '.join(names)})")
    return load_tokenizer(str(folder))


def load(
    source: str | Path, device="cpu", max_params: int | None = None, dtype=None, tokenizer=None, local: bool = True
) -> Bundle:
    """A bundled name (see BUNDLED), a local folder, or a Hub id `org/name[@revision]` -> Bundle.
    Weights end up on `device`; stored bf16/fp16 load as float32 on CPU unless `dtype` says otherwise.
    `local=False` never looks at the disk for `source` (a public app: see check_source)."""
    text = str(source).strip()
    if not text:
        raise ValueError("no model given: use a bundled name, a folder or a Hub id like org/name")
    if text in BUNDLED:
        folder = Path(BUNDLED[text]["folder"])
        if not (folder / "config.json").exists():
            raise ValueError(
                f"the bundled model {text!r} is not in {folder} yet (train it with `python -m "
                "playground pretrain` or `align`)"
            )
        bundle = load_folder(folder, device, max_params, dtype, tokenizer)
        bundle.info.update(source=text, description=BUNDLED[text]["description"])
        return bundle
    path = Path(text).expanduser()
    if local and path.is_dir():
        return load_folder(path, device, max_params, dtype, tokenizer)
    if local and path.exists():
        raise ValueError(f"{text!r} is a file; give the folder that holds config.json and model.safetensors")
    if local and text.startswith((".", "/", "~")):
        raise ValueError(f"no such folder: {text!r}")
    limit = LIMITS.max_model_params if max_params is None else max_params
    folder = hub_folder(text, limit)
    bundle = load_folder(folder, device, limit, dtype, tokenizer)  # a cached snapshot is bounded the same
    bundle.info.update(source=text)
    return bundle


# ------------------------------------------------------------------------------------- sources from users
LOCAL_OFF = (
    "local folders are switched off on this server (a public app must not read its own disk for visitors); "
    "use a bundled name or a Hub id like org/name. PLAYGROUND_ALLOW_LOCAL_PATHS=1 turns them on for a private machine"
)


def check_source(source, allow_local: bool | None = None, extra_names: tuple[str, ...] = ()) -> str:
    """The policy for a model or tokenizer source a visitor types into the app, in one place.

    Bundled names (and `extra_names`) always pass; Hub ids `org/name[@rev]` pass when they name nothing on
    this disk; local paths pass only when `allow_local` (default: LIMITS.allow_local_paths). Returns the
    stripped text; ValueError with the reason otherwise. Loaders then use `load(..., local=allow_local)`.
    """
    text = str(source if source is not None else "").strip()
    if not text:
        raise ValueError("no model given: use a bundled name or a Hub id like org/name")
    if text in BUNDLED or text in extra_names:
        return text
    allow = LIMITS.allow_local_paths if allow_local is None else allow_local
    if "\x00" in text or len(text) > 300:
        raise ValueError(f"{text[:60]!r}... is not a bundled name or a Hub id like 'org/name'")
    on_disk = text.startswith((".", "/", "~", "\\")) or re.match(r"^[A-Za-z]:", text) is not None
    try:
        on_disk = on_disk or Path(text).expanduser().exists()
    except OSError:  # e.g. a name too long for the file system
        on_disk = True
    if on_disk and allow:
        return text  # the loader says if it is not a model folder
    if not allow:
        # One answer for a path that exists and one that does not (no file-existence oracle): the disk is only
        # consulted for names shaped like a Hub id, which then refuses as a path too.
        bad = on_disk
        try:
            parse_hub_id(text)
        except ValueError:
            bad = True
        if bad:
            raise ValueError(f"{text[:80]!r} is not a bundled name or a Hub id like 'org/name': {LOCAL_OFF}")
        return text
    parse_hub_id(text)  # URLs, '..', spaces: a clear ValueError
    return text


# ---------------------------------------------------------------------------------------- Hugging Face Hub
def hub_cache_dir() -> str:
    """The Hugging Face cache, read from the environment NOW (huggingface_hub reads it once at import)."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return constants.HF_HUB_CACHE


def _cached_snapshot(repo: str, revision: str | None) -> Path | None:
    """The local snapshot folder of repo@revision if it is cached with its config and safetensors, else None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo, revision=revision, cache_dir=hub_cache_dir(), local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    if (folder / "config.json").exists() and any(folder.glob("*.safetensors")):
        return folder
    return None


def hub_folder(text: str, max_params: int | None, max_bytes: int | None = None) -> Path:
    """Download (or find in the local cache) a Hub Llama repo; refuse pickles, big repos and big models first."""
    repo, revision = parse_hub_id(text)
    cached = _cached_snapshot(repo, revision)
    if cached is not None:
        return cached
    if hub_offline():
        raise ValueError(
            f"{text!r} is not in the local Hugging Face cache and the Hub is offline here "
            "(HF_HUB_OFFLINE=1); bundled models and local folders still work"
        )
    files = _hub_files(repo, revision, text)
    sha = files.pop("__sha__")
    wanted = _check_hub_files(text, files, LIMITS.max_download_bytes if max_bytes is None else max_bytes)
    config = json.loads(Path(_hub_download(repo, sha, "config.json")).read_text(encoding="utf-8"))
    check_config(config, max_params, text)  # every dimension and the size, from the config alone
    from huggingface_hub import snapshot_download

    log.info("downloading %s@%s: %s", repo, sha[:8], ", ".join(wanted))
    return Path(snapshot_download(repo, revision=sha, cache_dir=hub_cache_dir(), allow_patterns=wanted))


def _hub_files(repo: str, revision: str | None, text: str) -> dict:
    """{file name: size in bytes} of the repo at `revision`, plus '__sha__': the commit (network, 15 s timeout)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=True, timeout=15)
    except GatedRepoError:
        raise ValueError(f"{text} is gated: accept its licence on huggingface.co and log in first") from None
    except RevisionNotFoundError:
        raise ValueError(f"{text}: no such revision {revision!r}") from None
    except RepositoryNotFoundError:
        raise ValueError(f"{text}: no such model repo on the Hugging Face Hub (or it is private)") from None
    except Exception as exc:  # noqa: BLE001 - connection errors come in many types
        raise ValueError(
            f"could not reach the Hugging Face Hub for {text} ({type(exc).__name__}): offline? "
            "Bundled models and local folders still work"
        ) from None
    files = {s.rfilename: (s.size or 0) for s in (info.siblings or [])}
    files["__sha__"] = info.sha
    return files


def _check_hub_files(text: str, files: dict, max_bytes: int) -> list[str]:
    """The top-level files to fetch (configs, safetensors, tokenizer), after the pickle and size checks."""
    names = list(files)
    if not any(n.endswith(".safetensors") for n in names):
        pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise ValueError(
                f"{text} has only pickle weights ({', '.join(pickles[:3])}); they can run code when "
                "loaded, so only repos with .safetensors weights are accepted"
            )
        raise ValueError(f"{text} has no .safetensors weights")
    if "config.json" not in names:
        raise ValueError(f"{text} has no config.json")
    from fnmatch import fnmatch

    wanted = [n for n in names if "/" not in n and any(fnmatch(n, p) for p in HUB_ALLOW)]
    total = sum(files[n] for n in wanted)
    if total > max_bytes:
        raise ValueError(f"{text} would download {total / 1e9:.2f} GB; the limit here is {max_bytes / 1e9:.2f} GB")
    return wanted


def _hub_download(repo: str, sha: str, filename: str) -> str:
    from huggingface_hub import hf_hub_download

    return hf_hub_download(repo, filename, revision=sha, cache_dir=hub_cache_dir())
