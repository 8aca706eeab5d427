"""Prompt training learns a signal planted in the cached features (issue 12, item 5).

The `tiny` model's random-init features carry no anomaly signal, so trained vs untrained prompts on them
measures the features, not the trainer. Here a known signal is planted in `learn_cache`'s features as the
trainer and the scorer read them (`CachedSamples.item` / `.scoring`; the product code is untouched):
- a patch token (24x24 grid, 14x14 pixels a cell) whose block of the view's `mask2d` holds an anomalous pixel
  gets + PLANT_PATCH x its own norm x d_patch;
- the global embedding of a view whose mask holds an anomalous pixel gets + PLANT_GLOBAL x its norm x d_global.
d_patch and d_global are fixed unit vectors of the encoder's output space (D = 128 for `tiny`), orthogonal to
each other and to the untrained prompts' g_a - g_n, so that untrained prompts (and a trainer that never steps)
score the planted signal near chance. The added vectors are a fifth of the features' norm (about 2.2 against
11.1-11.2 for `ball`; its patch tokens lie about 0.39 of their norm from their mean, its global embeddings 0.03),
so a planted token keeps a cosine of about 0.98 to its original; similarity.py normalises downstream.
Half of the `ball` samples train, the other half are held out and scored by evaluate's path (`score_cloud`:
back-projection, sigma = 4 grid smoothing, global score), with sklearn's roc_auc_score.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from pointad_pipe.model.inference import score_cloud
from pointad_pipe.pipeline.cache.schema import CachedSamples, EncodedRow, ScoringRow
from pointad_pipe.pipeline.catalog import load_catalog
from pointad_pipe.pipeline.jobs import train as train_job
from pointad_pipe.pipeline.stages.train import TrainConfig, collate, prompt_learner, step_terms

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PLANT_PATCH = 0.2  # x each patch token's own norm
PLANT_GLOBAL = 0.2  # x each view's global embedding's norm
EPOCHS = 15  # the command's default, for the one- and two-term rows
ALL_FOUR = ("3dg", "3dl", "2dg", "2dl")


@dataclasses.dataclass(frozen=True)
class Plant:
    """Fixed directions added to the features of anomalous patches and anomalous views."""

    d_patch: np.ndarray  # (D,) unit
    d_global: np.ndarray  # (D,) unit
    a_patch: float = PLANT_PATCH
    a_global: float = PLANT_GLOBAL

    def apply(self, patch: np.ndarray, glob: np.ndarray, mask: np.ndarray,
              grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Planted copies of (K, L, P, D) patch tokens and (K, D) global embeddings, given (K, H, W) masks."""
        hits = patch_hits(mask, grid)  # (K, P)
        patch = patch.astype(np.float32)
        glob = glob.astype(np.float32)
        patch = patch + self.a_patch * np.linalg.norm(patch, axis=-1, keepdims=True) * hits[:, None, :, None] \
            * self.d_patch
        glob = glob + self.a_global * np.linalg.norm(glob, axis=-1, keepdims=True) * hits.any(1)[:, None] \
            * self.d_global
        return patch, glob


def patch_hits(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(K, P) bool: patch p of view k covers an anomalous pixel of its (H/h x W/w) block (row-major cells)."""
    k, h, w = mask.shape
    gh, gw = grid
    return mask.reshape(k, gh, h // gh, gw, w // gw).max(axis=(2, 4)).reshape(k, gh * gw) > 0


def planted_samples(plant: Plant) -> type[CachedSamples]:
    """A `CachedSamples` whose training and scoring rows carry the planted signal."""

    class PlantedSamples(CachedSamples):
        reads = 0  # training rows handed out, so that a test can check the trainer read these

        def item(self, r: int) -> EncodedRow:
            type(self).reads += 1
            it = super().item(r)
            patch, glob = plant.apply(it.patch, it.glob, it.mask, self.grid)
            return dataclasses.replace(it, patch=patch, glob=glob)

        def scoring(self, r: int, organized: bool, with_rgb: bool) -> ScoringRow:
            row = super().scoring(r, organized, with_rgb)
            patch, glob = plant.apply(row.patch[:, None], row.glob, np.asarray(self.render["mask2d"][r]), self.grid)
            return dataclasses.replace(row, patch=patch[:, 0], glob=glob)

    return PlantedSamples


@dataclasses.dataclass(frozen=True)
class Setup:
    data: train_job.TrainData
    spec: object
    weights: object
    layers: tuple[int, ...]
    shape: tuple[int, int]
    train_rows: list[int]
    held_out: list[int]
    plant: Plant


@pytest.fixture(scope="module")
def setup(learn_cache: Path) -> Setup:
    """`ball` of learn_cache: every other sample (2 of each defect kind, 2 good) trains, the rest is held out."""
    catalog = load_catalog(learn_cache)
    data = train_job.select_rows(catalog, catalog.dataset("s"), ["ball"], "test")
    spec, weights = train_job.check_model(data.encode, None, None)
    assert data.clean.attrs["organized"] and len(data.rows) == 24
    with torch.no_grad():
        g_n, g_a = prompt_learner(None, TrainConfig(), spec, weights, "cpu")().numpy()
    rng = np.random.default_rng(12)
    basis, _ = np.linalg.qr(np.column_stack([g_a - g_n, rng.standard_normal((len(g_a), 2))]))
    plant = Plant(basis[:, 1].astype(np.float32), basis[:, 2].astype(np.float32))
    return Setup(data, spec, weights, (int(data.encode.attrs["layers"][-1]),), tuple(data.clean.attrs["grid_shape"]),
                 data.rows[0::2], data.rows[1::2], plant)


def held_out_auroc(su: Setup, text: torch.Tensor, samples_cls: type[CachedSamples]) -> tuple[float, float]:
    """(point AUROC pooled over the held-out points, image AUROC over the held-out samples), evaluate's scoring."""
    samples = samples_cls(su.data.view, su.layers)
    ys, maps, labels, globals_ = [], [], [], []
    for r in su.held_out:
        row = samples.scoring(r, True, False)
        amap, g = score_cloud(row.patch, row.glob, row.pt2pix, text, samples.grid, samples.size, row.xyz, row.grid,
                              su.shape)
        ys.append(row.y)
        maps.append(amap)
        labels.append(int(samples.labels[r]))
        globals_.append(g)
    return float(roc_auc_score(np.concatenate(ys), np.concatenate(maps))), float(roc_auc_score(labels, globals_))


def text_of(su: Setup, cfg: TrainConfig, checkpoint: Path | None = None) -> torch.Tensor:
    """Text features [g_n, g_a] of trained prompts (or of the seed's untrained ones)."""
    learner = prompt_learner(None, cfg, su.spec, su.weights, "cpu")
    if checkpoint is not None:
        learner.load_state_dict(torch.load(checkpoint, weights_only=True))
    with torch.no_grad():
        return learner()


def train_and_score(su: Setup, cfg: TrainConfig, out: Path, monkeypatch: pytest.MonkeyPatch,
                    planted: bool = True) -> tuple[float, float, float, Path]:
    """Train on the training half (through `jobs.train.train`); score the held-out half.

    Returns (point AUROC, image AUROC, training seconds, checkpoint).
    """
    samples_cls = planted_samples(su.plant) if planted else CachedSamples
    monkeypatch.setattr(train_job, "CachedSamples", samples_cls)
    start = time.perf_counter()
    path = train_job.train(dataclasses.replace(su.data, rows=su.train_rows), cfg, out, su.spec, su.weights,
                           progress_bar=False)
    seconds = time.perf_counter() - start
    if planted:  # the trainer read its rows through the patched name, so it saw the planted signal
        assert samples_cls.reads == cfg.epochs * len(su.train_rows)
    point, image = held_out_auroc(su, text_of(su, cfg, path), samples_cls)
    return point, image, seconds, path


def test_planting_marks_only_anomalous_patches_and_views(setup: Setup) -> None:
    su = setup
    plain = CachedSamples(su.data.view, su.layers)
    planted = planted_samples(su.plant)(su.data.view, su.layers)
    assert abs(float(su.plant.d_patch @ su.plant.d_global)) < 1e-6
    defects = su.data.view.meta.defects
    for r in (su.data.rows[0], next(r for r in su.data.rows if defects[r] == "good")):
        a, b = plain.item(r), planted.item(r)
        hits = patch_hits(a.mask, plain.grid)
        assert hits.any() == bool(a.label) == bool(a.y.any())
        step = b.patch.astype(np.float32) - a.patch.astype(np.float32)  # (K, 1, P, D)
        ratio = np.linalg.norm(step, axis=-1)[:, 0] / np.linalg.norm(a.patch.astype(np.float32), axis=-1)[:, 0]
        np.testing.assert_allclose(ratio[hits], PLANT_PATCH, rtol=1e-3)
        assert not ratio[~hits].any()
        moved = np.linalg.norm(b.glob - a.glob.astype(np.float32), axis=-1) > 0
        np.testing.assert_array_equal(moved, hits.any(1))
        row = planted.scoring(r, True, False)
        np.testing.assert_allclose(row.patch, b.patch[:, 0])
        np.testing.assert_allclose(row.glob, b.glob)


ROWS = [  # losses, epochs, minimum held-out point AUROC, minimum held-out image AUROC
    pytest.param(("3dl",), EPOCHS, 0.95, None, id="3d-local"),
    pytest.param(("2dl",), EPOCHS, 0.95, None, id="2d-local"),
    pytest.param(("3dl", "2dl"), EPOCHS, 0.95, None, id="3d+2d-local"),
    pytest.param(("3dg",), EPOCHS, None, 0.95, id="3d-global"),
    pytest.param(("2dg",), EPOCHS, None, 0.95, id="2d-global"),
    pytest.param(ALL_FOUR, 45, 0.85, 0.95, id="all-four"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("losses", "epochs", "min_point", "min_image"), ROWS)
def test_planted_signal_is_learned(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   losses: tuple[str, ...], epochs: int, min_point: float | None,
                                   min_image: float | None) -> None:
    """Each term (and the sum) learns the planted directions: held-out AUROC at or above the row's bar."""
    cfg = TrainConfig(losses=losses, epochs=epochs)
    point, image, seconds = train_and_score(setup, cfg, tmp_path / "run", monkeypatch)[:3]
    print(f"\n{'+'.join(losses)}, {epochs} epochs: held-out point AUROC {point:.3f}, image AUROC {image:.3f} "
          f"(training {seconds:.1f} s)")
    if min_point is not None:
        assert point >= min_point, (losses, point)
    if min_image is not None:
        assert image >= min_image, (losses, image)


@pytest.mark.slow
def test_a_trainer_that_never_steps_stays_near_chance(setup: Setup, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The negative check: the 3D local row with Adam's step disabled leaves the untrained prompts, near 0.5."""
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, closure=None: None)
    cfg = TrainConfig(losses=("3dl",), epochs=EPOCHS)
    point, image, _, path = train_and_score(setup, cfg, tmp_path / "run", monkeypatch)
    print(f"\noptimizer step disabled, 3dl, {EPOCHS} epochs: held-out point AUROC {point:.3f}, image {image:.3f}")
    untrained = prompt_learner(None, cfg, setup.spec, setup.weights, "cpu").state_dict()
    for k, v in torch.load(path, weights_only=True).items():
        assert torch.equal(v, untrained[k]), k
    assert abs(point - 0.5) < 0.1, point  # far below the 0.95 bar of the same row when the trainer steps


def start_gradients(su: Setup, samples: CachedSamples, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Each term's gradient on the prompts (flattened), averaged over the training half's batches, at init."""
    learner = prompt_learner(None, cfg, su.spec, su.weights, "cpu")
    params = list(learner.parameters())
    batches = [su.train_rows[i:i + cfg.batch_size] for i in range(0, len(su.train_rows), cfg.batch_size)]
    grads: dict[str, torch.Tensor] = {}
    for rows in batches:
        terms = step_terms(learner(), collate([samples.item(r) for r in rows], "cpu"), cfg, samples.grid,
                           samples.size)
        for k, v in terms.items():
            flat = torch.cat([g.flatten() for g in torch.autograd.grad(v, params, retain_graph=True)])
            grads[k] = grads.get(k, 0) + flat / len(batches)
    return grads


def describe(grads: dict[str, torch.Tensor]) -> str:
    total = sum(grads.values())
    local = grads["3dl"] + grads["2dl"]
    norms = ", ".join(f"{k} {float(g.norm()):.1f}" for k, g in grads.items())
    cos = float(torch.nn.functional.cosine_similarity(local, total, dim=0))
    return f"{norms}; sum {float(total.norm()):.1f}; cos(local terms, sum) {cos:.2f}"


@pytest.mark.slow
def test_start_gradients_and_plain_training(setup: Setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every term has a finite, non-zero gradient on the prompts at the start (plain and planted features; the
    norms are printed, the README quotes them), and two epochs on plain random features move the prompts."""
    su = setup
    cfg = TrainConfig()
    lines = []
    for name, samples_cls in [("plain", CachedSamples), ("planted", planted_samples(su.plant))]:
        grads = start_gradients(su, samples_cls(su.data.view, su.layers), cfg)
        lines.append(f"start gradient norms on the prompts, {name}: {describe(grads)}")
        assert set(grads) == set(ALL_FOUR)
        assert all(bool(torch.isfinite(g).all()) and float(g.norm()) > 0 for g in grads.values())
    *_, path = train_and_score(su, TrainConfig(epochs=2), tmp_path / "plain", monkeypatch, planted=False)
    untrained = prompt_learner(None, cfg, su.spec, su.weights, "cpu").state_dict()
    assert any(not torch.equal(v, untrained[k]) for k, v in torch.load(path, weights_only=True).items())
    print("\n" + "\n".join(lines))
