"""`python -m playground publish FOLDER --repo-id ORG/NAME`: a checkpoint folder to a Hugging Face model repo.

What goes up is staged first, in one place (`stage`): the folder's weights, config and tokenizer files (safetensors
and JSON only, never a pickle) and a model card, README.md, whose YAML metadata huggingface_hub's ModelCardData
reads back (license, datasets, base_model for an aligned model, tags, pipeline_tag, library_name) above the
folder's own card. `--dry-run OUTDIR` writes that staged folder and stops; otherwise `create_repo` +
`upload_folder` send the very same folder (files over 10 MB go through LFS/Xet by themselves). The folder must
load with `checkpoints.load_folder` first: a broken checkpoint is never published.

Log in first (`hf auth login`, or HF_TOKEN in the environment) with a token that may write to ORG.
"""

from __future__ import annotations

import argparse
import re
import shutil
import tempfile
from pathlib import Path

from playground import checkpoints, hub

UPLOAD_FILES = (
    "config.json", "generation_config.json", checkpoints.WEIGHTS, checkpoints.WEIGHTS_INDEX, "tokenizer.model",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "train_log.json",
)  # fmt: skip
CARD = "README.md"
# licence ids the Hub's card validator knows (huggingface.co/docs/hub/repositories-licenses), the common ones
HUB_LICENSES = frozenset(
    "apache-2.0 mit bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear isc unlicense wtfpl zlib cc0-1.0 cc-by-2.0 "
    "cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 "
    "cc-by-nc-nd-4.0 cc-by-nc-sa-4.0 pddl odc-by odbl gpl-2.0 gpl-3.0 lgpl-2.1 lgpl-3.0 agpl-3.0 mpl-2.0 epl-2.0 "
    "openrail openrail++ creativeml-openrail-m bigscience-openrail-m bigcode-openrail-m llama2 llama3 gemma".split()
)
PROJECT = "LLM Playground"


def source_folder(source: str) -> Path:
    """A bundled name (llama-aligned, ...) or a folder -> the checkpoint folder (ValueError if it is not one)."""
    folder = Path(checkpoints.BUNDLED[source]["folder"]) if source in checkpoints.BUNDLED else Path(source)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{source!r} is not a checkpoint folder (no config.json): give a folder or a bundled name")
    return folder


def card_data(info: dict, repo_id: str, license: str, datasets: list[str], base_model: str | None):
    """The card's metadata as a huggingface_hub ModelCardData (checked by it as it is built)."""
    from huggingface_hub import ModelCardData

    if license not in HUB_LICENSES:
        raise ValueError(f"{license!r} is not a licence id the Hub knows; e.g. mit, apache-2.0, cc-by-4.0")
    arch = info["arch"]
    aligned = bool(info.get("alignment") or info.get("base"))
    tags = ["llm-playground", "education", arch, "text-generation"] + (["orpo", "chat"] if aligned else [])
    if aligned and not base_model:
        base = str(info.get("base") or "")
        if not base:
            raise ValueError("an aligned model needs its base: pass --base-model ORG/NAME")
        # a bundled base (llama-base) is published beside this one, under the same owner
        base_model = base if "/" in base else f"{repo_id.split('/')[0]}/{base}"
    if base_model:
        hub.parse_hub_id(base_model)
    return ModelCardData(
        license=license,
        datasets=list(datasets) or None,
        base_model=base_model,
        tags=tags,
        pipeline_tag="text-generation",
        # our Llamas are saved in transformers' Llama layout; the course GPT loads with this project (PyTorch) only
        library_name="transformers" if arch == "llama" else "pytorch",
        model_name=repo_id.split("/")[1],
        ignore_metadata_errors=False,
    )


def card_text(folder: Path, info: dict, repo_id: str, data) -> str:
    """The whole README.md: metadata, how to load it, then the folder's own card (its relative links made text)."""
    from huggingface_hub import ModelCard

    own = (folder / CARD).read_text(encoding="utf-8") if (folder / CARD).exists() else ""
    own = re.sub(r"\A---\n.*?\n---\n", "", own, flags=re.S)  # an older card's metadata is replaced by ours
    own = re.sub(r"\[([^\]]+)\]\((?!https?://)[^)]*\)", r"\1", own)  # links into the repository would break here
    load = [
        "```python",
        f"from playground import checkpoints  # with {PROJECT} installed",
        f'bundle = checkpoints.load("{repo_id}")',
        "```",
    ]
    if info["arch"] == "llama":
        load[1:1] = [
            "from transformers import AutoModelForCausalLM, AutoTokenizer",
            f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
            "# or, in the playground:",
        ]
    own = own.strip()
    title = f"# {repo_id.split('/')[1]}"
    if own.startswith("# "):  # the folder's own title heads the card
        title, _, own = own.partition("\n")
    body = "\n".join(
        [
            title,
            "",
            f"A {info['params'] / 1e6:.2f}M-parameter {info['arch']} checkpoint made with {PROJECT} "
            "(safetensors weights, JSON config, SentencePiece tokenizer).",
            "",
            "## Load it",
            *load,
            "",
            own.strip(),
            "",
        ]
    )
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}", ignore_metadata_errors=False)
    return str(card)


def stage(source: str, out: Path, repo_id: str, license: str = "mit", datasets=(), base_model=None) -> list[str]:
    """Write exactly what would be uploaded into the empty folder `out`; returns the file names."""
    hub.parse_hub_id(repo_id)
    if "@" in repo_id:
        raise ValueError("give the revision with --revision, not in --repo-id")
    folder = source_folder(source)
    bundle = checkpoints.load_folder(folder)  # refuse what does not load
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: the dry run writes exactly what would be uploaded, nothing else")
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for name in UPLOAD_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)
            names.append(name)
    if (folder / checkpoints.WEIGHTS_INDEX).is_file():  # sharded weights: the shards the index names
        for path in checkpoints.weight_files(folder):
            shutil.copyfile(path, out / path.name)
            names.append(path.name)
    data = card_data(bundle.info, repo_id, license, list(datasets), base_model)
    (out / CARD).write_text(card_text(folder, bundle.info, repo_id, data), encoding="utf-8")
    return sorted([*names, CARD])


def upload(staged: Path, repo_id: str, revision: str | None, private: bool, token=None) -> str:
    """create_repo + (create_branch) + upload_folder of a staged folder; returns the commit's URL. Network."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(staged),
        repo_type="model",
        revision=revision,
        commit_message=f"Upload {repo_id.split('/')[1]} from {PROJECT}",
    )
    return str(getattr(info, "commit_url", info))


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m playground publish", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="a checkpoint folder, or a bundled name (gpt-tiny, llama-base, llama-aligned)")
    p.add_argument("--repo-id", required=True, help="the model repo to create or update, ORG/NAME")
    p.add_argument("--revision", default=None, help="a branch to upload to (created if missing); default main")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--license", default="mit", help="the card's licence id (default: mit, as the project)")
    p.add_argument("--dataset", action="append", default=[], help="a Hub dataset id the model was trained on "
                   "(repeatable); the card's text names the shipped data either way")  # fmt: skip
    p.add_argument("--base-model", default=None, help="the base model's Hub id (an aligned model's default: "
                   "its bundled base under the same owner, e.g. ORG/llama-base)")  # fmt: skip
    p.add_argument("--dry-run", metavar="OUTDIR", default=None, help="write what would be uploaded here; no network")
    args = p.parse_args(argv)
    kw = dict(license=args.license, datasets=args.dataset, base_model=args.base_model)
    try:
        if args.dry_run:
            names = stage(args.folder, Path(args.dry_run), args.repo_id, **kw)
            print(f"dry run: {len(names)} files in {args.dry_run} would go to {args.repo_id}: {', '.join(names)}")
            return 0
        with tempfile.TemporaryDirectory(prefix="pg-publish-") as tmp:
            names = stage(args.folder, Path(tmp) / "repo", args.repo_id, **kw)
            url = upload(Path(tmp) / "repo", args.repo_id, args.revision, args.private)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    print(f"uploaded {len(names)} files to {args.repo_id}: {url}")
    return 0
