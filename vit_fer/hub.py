# Copyright 2026 The vit-fer authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Publishing trained vit-fer folders to the Hugging Face Hub.

[`create_hub_repo`] checks that this machine can publish (online, logged in, with write access) and creates the
repository; [`publish`] uploads the files that make up the model repository ([`repository_files`]: weights, config
with `auto_map`, code, processor, card, plots — never training leftovers) with a card naming the repository, which
replaces the local README.md only once the upload succeeded: a failed publish changes nothing in the folder. Every Hub
failure becomes a [`PublishError`] that says what to do.
"""

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from .model_card import CARD_NAME, OVERLAYS_DIR, build_model_card, read_json, require_key


# Publishing uploads the model repository's files, never training leftovers: `training_args.bin` (a pickle),
# `checkpoint-*` folders, TensorBoard `runs/`.
REPOSITORY_SUFFIXES = (".safetensors", ".json", ".py", ".png", ".md")


class PublishError(RuntimeError):
    """Publishing to the Hub failed for a reason the user must fix: offline, not logged in, no access."""


def repository_files(output_dir: str | Path, card_required: bool = True) -> list[str]:
    """
    The files of `output_dir` that make up the model repository, after checking that it is complete: weights,
    `config.json` with an `auto_map` whose code files are present, `preprocessor_config.json`, and the card (unless
    `card_required=False`: a card built for the upload replaces it).
    """
    folder = Path(output_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder.")
    config = read_json(folder, "config.json")
    processor = read_json(folder, "preprocessor_config.json")
    auto_map = {**require_key(config, "auto_map", "config.json"), **processor.get("auto_map", {})}
    required = {"config.json", "preprocessor_config.json"} | ({CARD_NAME} if card_required else set())
    required |= {f"{reference.split('.')[0]}.py" for reference in auto_map.values()}
    files = sorted(path.name for path in folder.iterdir() if path.is_file() and path.suffix in REPOSITORY_SUFFIXES)
    # The card shows an explanation overlay from this subfolder.
    files += sorted(f"{OVERLAYS_DIR}/{path.name}" for path in (folder / OVERLAYS_DIR).glob("*.png"))
    missing = sorted(required - set(files))
    if not any(name.endswith(".safetensors") for name in files):
        missing.append("model.safetensors")
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a complete model repository: missing {missing}. Train with train.py (which saves the "
            "model, the processor and the card), or run `vit-fer card` for a missing README.md."
        )
    return files


@contextlib.contextmanager
def _hub_errors(repo_id: str, endpoint: str) -> Iterator[None]:
    """Turns the Hub's connection and HTTP errors into [`PublishError`]s that say what to do."""
    try:
        yield
    except (httpx2.TransportError, OfflineModeIsEnabled) as error:
        raise PublishError(
            f"Cannot publish: the Hub at {endpoint} is unreachable ({error}). Check the network connection "
            "(and HF_ENDPOINT), then run again."
        ) from error
    except HfHubHTTPError as error:
        status = error.response.status_code
        if status == 401:
            advice = "the token was rejected; run `hf auth login --force` or set HF_TOKEN to a valid token"
        elif status == 403:
            advice = f"the token has no write access to {repo_id}; use a write token or a namespace you can write to"
        else:
            advice = "see the message from the Hub"
        raise PublishError(f"Cannot publish to {repo_id}: {advice} (HTTP {status}: {error}).") from error


def create_hub_repo(repo_id: str, private: bool | None = None, token: str | None = None) -> str:
    """
    Checks that this machine can publish (online, logged in, with write access) and creates the Hub model repository
    `repo_id` if it does not exist. train.py calls it before training, so that a run meant for the Hub fails at once
    rather than after hours.

    Args:
        repo_id (`str`):
            `"name"` (in your namespace) or `"namespace/name"`.
        private (`bool`, *optional*):
            Whether a newly created repository is private (default: your account's default).
        token (`str`, *optional*):
            A Hub token with write access; defaults to `HF_TOKEN` or the token of `hf auth login`.

    Returns:
        The repository's full id, `"namespace/name"`.

    Raises:
        [`PublishError`]: offline mode, no token, a rejected token, no write access, or the Hub unreachable — with
        what to do about it.
    """
    if constants.is_offline_mode():
        raise PublishError(
            "Cannot publish: Hugging Face Hub offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set). "
            "Unset it and run again on a machine that can reach the Hub."
        )
    if (token or get_token()) is None:
        raise PublishError(
            "Cannot publish: not logged in to the Hugging Face Hub. Run `hf auth login` or set HF_TOKEN to a token "
            "with write access (https://huggingface.co/settings/tokens)."
        )
    api = HfApi(token=token)
    with _hub_errors(repo_id, api.endpoint):
        return api.create_repo(repo_id, private=private, exist_ok=True).repo_id


def publish(
    output_dir: str | Path,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload vit-fer model",
    refresh_card: bool = True,
    license: str = "apache-2.0",
    write_card: bool = False,
) -> str:
    """
    Uploads a trained checkpoint folder to a Hub model repository, creating the repository if needed. Nothing in
    the folder changes unless the upload is attempted: the refreshed card goes into the upload, and replaces the
    local README.md only once the upload succeeded (or, with `write_card`, once the repository exists).

    Args:
        output_dir (`str` or `Path`):
            The folder: model, processor, card, plots, run files (see [`repository_files`] for what is uploaded).
        repo_id, private, token:
            As in [`create_hub_repo`].
        commit_message (`str`, *optional*):
            The message of the upload commit.
        refresh_card (`bool`, *optional*, defaults to `True`):
            Whether to upload a card rebuilt from the folder's files, naming the repository it is published to.
            `False` uploads the folder's README.md as it is (e.g. after editing it by hand).
        license (`str`, *optional*, defaults to `"apache-2.0"`):
            License written in a refreshed card.
        write_card (`bool`, *optional*, defaults to `False`):
            Write the refreshed card to the folder's README.md before uploading, even if the upload then fails.

    Returns:
        The URL of the upload commit.

    Raises:
        [`PublishError`] as [`create_hub_repo`]; `FileNotFoundError` when the folder is not a complete repository.
    """
    folder = Path(output_dir)
    if refresh_card:
        # Everything the card needs is checked by building it, before the Hub is contacted.
        build_model_card(folder, repo_id=repo_id, license=license)
    files = repository_files(folder, card_required=not refresh_card)
    full_repo_id = create_hub_repo(repo_id, private=private, token=token)
    card = str(build_model_card(folder, repo_id=full_repo_id, license=license)) if refresh_card else None
    if card is not None and write_card:
        (folder / CARD_NAME).write_text(card)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name))
                  for name in files if not (card is not None and name == CARD_NAME)]
    if card is not None:
        operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card.encode()))
    api = HfApi(token=token)
    with _hub_errors(full_repo_id, api.endpoint):
        commit = api.create_commit(repo_id=full_repo_id, operations=operations, commit_message=commit_message)
    if card is not None and not write_card:
        (folder / CARD_NAME).write_text(card)
    return commit.commit_url


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `vit-fer publish`."""
    parser.add_argument("output_dir", type=Path, help="The training output folder.")
    parser.add_argument("repo_id", help="`name` (in your namespace) or `namespace/name`.")
    parser.add_argument("--private", action="store_true", default=None, help="Create the repository private.")
    parser.add_argument("--commit_message", default="Upload vit-fer model", help="Message of the upload commit.")
    parser.add_argument("--keep_card", action="store_true", help="Upload README.md as it is, without refreshing it.")
    parser.add_argument(
        "--write_card",
        action="store_true",
        help="Write the refreshed card to README.md before uploading (by default only after a successful upload).",
    )
    parser.add_argument("--license", default="apache-2.0", help="Hub license id written in the refreshed card.")


def run_publish_command(args: argparse.Namespace) -> int:
    """`vit-fer publish`: uploads OUTPUT_DIR to the Hub repository REPO_ID."""
    try:
        url = publish(
            args.output_dir,
            args.repo_id,
            private=args.private,
            commit_message=args.commit_message,
            refresh_card=not args.keep_card,
            license=args.license,
            write_card=args.write_card,
        )
    except PublishError as error:
        raise SystemExit(f"vit-fer publish: {error}") from error
    print(f"Published {args.output_dir} to {url}")
    return 0


PUBLISH_HELP = "Upload a trained checkpoint folder (model, processor, card, plots) to the Hugging Face Hub."


__all__ = [
    "PublishError",
    "add_publish_arguments",
    "create_hub_repo",
    "publish",
    "repository_files",
    "run_publish_command",
]
