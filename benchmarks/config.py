"""What one benchmark run measures, and the defaults of the quick and the full mode."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# Systems in table order. The reference (system 4) is what ratios are taken against.
SYSTEMS: tuple[str, ...] = (
    "edgesent",
    "student-fp32",
    "teacher-int8",
    "teacher-pytorch",
    "distilbert-ref",
    "teacher-optimum",
    "tfidf-lr",
    "vader",
)
REFERENCE = "distilbert-ref"
# Systems whose accuracy evaluation is capped by --max-eval-slow (fp32 PyTorch / Optimum).
SLOW_SYSTEMS = frozenset({"teacher-pytorch", "distilbert-ref", "teacher-optimum"})
LENGTHS: tuple[int, ...] = (16, 64, 256)
TYPICAL_LENGTH = 64
BATCH_SIZE = 32
COLD_START_TEXT = "The charger stopped working after two days and support never answered."


@dataclass
class RunConfig:
    """Options of ``python -m benchmarks run``; :meth:`for_mode` fills the mode's defaults.

    >>> cfg = RunConfig.for_mode(quick=True)
    >>> cfg.rounds, cfg.cold_runs
    (2, 1)
    """

    quick: bool = False
    bundle: Path | None = None
    build_dir: Path | None = None
    data_dir: Path | None = None
    sources: Path | None = None
    out_dir: Path = Path("benchmarks/results/full")
    work_dir: Path | None = None
    systems: tuple[str, ...] = SYSTEMS
    threads: tuple[int, ...] = (1, 2)
    lengths: tuple[int, ...] = LENGTHS
    max_eval: int | None = None
    max_eval_slow: int | None = 1000
    rss_reviews: int = 10_000
    ref_reviews: int = 300
    reference_config: str = "base"
    cell_seconds: float = 3.0
    min_reps: int = 10
    max_reps: int = 400
    min_batches: int = 3
    rounds: int = 3
    cold_runs: int = 3
    cold_warmup: int = 1
    seed: int = 13
    time_limit_min: float = 20.0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def for_mode(cls, quick: bool, **overrides: Any) -> RunConfig:
        """Defaults of the quick or the full mode, then ``overrides`` (None values ignored)."""
        base: dict[str, Any] = {"quick": quick}
        if quick:
            base.update(
                out_dir=Path("benchmarks/results/quick"), max_eval=200, max_eval_slow=50,
                rss_reviews=300, ref_reviews=100, cell_seconds=0.3, min_reps=3, max_reps=50,
                min_batches=1, rounds=2, cold_runs=1, cold_warmup=0, time_limit_min=5.0,
            )
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown RunConfig options: {sorted(unknown)}")
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def validate(self) -> None:
        """Raise ValueError for options that cannot work together."""
        unknown = [s for s in self.systems if s not in SYSTEMS]
        if unknown:
            raise ValueError(f"unknown systems {unknown}; choose among {', '.join(SYSTEMS)}")
        if not self.systems:
            raise ValueError("--systems selects no system")
        if any(t < 1 for t in self.threads) or not self.threads:
            raise ValueError(f"--threads must list positive integers, got {self.threads}")
        if any(n < 4 for n in self.lengths) or not self.lengths:
            raise ValueError(f"--lengths must list token counts of at least 4, got {self.lengths}")
        if self.reference_config not in ("base", "tiny"):
            raise ValueError("--reference-config must be 'base' or 'tiny'")
        if self.rounds < 1 or self.cell_seconds <= 0 or self.cold_runs < 0:
            raise ValueError("--rounds must be at least 1, --cell-seconds positive and "
                             "--cold-runs at least 0")
        for name in ("max_eval", "max_eval_slow"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")

    @property
    def eval_threads(self) -> int:
        """Threads of the process that measures accuracy and peak RSS."""
        return max(self.threads)

    @property
    def typical_length(self) -> int:
        """The length the main table reports (64 tokens, or the nearest one measured)."""
        return min(self.lengths, key=lambda n: abs(n - TYPICAL_LENGTH))

    def eval_cap(self, system: str) -> int | None:
        """Test rows per set that ``system`` classifies (None: all)."""
        caps = [self.max_eval]
        if system in SLOW_SYSTEMS:
            caps.append(self.max_eval_slow)
        present = [c for c in caps if c is not None]
        return min(present) if present else None

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out
