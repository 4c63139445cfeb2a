"""A method against its baseline seed by seed: paired differences and an exact sign-flip test.

The seed fixes a run's starting weights and data order, so an MRdIB run and the bare run of the same seed
differ only by MRdIB. Their per-seed difference then removes the spread that seeds cause on both sides
alike, which the two groups' separate means and standard deviations cannot: a change well inside either
side's spread can still be the same sign on every seed. The test is the paired permutation test (Fisher's
sign-flip test): under "no effect" each difference is as likely negative as positive, so the p-value is
the share of the 2^n sign assignments whose mean is at least as far from zero as the one observed (exact
up to 16 seeds, sampled above). It assumes no distribution, which is what three to ten seeds allow; its
smallest p-value is 2 / 2^n (0.25 for three seeds, 0.0625 for five), so few seeds can never show
significance.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Up to this many pairs the 2^n sign assignments are enumerated (65,536 rows); above it they are sampled.
MAX_EXACT_PAIRS = 16
#: Sign assignments drawn (with a fixed generator, so a table is reproducible) above `MAX_EXACT_PAIRS`.
SAMPLED_ASSIGNMENTS = 2**16


def sign_flip_p_value(differences: Sequence[float]) -> float:
    """Two-sided p-value of the paired sign-flip test that the mean difference is zero.

    Exact up to `MAX_EXACT_PAIRS` differences; above, a Monte Carlo estimate from `SAMPLED_ASSIGNMENTS`
    random assignments, (hits + 1) / (draws + 1), which never reports 0.

    Raises:
        ValueError: no difference, or not a flat sequence.
    """
    d = np.abs(np.asarray(differences, dtype=np.float64))
    if d.ndim != 1 or d.size < 1:
        raise ValueError(f"sign_flip_p_value needs a flat sequence of at least 1 difference, got shape {d.shape}.")
    threshold = abs(float(np.mean(differences))) * (1.0 - 1e-12)
    if d.size <= MAX_EXACT_PAIRS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float(np.mean(np.abs(signs @ d) / d.size >= threshold))
    signs = np.random.default_rng(0).choice((1.0, -1.0), size=(SAMPLED_ASSIGNMENTS, d.size))
    hits = int(np.sum(np.abs(signs @ d) / d.size >= threshold))
    return (hits + 1) / (SAMPLED_ASSIGNMENTS + 1)


@dataclass(frozen=True)
class PairedDifference:
    """One metric of a method against its baseline, over the seeds both were run on.

    Attributes:
        seeds: the shared seeds, ascending.
        method: the method's value per seed.
        baseline: the baseline's value per seed.
    """

    seeds: tuple[int, ...]
    method: tuple[float, ...]
    baseline: tuple[float, ...]

    @property
    def differences(self) -> np.ndarray:
        return np.asarray(self.method) - np.asarray(self.baseline)

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences))

    @property
    def std(self) -> float | None:
        """Sample standard deviation of the differences; None for a single pair."""
        return float(np.std(self.differences, ddof=1)) if len(self.seeds) > 1 else None

    @property
    def relative_change(self) -> float:
        """The method's mean over the baseline's, minus 1 (as the gain tables report it)."""
        return float(np.mean(self.method) / np.mean(self.baseline) - 1.0)

    @property
    def higher(self) -> int:
        """On how many seeds the method is above the baseline."""
        return int(np.sum(self.differences > 0))

    @property
    def p_value(self) -> float:
        return sign_flip_p_value(self.differences)


def paired_difference(method: Mapping[int, float], baseline: Mapping[int, float]) -> PairedDifference | None:
    """The pairs of `method` and `baseline` (seed -> value) on their shared seeds; None when none is shared."""
    seeds = tuple(sorted(set(method) & set(baseline)))
    if not seeds:
        return None
    return PairedDifference(seeds, tuple(float(method[s]) for s in seeds), tuple(float(baseline[s]) for s in seeds))


def paired_cell(difference: PairedDifference, digits: int = 4) -> str:
    """`+2.8% (+0.0012 ± 0.0004, 3/3 up, p 0.25)`: relative change of the means, then the paired view."""
    spread = "" if difference.std is None else f" ± {difference.std:.{digits}f}"
    return (f"{100 * difference.relative_change:+.1f}% ({difference.mean:+.{digits}f}{spread}, "
            f"{difference.higher}/{len(difference.seeds)} up, p {difference.p_value:.3g})")


#: Bootstrap resamples of the seeds behind an interval; the generator is fixed, so a table is reproducible.
BOOTSTRAP_DRAWS = 10_000


def pooled_relative_gain(cells: Sequence[PairedDifference], draws: int = BOOTSTRAP_DRAWS,
                         level: float = 0.95) -> tuple[float, float, float]:
    """The mean over cells of each cell's relative change, and its paired bootstrap interval.

    Each draw resamples every cell's seeds with replacement, keeping each seed's two runs together
    (the pairing), and averages the cells' relative changes; the interval is the draws' central
    `level` share. One cell gives that cell's own interval. Cells of any number of seeds may be pooled.

    Returns:
        (estimate, low, high), as fractions (0.05 is +5%).
    """
    if not cells:
        raise ValueError("pooled_relative_gain needs at least one paired cell.")
    rng = np.random.default_rng(0)
    estimate = float(np.mean([cell.relative_change for cell in cells]))
    totals = np.zeros(draws)
    for cell in cells:
        method, baseline = np.asarray(cell.method), np.asarray(cell.baseline)
        picks = rng.integers(0, method.size, size=(draws, method.size))
        totals += method[picks].mean(axis=1) / baseline[picks].mean(axis=1) - 1.0
    low, high = np.quantile(totals / len(cells), [(1 - level) / 2, (1 + level) / 2])
    return estimate, float(low), float(high)


def minimum_detectable_difference(difference_std: float, pairs: int, alpha: float = 0.05,
                                  power: float = 0.8) -> float:
    """The smallest mean paired difference a two-sided paired t-test on `pairs` seeds detects with `power`.

    (t_{1 - alpha/2, n-1} + t_{power, n-1}) x sd / sqrt(n), sd the standard deviation of the per-seed
    differences. The sign-flip test is stricter still: with n seeds its smallest p-value is 2 / 2^n,
    so five seeds (0.0625) can never reach p < 0.05 whatever the effect.
    """
    from scipy import stats

    if pairs < 2 or not difference_std >= 0:
        raise ValueError(f"minimum_detectable_difference needs >= 2 pairs and a std >= 0, got {pairs}, {difference_std}.")
    t = stats.t(df=pairs - 1)
    return float((t.ppf(1 - alpha / 2) + t.ppf(power)) * difference_std / np.sqrt(pairs))
