"""The output folder of a training run: checked writable before any work, held by one run at a time, and cleared
of an earlier run's files only.

- [`OutputDirLock`] is a lock file in the folder (`.vit-fer-run.lock`, holding the owning process id and host):
  a second run into the same folder stops at once, naming the first; the lock of a process that is gone (killed,
  crashed) is taken over.
- [`resolve_resume`] turns `--resume_from_checkpoint` (a path, `true`, `false`), `--overwrite_output_dir` and the
  folder's content into the checkpoint to resume from and what to remove first: with `--overwrite_output_dir`,
  the `checkpoint-*` folders and the files a run writes ([`run_files`]), never anything else, in a folder
  [`check_overwritable`] accepts (not the current directory, not one holding the dataset).
"""

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path


logger = logging.getLogger(__name__)

LOCK_NAME = ".vit-fer-run.lock"
CHECKPOINT_PATTERN = re.compile(r"checkpoint-\d+")
RUN_FILES = (
    # The saved model (weights, possibly sharded, config, processor, card) and what the Trainer writes beside it.
    "model.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "preprocessor_config.json",
    "README.md",
    "training_args.bin",
    "trainer_state.json",
    # train.py's results and plots.
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "test_results.json",
    "run_config.json",
    "confusion_matrix.png",
    "learning_curves.png",
    "reliability_diagram.png",
    # A cross-validation's summary (in the run's folder) and each fold's record (in the fold's).
    "cv_results.json",
    "cv_results.png",
    "cross_validation.json",
)
"""Names of the files a training run writes into its output folder, besides `checkpoint-*` folders, weight shards
(`model-00001-of-00002.safetensors`) and the code files listed in the saved `auto_map`."""

ADAPTER_DIR = "adapter"
ADAPTER_FILES = frozenset({"adapter_config.json", "adapter_model.safetensors", "README.md"})
"""The folder a LoRA run writes its adapter to, and the files peft's `save_pretrained` writes there."""

_SHARD = re.compile(r"model-\d+-of-\d+\.safetensors")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


class OutputDirError(ValueError):
    """The output folder cannot be used as asked: not writable, in use by another run, or not safe to clear."""


class OutputDirLock:
    """
    Holds `output_dir` for one run: creates the folder (checking that it is writable) and the lock file
    `output_dir/.vit-fer-run.lock` with this process's id and host. Use as a context manager; leaving it removes
    the lock (and the folder, when this run created it and left it empty).

    Raises:
        [`OutputDirError`] when the folder cannot be created or written, or another live process holds it.
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_NAME
        self._created = False

    def __enter__(self) -> "OutputDirLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> None:
        self._created = not self.output_dir.exists()
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            owner = self._describe_self()
            # Written whole to a temporary file, then linked in place: the lock never exists half-written, and
            # `link` fails when another run holds it.
            with tempfile.NamedTemporaryFile("w", dir=self.output_dir, prefix=".vit-fer-lock-", delete=False) as file:
                file.write(json.dumps(owner))
            try:
                for _ in range(2):
                    try:
                        os.link(file.name, self.path)
                        return
                    except FileExistsError:
                        self._take_over_if_stale()
                raise OutputDirError(f"--output_dir {self.output_dir}: could not take over the lock {self.path}.")
            finally:
                os.unlink(file.name)
        except OutputDirError:
            raise
        except OSError as error:
            raise OutputDirError(
                f"--output_dir {self.output_dir} is not a writable folder ({error.strerror or error}): choose another."
            ) from error

    def _take_over_if_stale(self) -> None:
        try:
            owner = json.loads(self.path.read_text())
            pid, host = int(owner["pid"]), str(owner["host"])
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, ValueError, KeyError, TypeError):
            raise OutputDirError(
                f"--output_dir {self.output_dir} holds a lock file {self.path} that is not vit-fer's: delete it if no "
                "other run uses the folder."
            ) from None
        if host != socket.gethostname() or _process_alive(pid):
            started = owner.get("started", "an unknown time")
            raise OutputDirError(
                f"--output_dir {self.output_dir} is in use by another run (process {pid} on {host}, started "
                f"{started}). Wait for it to end or choose another --output_dir; if that process is gone, delete "
                f"{self.path}."
            )
        # Renaming is atomic: of two runs finding the same stale lock, one takes it over, the other retries.
        stale = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.rename(self.path, stale)
        except FileNotFoundError:
            return
        stale.unlink()
        logger.warning("Took over the lock of %s from process %d on %s, which is no longer running.",
                       self.output_dir, pid, host)

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            return
        if self._created and not any(self.output_dir.iterdir()):
            self.output_dir.rmdir()

    @staticmethod
    def _describe_self() -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _contains(folder: Path, path: Path) -> bool:
    return path == folder or folder in path.parents


def run_files(output_dir: str | os.PathLike) -> list[Path]:
    """The checkpoints and files of `output_dir` that a training run wrote (see [`RUN_FILES`]) and a LoRA run's
    adapter folder; nothing else."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    names = set(RUN_FILES)
    for config_name in ("config.json", "preprocessor_config.json"):
        try:
            auto_map = json.loads((folder / config_name).read_text()).get("auto_map", {})
        except (OSError, ValueError, AttributeError):
            continue
        # "modeling_vit_fer.LateFusionViT" -> modeling_vit_fer.py (the code save_pretrained copied in).
        names |= {f"{str(reference).split('.')[0]}.py" for reference in dict(auto_map).values()}
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_dir() and not path.is_symlink() and CHECKPOINT_PATTERN.fullmatch(path.name):
            found.append(path)
        elif path.name == ADAPTER_DIR and _holds_only_an_adapter(path):
            found.append(path)
        elif path.is_file() and (path.name in names or _SHARD.fullmatch(path.name)):
            found.append(path)
    return found


def _holds_only_an_adapter(folder: Path) -> bool:
    """A LoRA run's adapter folder, with nothing in it that peft did not write (a stale adapter would pass for the
    new model's)."""
    if not folder.is_dir() or folder.is_symlink():
        return False
    entries = list(folder.iterdir())
    return bool(entries) and all(entry.is_file() and entry.name in ADAPTER_FILES for entry in entries)


def check_overwritable(output_dir: str | os.PathLike, protected: Iterable[str | os.PathLike] = ()) -> None:
    """
    Refuses `--overwrite_output_dir` for a folder that is the current directory or holds it, or that holds one of
    `protected` (the dataset): a run's folder must be its own.

    Raises:
        [`OutputDirError`] naming the reason.
    """
    folder = Path(output_dir).resolve()
    if _contains(folder, Path.cwd().resolve()):
        raise OutputDirError(
            f"--overwrite_output_dir: --output_dir {output_dir} is the current directory (or holds it), whose other "
            "files would be at risk. Give the run a folder of its own, e.g. --output_dir outputs/run."
        )
    for path in protected:
        if _contains(folder, Path(path).resolve()) or _contains(Path(output_dir).absolute(), Path(path).absolute()):
            raise OutputDirError(
                f"--overwrite_output_dir: --output_dir {output_dir} holds the dataset {path}. Give the run a folder "
                "of its own."
            )


def remove_paths(paths: Iterable[Path]) -> None:
    """Deletes the files and folders `paths` (an earlier run's, from [`resolve_resume`])."""
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def resolve_resume(
    output_dir: str | os.PathLike,
    resume_from_checkpoint: str | None,
    overwrite_output_dir: bool,
    protected: Iterable[str | os.PathLike] = (),
) -> tuple[str | None, list[Path]]:
    """
    The checkpoint a run resumes from, and what must be removed before it starts. Deletes nothing itself.

    - a path: that checkpoint (which must be complete);
    - `"true"`: the last complete checkpoint of `output_dir`; when the folder has only incomplete ones (a run
      killed while writing its first checkpoint), none: the run starts from scratch (logged), and those are
      removed;
    - `"false"` or unset: none. An earlier run's checkpoints in `output_dir` are then an error, unless
      `overwrite_output_dir`: its checkpoints and saved files ([`run_files`]) are removed, nothing else, once
      [`check_overwritable`] has accepted the folder.

    Raises:
        [`OutputDirError`]: a checkpoint path that is not one, `true` without any checkpoint, an earlier run in the
        way, or a folder that is not the run's own.
    """
    from .trainer import checkpoint_is_complete, last_complete_checkpoint

    folder = Path(output_dir)
    checkpoints = [path for path in run_files(folder) if path.is_dir() and CHECKPOINT_PATTERN.fullmatch(path.name)]
    requested = None if resume_from_checkpoint is None else str(resume_from_checkpoint).strip()
    if requested is not None and requested.lower() in _TRUE:
        if not checkpoints:
            raise OutputDirError(
                f"--resume_from_checkpoint true: {output_dir} holds no checkpoint to resume from (start without it)."
            )
        last = last_complete_checkpoint(folder)
        if last is None:
            logger.warning("--resume_from_checkpoint true: %s holds only incomplete checkpoints (the run was killed "
                           "while writing its first one): starting from scratch.", output_dir)
            return None, checkpoints
        return str(last), []
    if requested is not None and requested.lower() not in _FALSE:
        if not checkpoint_is_complete(requested):
            raise OutputDirError(
                f"--resume_from_checkpoint {requested} is not a complete checkpoint folder (its trainer_state.json, "
                "written last, is missing or cut short)."
            )
        return requested, []
    if overwrite_output_dir:
        check_overwritable(output_dir, protected)
        return None, run_files(folder)
    if checkpoints:
        raise OutputDirError(
            f"{output_dir} holds checkpoints of an earlier run. Continue it with --resume_from_checkpoint true, "
            "start afresh with --overwrite_output_dir (deletes that run's checkpoints and saved files, nothing "
            "else), or choose another --output_dir."
        )
    return None, []


@contextlib.contextmanager
def hold_output_dir(training_args, protected: Iterable[str | os.PathLike] = ()) -> Iterator[None]:
    """
    Prepares `training_args.output_dir` for a run and holds it until the run ends: locked by the main process
    ([`OutputDirLock`], which also checks that it is writable), the checkpoint to resume from resolved into
    `training_args.resume_from_checkpoint` (`None` for a fresh start), and an earlier run's files removed where
    [`resolve_resume`] says so. Runs before any model or data is built.
    """
    main = training_args.process_index == 0
    with OutputDirLock(training_args.output_dir) if main else contextlib.nullcontext():
        checkpoint, earlier = resolve_resume(
            training_args.output_dir, training_args.resume_from_checkpoint, training_args.overwrite_output_dir, protected
        )
        with training_args.main_process_first(local=False, desc="removing the earlier run"):
            if main:
                remove_paths(earlier)
        training_args.resume_from_checkpoint = checkpoint
        yield
