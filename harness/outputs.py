"""What a training run writes to its work directory, shared by both training scripts.

- `MetricsWriter`: one row per call to `<kind>.csv` (`train.csv`, `eval.csv`) with columns
  `step,seed,<scalars>`, and the same scalars to TensorBoard (one event folder per seed
  under `tb/`, so seeds show as separate runs).
- `write_json`, `write_text`, `save_pytree`, `load_pytree`: atomic JSON and msgpack files (no pickle).
- `Checkpointer`: whole-run checkpoints, written atomically, the newest few kept.
"""

import csv
import io
import json
import math
import os
from typing import Any, Optional

import flax.serialization
import jax
import numpy as np

from harness import sweep


def _atomic_write(path: str, data: bytes) -> None:
    """Write to a temporary file, then rename: readers see the old file or the new one."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
    _atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_text(path: str, text: str) -> None:
    _atomic_write(path, text.encode())


def _is_key(x: Any) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _keys_to_data(tree: Any) -> Any:
    # Typed PRNG keys have no NumPy form; store their raw uint32 data instead.
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def save_pytree(path: str, tree: Any) -> None:
    """Serialise a pytree of arrays (e.g. an agent) to msgpack with flax.serialization."""
    _atomic_write(path, flax.serialization.to_bytes(jax.device_get(_keys_to_data(tree))))


def load_pytree(path: str, template: Any) -> Any:
    """Read a msgpack file written by `save_pytree` into the structure of `template`.

    `template` may also be a function of the file's raw state dict returning the template
    (for files whose structure depends on their contents). Array shapes come from the file.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        raw = flax.serialization.msgpack_restore(data)
        if callable(template):
            template = template(raw)
        restored = flax.serialization.from_state_dict(_keys_to_data(template), raw)
    except Exception as e:  # msgpack raises several types for truncated or foreign bytes
        raise ValueError(f"{path} is not a file saved from this kind of agent: {type(e).__name__}: {e}") from e
    return jax.tree.map(
        lambda t, x: jax.random.wrap_key_data(x, impl=jax.random.key_impl(t)) if _is_key(t) else x,
        template,
        restored,
    )


def _scalar(x: Any) -> Optional[float | int | str]:
    """A CSV cell: None, a label string (e.g. the phase), an int count, or a float."""
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return int(x)
    return float(np.asarray(x))


def _cell(text: str) -> Optional[float | int | str]:
    """A CSV cell read back: '' -> None, numbers -> int/float, anything else stays text."""
    if text == "":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


class MetricsWriter:
    """Fans scalar metrics out to `<workdir>/<kind>.csv` and TensorBoard.

    With `resume_step`, existing CSVs are kept up to that step (rows logged after the
    checkpoint being resumed are dropped; the resumed run writes them again) and continued.
    """

    def __init__(self, workdir: str, tensorboard: bool = True, append: bool = False,
                 resume_step: Optional[int] = None, enabled: bool = True):
        self.workdir, self.enabled = workdir, enabled  # disabled: every process but the first writes nothing
        self._append = append or resume_step is not None
        self._files: dict[str, Any] = {}
        self._writers: dict[str, csv.DictWriter] = {}
        self._tensorboard = tensorboard
        self._tb: dict[str, Any] = {}
        self.rows: dict[str, list[dict]] = {}
        if resume_step is not None and enabled:
            for kind in ("train", "eval"):
                self._truncate(kind, resume_step)

    def _truncate(self, kind: str, last_step: int) -> None:
        path = os.path.join(self.workdir, f"{kind}.csv")
        if not os.path.exists(path):
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fieldnames = reader.fieldnames or []
            kept = [r for r in reader if int(r["step"]) <= last_step]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(kept)
        _atomic_write(path, buffer.getvalue().encode())
        self.rows[kind] = [{k: _cell(v) for k, v in r.items()} for r in kept]

    @staticmethod
    def _header(path: str) -> list[str]:
        with open(path, newline="") as f:
            return next(csv.reader(f), [])

    def _tb_writer(self, name: str):
        if name not in self._tb:
            from tensorboardX import SummaryWriter  # imported lazily: optional output

            self._tb[name] = SummaryWriter(os.path.join(self.workdir, "tb", name))
        return self._tb[name]

    def write_seeds(self, kind: str, step: int, seeds: list[int], columns: Optional[dict],
                    extra: Optional[dict] = None, hyperparameters: Optional[list[dict]] = None) -> None:
        """One row per seed: {step, seed, **hyperparameters[i], **{name: columns[name][i]},
        **extra} (columns hold a value per seed, e.g. the training metrics fetched from the
        device; `hyperparameters`, a sweep member's swept values, also name its TensorBoard
        folder)."""
        if columns is None:
            return
        for i, seed in enumerate(seeds):
            hyper = hyperparameters[i] if hyperparameters else {}
            self.write(kind, step, seed, {**hyper, **{k: v[i] for k, v in columns.items()}, **(extra or {})},
                       tb_name=os.path.join(sweep.describe(hyper, ","), f"seed_{seed}"))

    def write(self, kind: str, step: int, seed: int, scalars: dict, tb_name: Optional[str] = None) -> None:
        """Append one row {step, seed, **scalars}; None values are written as empty cells.
        TensorBoard scalars go to tb/<tb_name> (default seed_<seed>)."""
        if not self.enabled:
            return
        row = {"step": int(step), "seed": int(seed), **{k: _scalar(v) for k, v in scalars.items()}}
        if kind not in self._writers:
            path = os.path.join(self.workdir, f"{kind}.csv")
            continuing = self._append and os.path.exists(path)
            fieldnames = self._header(path) if continuing else list(row)
            f = open(path, "a" if continuing else "w", newline="")
            self._files[kind] = f
            self._writers[kind] = csv.DictWriter(f, fieldnames=fieldnames)
            if not continuing:
                self._writers[kind].writeheader()
        unknown = set(row) - set(self._writers[kind].fieldnames)
        if unknown:
            raise ValueError(f"{kind}.csv has no column(s) {sorted(unknown)}; its columns are fixed by its first row")
        self._writers[kind].writerow({k: "" if v is None else v for k, v in row.items()})
        self._files[kind].flush()
        self.rows.setdefault(kind, []).append(row)
        if self._tensorboard:
            tb = self._tb_writer(tb_name or f"seed_{seed}")
            for k, v in scalars.items():
                v = _scalar(v)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    tb.add_scalar(f"{kind}/{k}", v, step)
            tb.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        for tb in self._tb.values():
            tb.close()
        self._files, self._writers, self._tb = {}, {}, {}

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Checkpointer:
    """Whole-run checkpoints: `<workdir>/checkpoints/ckpt_<step>.msgpack`, newest `keep` kept.

    Each file is written to a temporary name, flushed and renamed, so a crash mid-write leaves
    the previous checkpoints as they were. `restore` takes the newest file that reads back into
    the given template and says which unreadable (truncated, foreign) files it skipped.
    """

    def __init__(self, workdir: str, keep: int = 3):
        self.folder = os.path.join(workdir, "checkpoints")
        self.keep = max(1, keep)

    def steps(self) -> list[int]:
        """Steps of the complete checkpoint files, newest first."""
        if not os.path.isdir(self.folder):
            return []
        names = [n for n in os.listdir(self.folder) if n.startswith("ckpt_") and n.endswith(".msgpack")]
        return sorted((int(n[5:-8]) for n in names), reverse=True)

    def path(self, step: int) -> str:
        return os.path.join(self.folder, f"ckpt_{step:09d}.msgpack")

    def save(self, step: int, state: Any) -> str:
        os.makedirs(self.folder, exist_ok=True)
        path = self.path(step)
        save_pytree(path, state)
        for old in self.steps()[self.keep:]:
            os.remove(self.path(old))
        return path

    def restore(self, template: Any) -> Optional[tuple[int, Any]]:
        for step in self.steps():
            try:
                return step, load_pytree(self.path(step), template)
            except (OSError, ValueError) as e:
                print(f"skipping unreadable checkpoint {self.path(step)}: {e}")
        return None

    def due(self, step: int, interval: int, last_step: int) -> bool:
        """Whether the loop saves at `step`: every `interval` steps (0: never) and at the end."""
        return step == last_step or bool(interval and step % interval == 0)

