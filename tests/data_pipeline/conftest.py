"""Fixtures building tiny MMRec-layout folders, and a per-session cache root."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from data_pipeline.cache import CACHE_DIR_ENV

#: A hand-checkable dataset: 4 users, 5 items. User 3 has no train row (a cold-start user).
TOY_ROWS = [
    (0, 0, 0),
    (0, 1, 0),
    (0, 2, 1),
    (0, 3, 2),
    (1, 1, 0),
    (1, 4, 0),
    (1, 0, 1),
    (1, 2, 2),
    (2, 2, 0),
    (2, 3, 0),
    (2, 4, 0),
    (2, 0, 1),
    (2, 1, 2),
    (3, 4, 1),
    (3, 3, 2),
]


@pytest.fixture(autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps every test's default cache out of the home folder (shared within the session)."""
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path_factory.getbasetemp() / "mrdib_cache"))


@pytest.fixture
def toy_rows() -> list[tuple[int, int, int]]:
    """The rows of the default `make_folder()` dataset."""
    return list(TOY_ROWS)


def inter_text(rows: Sequence[Sequence[object]], header: str = "userID\titemID\tx_label") -> str:
    return header + "\n" + "".join("\t".join(str(v) for v in row) + "\n" for row in rows)


@pytest.fixture
def make_folder(tmp_path: Path) -> Callable[..., Path]:
    """Factory: writes `<tmp>/<name>/<name>.inter` (rows or raw text) and `<modality>_feat.npy` files."""

    def make(
        name: str = "toy",
        rows: Sequence[Sequence[object]] = TOY_ROWS,
        text: str | None = None,
        features: dict[str, np.ndarray] | None = None,
    ) -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.inter").write_text(inter_text(rows) if text is None else text)
        if features is None:
            n_items = max(int(row[1]) for row in rows) + 1
            rng = np.random.default_rng(0)
            features = {"image": rng.standard_normal((n_items, 6)), "text": rng.standard_normal((n_items, 3))}
        for modality, array in features.items():
            np.save(folder / f"{modality}_feat.npy", array)
        return folder

    return make
