"""The model registry: bundled models (the package's ``weights/``) and the user's model folder, names, and
registering a model into that folder (and recovering what an interrupted registration left there).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from napari_lvseg.errors import LvsegError
from napari_lvseg.io.atomic import fsync_folder
from napari_lvseg.io.lock import FolderLock
from napari_lvseg.models.card import CARD_FILE, WEIGHTS_FILE, ModelCard, read_card
from napari_lvseg.models.weights import load_model_at, locate, read_safetensors, weight_files

USER_DIR_ENV = "LVSEG_MODELS_DIR"


@dataclass
class ModelEntry:
    name: str
    path: Path
    task: str
    source: str  # 'bundled' | 'user'
    card: ModelCard


def bundled_models_dir() -> Path:
    """The package's ``weights/`` folder (each subfolder a model directory)."""
    return Path(__file__).resolve().parent.parent / "weights"


def user_models_dir() -> Path:
    """``$LVSEG_MODELS_DIR``, else ``<user data dir>/napari-lvseg/models``."""
    env = os.environ.get(USER_DIR_ENV)
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_data_dir
    except ImportError:  # platformdirs comes with napari; fall back to the XDG default
        return Path.home() / ".local" / "share" / "napari-lvseg" / "models"
    return Path(user_data_dir("napari-lvseg")) / "models"


def _entries(root: Path, source: str, problems: list | None = None) -> list[ModelEntry]:
    """The model folders under ``root``; a folder with weights whose card cannot be read goes to ``problems`` (as
    its `LvsegError`) instead: a broken model folder must not hide the others."""
    if not root.is_dir():
        return []
    entries = []
    for sub in sorted(root.iterdir()):
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        if not (sub / WEIGHTS_FILE).is_file():
            continue
        try:
            card = read_card(sub)
        except LvsegError as exc:
            if problems is not None:
                problems.append(exc)
            continue
        entries.append(ModelEntry(sub.name, sub, card.task, source, card))
    return entries


def scan_models(task: str | None = None) -> tuple[list[ModelEntry], list[LvsegError]]:
    """`list_models`, and why each model folder it leaves out (weights, but a card that cannot be read) is left out:
    one pass over the folders."""
    problems: list = []
    recover_registrations(user_models_dir())
    entries = _entries(bundled_models_dir(), "bundled", problems) + _entries(user_models_dir(), "user", problems)
    return [e for e in entries if task is None or e.task == task], problems


def list_models(task: str | None = None) -> list[ModelEntry]:
    """Bundled models, then user models; only those of ``task`` when given. Broken folders are skipped
    (`scan_models` says which and why)."""
    return scan_models(task)[0]


def default_model_name(task: str, entries=None) -> str | None:
    """A bundled model whose card says ``"default": true``, else the first model of the task, else None.
    ``entries``: the task's `list_models`, when the caller has them already."""
    entries = list_models(task) if entries is None else entries
    for entry in entries:
        if entry.source == "bundled" and entry.card.is_default:
            return entry.name
    return entries[0].name if entries else None


def resolve(ref, task: str | None = None) -> Path:
    """Path of a model given a path or registry name (None: the task's default model).

    A name is looked up among user models first (so a user model can shadow a bundled one of the same
    name), then bundled ones; a directory name or the card's name both match.
    """
    if ref is None or ref == "":
        name = default_model_name(task) if task else None
        if name is None:
            raise LvsegError(f"no {task} model installed" if task else "no model given")
        ref = name
    path = Path(ref).expanduser()
    if path.exists():
        return path
    entries = list_models()
    for source in ("user", "bundled"):
        for entry in entries:
            if entry.source == source and ref in (entry.name, entry.card.name):
                return entry.path
    known = ", ".join(sorted({e.name for e in entries if task is None or e.task == task})) or "none"
    raise LvsegError(f"no such file, folder or registered model (registered: {known})", ref)


def load_model(ref, task: str | None = None):
    """Load ``(model, card)`` from a registry name (None: the task's default model), model directory, run folder or
    weights file (`weights.load_model_at`).

    The model comes back in eval mode, float32, on the CPU. Any problem is a one-line LvsegError.
    """
    return load_model_at(resolve(ref, task), task)


def model_card_only(ref, task: str | None = None) -> ModelCard:
    """A model's card alone (no weights loaded): what a progress count needs (its grid, whether it rescales)."""
    card, _ = locate(resolve(ref, task))
    return read_card(card)


def check_model_name(name, source=None) -> str:
    """A registry name is a plain folder name."""
    if not isinstance(name, str) or not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", os.sep)):
        raise LvsegError(f"invalid model name {name!r} (a plain name, no path)", source)
    return name


def _taken_names() -> dict:
    """{name: what has it} of the bundled and user models, and of user folders that are no listed model (a broken
    card): registering under one of them would replace it, or be shadowed by it."""
    root = user_models_dir()
    taken = {p.name: f"the user folder {p}" for p in root.iterdir()} if root.is_dir() else {}
    taken.update({e.name: f"the {e.source} {e.task} model {e.name}" for e in list_models()})
    return taken


def check_free_model_name(name: str) -> str:
    """``name`` for a model about to be registered, refused when another model has it: a bundled one would be
    shadowed, a user one replaced (the GUI too registers only under a name no other model has)."""
    holder = _taken_names().get(check_model_name(name))
    if holder is not None:
        raise LvsegError(f"--name {name}: {holder} has this name; choose another --name")
    return name


def free_model_name(name: str) -> str:
    """``name``, or ``name-2``, ``name-3``, ... if a bundled or user model (of any task) already has it."""
    taken = _taken_names()
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}-{k}"
    return candidate


def registered_copy(src_dir) -> Path | None:
    """The user model holding the same tensors as the model in ``src_dir``, if one is registered (each save of a
    model writes a new save tag into its file, so the files themselves differ)."""
    import torch

    _, weights = locate(Path(src_dir))
    root = user_models_dir()
    if not root.is_dir():
        return None
    mine = None
    for candidate in sorted(root.iterdir()):
        other = candidate / WEIGHTS_FILE
        if candidate.name.startswith(".") or not other.is_file():
            continue
        try:
            theirs = read_safetensors(other)
            mine = read_safetensors(weights) if mine is None else mine
        except Exception:  # noqa: BLE001 - an unreadable user model is simply not this one
            continue
        if theirs.keys() == mine.keys() and all(torch.equal(theirs[k], mine[k]) for k in mine):
            return candidate
    return None


def register_model(src_dir, name: str | None = None, unique: bool = False) -> Path:
    """Copy a model directory (its card and weights only) into the user model folder; return the new path.

    A user model of the same name is replaced, unless ``unique``: then the name gets a free suffix
    (two run folders called "run" must not replace each other's model)."""
    src = Path(src_dir)
    card_path, weights_path = locate(src)
    if weights_path.suffix.lower() != ".safetensors":
        raise LvsegError("only model directories with model.safetensors can be registered", src)
    card = read_card(card_path)
    name = check_model_name(name or card.name, src)
    if unique:
        name = free_model_name(name)
    card.name = name
    root = user_models_dir()
    root.mkdir(parents=True, exist_ok=True)
    dest = root / name
    with FolderLock(root, "user model folder").acquire(wait=True):   # registrations one at a time, a scan aside
        recover_registrations(root, locked=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
        try:
            for file in weight_files(weights_path):
                shutil.copy2(file, staging / (WEIGHTS_FILE if file == weights_path else file.name))
            (staging / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
            if dest.exists():  # swap the old one out, then drop it; a kill in between: `recover_registrations`
                old = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.old."))
                os.replace(dest, old / name)
                os.replace(staging, dest)
                fsync_folder(root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, dest)
                fsync_folder(root)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return dest


# what `register_model` makes beside the models (mkdtemp: 8 random characters): a copy in progress, and the model
# being replaced, in a folder of its own
_STAGING = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}")
_REPLACED = re.compile(r"\.(?P<name>.+)\.old\.[a-z0-9_]{8}")


def recover_registrations(root, locked: bool = False) -> list:
    """Undo what a `register_model` killed part-way left in the user model folder ``root``: a model swapped out but
    not yet replaced goes back under its name (else it would vanish from the registry), a replaced one and an
    unfinished copy are removed. Return the names put back. Nothing is done while a registration is under way in
    another process (``locked``: this one holds the folder's lock)."""
    root = Path(root)
    try:
        hidden = [p for p in root.iterdir() if p.is_dir() and _STAGING.fullmatch(p.name)]
    except OSError:   # no user folder yet, or one that cannot be read: nothing of ours to recover
        return []
    if not hidden:
        return []
    lock = FolderLock(root, "user model folder")
    if not locked and not lock.try_acquire():
        return []   # a registration is under way: its folders are not left over
    restored = []
    try:
        for folder in hidden:
            replaced = _REPLACED.fullmatch(folder.name)
            model, dest = (folder / replaced["name"], root / replaced["name"]) if replaced else (None, None)
            if model is not None and model.is_dir() and not dest.exists():   # killed between the two renames
                os.replace(model, dest)
                restored.append(dest.name)
            shutil.rmtree(folder, ignore_errors=True)
        fsync_folder(root)
    except OSError:   # a read-only user folder: listing goes on; the next scan that may write recovers
        pass
    finally:
        lock.release()
    return restored
