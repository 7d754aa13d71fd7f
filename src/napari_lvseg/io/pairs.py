"""The one on-disk format for (image, mask) pairs: GUI corrections, synthetic sets, training data.

Layout::

    root/images/<name>.tif      float32 slice (Y, X) or stack (Z, Y, X)   (.nii.gz also read)
    root/masks/<name>.tif       uint8 labels 0..4, same shape
    root/manifest.jsonl         one JSON record per pair: name, origin, source, model, seed, created, ...

A pair's manifest line is written before its files, so a pair never exists without its line: a kill between the
two leaves a line whose files are missing, which readers leave out (a warning names it), and a writer that holds
the folder drops (`drop_incomplete`). Readers never guess a pair's origin: in a folder with a manifest, files in
images/ + masks/ without a line (an interrupted write by an older version, or copied in by hand) are left out with
a warning, never counted as real data. Only a folder without any manifest, made by hand, lists its pairs as origin
'real'.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from stat import S_ISREG

import numpy as np

from napari_lvseg.errors import LvsegError, warn
from napari_lvseg.io.volume import atomic_path, check_image, check_labels, check_pair, full_suffix

ORIGINS = ("real", "corrected", "synthetic")
MANIFEST = "manifest.jsonl"
_SUFFIXES = (".tif", ".tiff", ".nii.gz", ".nii")
_FORMATS = {"tiff": ".tif", "nifti": ".nii.gz"}


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "pair"


def _file_in(relative: str, folder: str) -> bool:
    """Whether a manifest path names a file directly inside ``folder`` ("images/x.tif"): no absolute path, no "..".
    A file there that is a link is replaced or removed as a link, never followed, so the name is what counts."""
    parts = PurePosixPath(relative).parts
    return len(parts) == 2 and parts[0] == folder and parts[1] not in ("", ".", "..")


def _stem(path: Path) -> str:
    suffix = full_suffix(path)
    return path.name[: len(path.name) - len(suffix)]


class PairFolder:
    """(image, mask) pairs under ``root``; see the module docstring for the layout."""

    def __init__(self, root):
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.masks_dir = self.root / "masks"
        self.manifest_path = self.root / MANIFEST

    @classmethod
    def open(cls, root) -> "PairFolder":
        """An existing folder with at least one pair, else LvsegError."""
        folder = cls(root)
        if not folder.root.is_dir() or len(folder) == 0:
            raise LvsegError("no pairs found (expected images/ and masks/ with matching files)", root)
        return folder

    @staticmethod
    def is_pair_folder(path) -> bool:
        path = Path(path)
        return (path / "images").is_dir() and (path / "masks").is_dir()

    def check_writable(self) -> None:
        """Pairs may be added here: not under a file, and not into an EMIDEC case or dataset folder, which would read
        as a pair folder once it has images/ and masks/, its cases hidden from training."""
        from napari_lvseg.io.atomic import check_output_folder
        from napari_lvseg.io.emidec import is_case_folder, is_dataset_folder

        check_output_folder(self.root, "is a file: a pair folder cannot be made there")   # a few stat calls per add()
        if self.is_pair_folder(self.root):   # every add() asks: an existing pair folder answers at once
            return
        if is_case_folder(self.root) or is_dataset_folder(self.root):
            raise LvsegError("holds EMIDEC cases: pairs written here would hide them (a folder with images/ and "
                             "masks/ reads as a pair folder); choose another folder", self.root)

    # -- reading -------------------------------------------------------------------------------
    def _manifest_records(self) -> list[dict]:
        """The manifest's records, checked (copies: callers may change them)."""
        return [dict(record) for record in self._manifest()[0]]

    def _manifest(self) -> tuple[list[dict], str]:
        """(records, text) of the manifest, read and parsed once per version of the file (no file: none, ''): a
        training run reads thousands of pairs, each looked up here."""
        try:
            stat = self.manifest_path.stat()
        except FileNotFoundError:
            return [], ""
        if not S_ISREG(stat.st_mode):
            return [], ""
        version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if getattr(self, "_parsed", (None,))[0] != version:
            try:
                text = self.manifest_path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise LvsegError("not a UTF-8 text file", self.manifest_path) from None
            self._parsed = (version, self._parse_manifest(text), text)
        return self._parsed[1:]

    def _parse_manifest(self, text: str) -> list[dict]:
        lines = text.splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise LvsegError(f"line {number} is not valid JSON", self.manifest_path) from None
            if not isinstance(record, dict) or "name" not in record:
                raise LvsegError(f"line {number} has no pair name", self.manifest_path)
            for key, folder in (("image", self.images_dir), ("mask", self.masks_dir)):
                # the manifest names files this folder reads, replaces and deletes: only its own
                if key in record and not (isinstance(record[key], str) and
                                          _file_in(record[key], folder.name)):
                    raise LvsegError(f"line {number}: {key} {record[key]!r} is not a file in {folder.name}/",
                                     self.manifest_path)
            records.append(record)
        return records

    def _files(self, folder: Path) -> dict[str, Path]:
        if not folder.is_dir():
            return {}
        files = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and not path.name.startswith(".") and full_suffix(path) in _SUFFIXES:
                files.setdefault(_stem(path), path)
        return files

    def records(self) -> list[dict]:
        """Manifest records of complete pairs (file order); in a folder without a manifest, the image/mask pairs
        found on disk, as origin 'real'. What is left out is said, one warning per pair (`incomplete`)."""
        records, incomplete = self._complete_records()
        for name, why in incomplete:
            warn(f"pair {name} left out: {why}", self.root)
        return records

    def incomplete(self) -> list[tuple[str, str]]:
        """(name, why) of each pair left out of `records`: a manifest line whose image or mask file is missing (a
        write interrupted after its line), or files in a folder with a manifest that no line names."""
        return self._complete_records()[1]

    def _complete_records(self) -> tuple[list[dict], list[tuple[str, str]]]:
        records = self._manifest_records()
        on_disk = {folder.name: set(os.listdir(folder)) if folder.is_dir() else set()
                   for folder in (self.images_dir, self.masks_dir)}
        complete, incomplete = [], []
        for record in records:
            missing = [record[key] for key in ("image", "mask") if key in record
                       and PurePosixPath(record[key]).name not in on_disk[PurePosixPath(record[key]).parts[0]]]
            if missing:
                incomplete.append((record["name"], f"its manifest line names {' and '.join(missing)}, which "
                                   f"{'is' if len(missing) == 1 else 'are'} missing (an interrupted write)"))
            else:
                complete.append(record)
        known = {r["name"] for r in records}
        has_manifest = self.manifest_path.is_file()
        masks = self._files(self.masks_dir)
        for name, image in self._files(self.images_dir).items():
            if name in known or name not in masks:
                continue
            if has_manifest:   # lvseg writes a line before the files: these came another way, origin unknown
                incomplete.append((name, f"images/{image.name} and masks/{masks[name].name} have no line in "
                                   f"{MANIFEST}, so what they are (real, corrected, synthetic) is unknown (an "
                                   "interrupted write, or copied in by hand: add their line, or remove them)"))
                continue
            complete.append({"name": name, "origin": "real", "source": str(image), "model": None,
                             "seed": None, "created": None,
                             "image": f"images/{image.name}", "mask": f"masks/{masks[name].name}"})
        return complete, incomplete

    def drop_incomplete(self) -> list[str]:
        """Remove the manifest lines whose files are missing, and the one file of such a pair that was written;
        return their names. Only for a writer that holds the folder (`io.lock.FolderLock`): a live writer's pair
        is incomplete between its line and its files. Files without a line are left alone (they may be a user's)."""
        records, text = self._manifest()
        complete = {r["name"] for r in self._complete_records()[0]}
        dropped = [r for r in records if r["name"] not in complete]
        if not dropped:
            return []
        kept = [r for r in records if r["name"] in complete]
        self._write_manifest([dict(r) for r in kept],
                             "".join(json.dumps(r, default=_json_default) + "\n" for r in kept))
        for record in dropped:
            for key in ("image", "mask"):
                if record.get(key):
                    (self.root / record[key]).unlink(missing_ok=True)
        return [r["name"] for r in dropped]

    def __len__(self) -> int:
        return len(self.records())

    def names(self) -> list[str]:
        return [r["name"] for r in self.records()]

    def _paths(self, name: str) -> tuple[Path, Path]:
        for record in self._manifest()[0]:
            if record["name"] == name and "image" in record and "mask" in record:
                return self.root / record["image"], self.root / record["mask"]
        image, mask = self._files(self.images_dir).get(name), self._files(self.masks_dir).get(name)
        if image is None or mask is None:
            raise LvsegError(f"no pair named '{name}'", self.root)
        return image, mask

    def read(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(image float32, mask uint8) of pair ``name``."""
        return self.read_with_spacing(name)[:2]

    def read_with_spacing(self, name: str) -> tuple[np.ndarray, np.ndarray, tuple]:
        """(image float32, mask uint8, the image file's spacing (z, y, x), 1.0 where unknown) of pair ``name``."""
        from napari_lvseg.io import read_image, read_labels

        image_path, mask_path = self._paths(name)
        volume = read_image(image_path)
        image = volume.data.astype(np.float32, copy=False)
        mask = read_labels(mask_path).data
        check_pair(image, mask, mask_path)
        return image, mask, volume.spacing

    def find(self, source) -> dict | None:
        """The latest record made from ``source`` (a file path), or None."""
        matches = [r for r in self.records() if r.get("source") is not None and Path(r["source"]) == Path(source)]
        if not matches:
            return None
        # Latest by creation time; among equal times (or none recorded) the later manifest line wins.
        return max(enumerate(matches), key=lambda item: (item[1].get("created") or "", item[0]))[1]

    # -- writing -------------------------------------------------------------------------------
    def _new_name(self, source, origin: str) -> str:
        """A fresh pair name: source stem, time to the second and a random tag, drawn again while taken (many
        variants of one mask are added within a second)."""
        prefix = _safe_name(_stem(Path(source))) if source else origin
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        while True:
            name = f"{prefix}_{stamp}_{secrets.token_hex(2)}"
            if not any((self.images_dir / f"{name}{suffix}").exists() for suffix in _FORMATS.values()):
                return name

    def add(self, image: np.ndarray, mask: np.ndarray, *, origin: str, source=None, model=None, seed=None,
            name: str | None = None, fmt: str = "tiff", spacing=None, **extra) -> str:
        """Store a pair (replacing any pair of the same name) and return its name; ``spacing`` ((z,) y, x, in mm)
        is kept in the image's and the mask's files."""
        if origin not in ORIGINS:
            raise LvsegError(f"origin must be one of {', '.join(ORIGINS)}, not '{origin}'", self.root)
        if fmt not in _FORMATS:
            raise LvsegError(f"pair format must be 'tiff' or 'nifti', not '{fmt}'", self.root)
        name = self._new_name(source, origin) if name is None else name
        if name != _safe_name(name):
            raise LvsegError(f"pair name '{name}' may use only letters, digits, '.', '_' and '-'", self.root)
        try:
            json.dumps(extra, default=_json_default)
        except TypeError as exc:
            raise LvsegError(f"manifest field cannot be stored ({exc})", self.root) from None
        where = source if source is not None else self.root
        image = check_image(image, where).astype(np.float32, copy=False)
        mask = check_labels(mask, where)
        check_pair(image, mask, where)

        self.check_writable()
        old, old_text = self._manifest()   # a manifest that cannot be read stops the write before any file is made
        suffix = _FORMATS[fmt]
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.masks_dir.mkdir(parents=True, exist_ok=True)
        image_path, mask_path = self.images_dir / f"{name}{suffix}", self.masks_dir / f"{name}{suffix}"
        if fmt == "tiff":
            from napari_lvseg.io.tiff import write_tiff as write
        else:
            from napari_lvseg.io.nifti import write_nifti as write

        record = {"name": name, "origin": origin, "source": None if source is None else str(source),
                  "model": model, "seed": seed, "created": datetime.now(timezone.utc).isoformat(),
                  "image": f"images/{image_path.name}", "mask": f"masks/{mask_path.name}", **extra}
        line = json.dumps(record, default=_json_default) + "\n"
        replaced = [previous for previous in old if previous["name"] == name]
        if replaced:
            records = [r for r in old if r["name"] != name]
            text = "".join(json.dumps(r, default=_json_default) + "\n" for r in records) + line
        else:   # the common case, a new pair: its line appended to the text, the others not encoded again
            records = old
            text = old_text + ("\n" if old_text and not old_text.endswith("\n") else "") + line
        # The line first, then the files: a kill in between leaves a line without its files, which readers leave
        # out, never files without a line (which a reader could not tell from real data).
        self._write_manifest(records + [json.loads(line)], text)   # the record as a parse of the manifest gives it
        meta = None if spacing is None else {"spacing": tuple(float(v) for v in spacing)}
        write(image_path, image, meta)
        write(mask_path, mask, meta)
        for previous in replaced:  # a replaced pair stored in the other format leaves no stale files behind
            for key in ("image", "mask"):
                stale = self.root / previous.get(key, "")
                if previous.get(key) and stale not in (image_path, mask_path) and stale.is_file():
                    stale.unlink()
        return name

    def _write_manifest(self, records: list[dict], text: str) -> None:
        """Write the manifest ``text`` and keep ``records`` (its parse) as its parsed version: a folder filled pair
        by pair would otherwise parse and encode a growing manifest once per pair (minutes for 2,000 pairs)."""
        with atomic_path(self.manifest_path) as tmp:
            tmp.write_text(text, encoding="utf-8")
            stat = tmp.stat()   # the replace keeps inode, mtime and size: the version `_manifest` will see
        self._parsed = ((stat.st_ino, stat.st_mtime_ns, stat.st_size), records, text)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (Path,)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
