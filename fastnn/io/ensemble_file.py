"""The ensemble file: ``MLPEnsemble.save`` writes it, ``fastnn.load_ensemble`` reads it.

One ``.npz`` archive (``numpy.savez_compressed``, deflate-compressed, no pickle) holding
``description``, a 0-d unicode array of strict JSON ::

    {"format": "fastnn-ensemble", "format_version": 1, "fastnn_version": ...,
     "n_members": K, "member_seeds": [...], "bootstrap": bool}

and ``member_<k>`` for k = 0..K-1, a uint8 array holding member k's complete model file as
``MLP.save`` writes it (``fastnn.io.saving``), optimizer included when the member has one.
``read_ensemble`` reads the archive as ``fastnn.load`` reads a model file (each entry's
declared sizes checked against the file, each ``.npy`` header before its data, nothing
unpickled, members copied out in chunks one at a time) and each member with ``fastnn.load``,
so every check fastnn.io.saving makes applies to every member; any problem raises
``fastnn.io.saving.ModelFileError`` naming the file (and the member), fast and with memory
bounded by the file's size.  ``write_ensemble`` writes as ``MLP.save`` does (atomically,
keeping an existing file's permission bits, following a symbolic link, cleaning up after any
interrupt).
"""
import io
import json
import os
import struct
import tempfile
import zipfile
import zlib

import numpy as np

from fastnn._version import __version__  # not the package, which imports fastnn.ensemble
from fastnn.io.saving import (ModelFileError, load as _load_model, _check_path,
                              _description_header, _entries, _read_npy, _shown, _unique_keys,
                              _write_npz)
from fastnn.io.writer import write_output

__all__ = ["ENSEMBLE_FORMAT", "ENSEMBLE_FORMAT_VERSION", "MAX_MEMBERS", "read_ensemble",
           "write_ensemble"]

ENSEMBLE_FORMAT = "fastnn-ensemble"
ENSEMBLE_FORMAT_VERSION = 1
#: the most members an ensemble (and so its file) may have
MAX_MEMBERS = 10_000


def write_ensemble(target, members, member_seeds, bootstrap):
    """Write an ensemble file at `target`, atomically.

    Parameters
    ----------
    target : str
        A path ``fastnn.io.writer.check_output`` accepted.
    members : list of dict
        Each member's model-file arrays (``fastnn.io.saving.model_arrays``), in member order.
    member_seeds : list of int
    bootstrap : bool
    """
    description = {"format": ENSEMBLE_FORMAT, "format_version": ENSEMBLE_FORMAT_VERSION,
                   "fastnn_version": __version__, "n_members": len(members),
                   "member_seeds": list(member_seeds), "bootstrap": bootstrap}
    arrays = {}
    for k, member in enumerate(members):  # each member's complete model file
        buffer = io.BytesIO()
        _write_npz(buffer, member)
        arrays[f"member_{k}"] = np.frombuffer(buffer.getvalue(), dtype=np.uint8)
    arrays["description"] = np.array(json.dumps(description))
    # fastnn.io.writer's atomic write: a temporary file beside the target, fsynced and renamed
    # over it; an existing target keeps its permission bits, a symbolic link is followed,
    # and any exception (KeyboardInterrupt too) removes the temporary file and descriptor.
    # Compressed: besides the size, no member's own zip records appear verbatim in the
    # archive, where a reader of a truncated file could mistake them for the outer
    # archive's.
    write_output(target, lambda fh: np.savez_compressed(fh, **arrays))


def read_ensemble(path):
    """Read an ensemble file: its description and every member.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    path : str
        The checked path (as ``ModelFileError`` names it).
    description : dict
        The checked description (keys as in the module docstring).
    models : list of fastnn.MLP
    optimizers : list of optimizers or None
        Each member's, as ``fastnn.load(..., with_optimizer=True)`` returns it.

    Raises
    ------
    FileNotFoundError
        No such file.
    fastnn.io.saving.ModelFileError (a ValueError)
        As ``fastnn.load_ensemble`` documents.
    """
    path = _check_path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if not head.startswith(b"PK\x03\x04"):
            raise ModelFileError(path, "it is not a zip archive (.npz), so not an ensemble "
                                       "saved by fastnn")
        file_size = fh.seek(0, os.SEEK_END)
        fh.seek(0)
        models, optimizers = [], []
        with tempfile.TemporaryDirectory(prefix="fastnn-ensemble-") as tmp:
            try:
                with zipfile.ZipFile(fh) as archive:
                    entries = _entries(path, archive, file_size)
                    if "description" not in entries:
                        raise ModelFileError(path, f"it has no 'description' entry (entries: "
                                                   f"{sorted(entries)}); it is not an "
                                                   "ensemble saved by fastnn")
                    text = _read_npy(path, archive, entries["description"], "description",
                                     _description_header)
                    description = _parse_description(path, text)
                    K = description["n_members"]
                    for k in range(K):  # all present before any is read
                        if f"member_{k}" not in entries:
                            raise ModelFileError(path, f"it has no 'member_{k}' entry for its "
                                                       f"{K} members")
                    extra = sorted(set(entries) - {"description"}
                                   - {f"member_{k}" for k in range(K)})
                    if extra:
                        raise ModelFileError(path, f"it has the entries {extra[:5]}, which no "
                                                   f"ensemble of {K} members writes")
                    for k in range(K):
                        name = f"member_{k}"
                        member_path = os.path.join(tmp, f"{name}.npz")
                        _copy_member(path, archive, entries[name], name, member_path)
                        try:
                            model, optimizer = _load_model(member_path, with_optimizer=True)
                        except ModelFileError as exc:
                            raise ModelFileError(path, f"member {k}: {exc.problem}") from exc
                        finally:
                            os.unlink(member_path)
                        models.append(model)
                        optimizers.append(optimizer)
            except ModelFileError:
                raise
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
                    OverflowError, struct.error, NotImplementedError, RuntimeError) as exc:
                raise ModelFileError(path, f"the file is truncated or corrupted "
                                           f"({type(exc).__name__}: {exc})") from exc
    return path, description, models, optimizers


def _copy_member(path, archive, info, name, member_path):
    """Copy the bytes of a member entry (a 1-D uint8 .npy holding a model file) to
    member_path in chunks, its header checked first: memory stays bounded whatever the entry
    declares, and bytes that do not start as a zip archive are rejected before the rest is
    read."""
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise ModelFileError(path, f"its {name!r} entry has .npy format version "
                                       f"{version}; expected (1, 0) or (2, 0)")
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0) else
                       np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(fh)
        if dtype != np.uint8 or len(shape) != 1:
            raise ModelFileError(path, f"its {name!r} entry is a {dtype} array of shape "
                                       f"{shape}; expected 1-D uint8 bytes (a member's model "
                                       "file)")
        n_bytes = int(shape[0])
        if n_bytes > info.file_size:
            raise ModelFileError(path, f"its {name!r} entry declares {n_bytes} bytes of data "
                                       f"but holds at most {info.file_size}: the file is "
                                       "truncated or corrupted")
        left = n_bytes
        with open(member_path, "wb") as out:
            while left:
                chunk = fh.read(min(left, _COPY_CHUNK))
                if not chunk:
                    break
                if left == n_bytes and not chunk.startswith(b"PK\x03\x04"):
                    raise ModelFileError(path, f"member {name[7:]}: it is not a model file "
                                               "(its bytes do not start a zip archive)")
                out.write(chunk)
                left -= len(chunk)
        if left or fh.read(1):  # reading to the end checks the zip CRC
            raise ModelFileError(path, f"its {name!r} entry does not hold the {n_bytes} bytes "
                                       "its header declares: the file is truncated or "
                                       "corrupted")


#: the chunk in which a member's bytes are copied out of the archive
_COPY_CHUNK = 1 << 20


# every key any ensemble format version wrote in its description
_ENSEMBLE_KEYS = ("format", "format_version", "fastnn_version", "n_members", "member_seeds",
                  "bootstrap")


def _parse_description(path, raw):
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ModelFileError(path, f"its description has dtype {raw.dtype} and shape "
                                   f"{raw.shape}; expected a 0-d unicode array")
    try:
        d = json.loads(str(raw), parse_constant=_reject_constant,
                       object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise ModelFileError(path, f"its description is not valid JSON ({exc})") from exc
    if not isinstance(d, dict):
        raise ModelFileError(path, "its description is not a JSON object; it is not an "
                                   "ensemble saved by fastnn")
    if d.get("format") != ENSEMBLE_FORMAT:
        hint = " (a single model: use fastnn.load)" if d.get("format") == "fastnn-model" else ""
        raise ModelFileError(path, f"its format is {_shown(d, 'format')}; expected "
                                   f"{ENSEMBLE_FORMAT!r}{hint}")
    version = d.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(path, f"format_version is {_shown(d, 'format_version')}; "
                                   "expected an int >= 1")
    if version > ENSEMBLE_FORMAT_VERSION:
        raise ModelFileError(path, f"it was written in ensemble format version {version}; this "
                                   f"fastnn reads up to {ENSEMBLE_FORMAT_VERSION} (upgrade "
                                   "fastnn)")
    # as fastnn.load does: a key no version wrote means a layout this reader does not know
    unknown = sorted(set(d) - set(_ENSEMBLE_KEYS))
    if unknown:
        raise ModelFileError(path, f"its description has the keys {unknown[:5]}, which this "
                                   f"fastnn (ensemble format version "
                                   f"{ENSEMBLE_FORMAT_VERSION}) does not know: the file was "
                                   "written by a newer fastnn (upgrade fastnn to load it) or "
                                   "edited")
    K = d.get("n_members")
    if not isinstance(K, int) or isinstance(K, bool) or not 1 <= K <= MAX_MEMBERS:
        raise ModelFileError(path, f"n_members is {_shown(d, 'n_members')}; expected an int "
                                   f"in [1, {MAX_MEMBERS}]")
    seeds = d.get("member_seeds")
    if (not isinstance(seeds, list) or len(seeds) != K
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                       for s in seeds)):
        raise ModelFileError(path, f"member_seeds is {_shown(d, 'member_seeds')}; expected {K} "
                                   "ints >= 0")
    if not isinstance(d.get("bootstrap"), bool):
        raise ModelFileError(path, f"bootstrap is {_shown(d, 'bootstrap')}; expected true or "
                                   "false")
    return d


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")
