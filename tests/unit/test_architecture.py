"""The architecture, written as rules over the code and checked on every run. Read the rules first.

Rooms (`pointad_pipe.` is left out below):
- `pipeline.cache`: the only package that imports zarr or names a cache array (store, schema,
  scores, the task runner, status);
- `pipeline.stages`: pure cores, sample + config -> arrays (clean, render, encode, train);
- `pipeline.jobs`: each command's wiring (catalog entry -> identity -> group -> runner -> report);
  `jobs.identity` alone decides configs and fingerprints;
- `pipeline.outputs`: files for people (report, figures, scored PLY, tables, atomic writes);
- `pipeline.loaders` read datasets, `pipeline.renderers` draw, `pipeline.synthetic` writes data;
- `model`: the method's maths; `cli`: flags, wording, printing.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from ..helpers import ROOT

P = "pointad_pipe."
#: where each installed package's source lives (pyproject's package-dir)
PACKAGES = {"pointad_pipe.pipeline": ROOT / "pipeline", "pointad_pipe.model": ROOT / "model",
            "pointad_pipe.cli": ROOT / "cli"}


@dataclass(frozen=True)
class Rule:
    """Modules under `inside` (except under `unless`) may not import anything under `forbidden`."""

    why: str
    inside: str
    forbidden: tuple[str, ...]
    unless: str | None = None


RULES = [
    Rule("only the cache package touches zarr", P[:-1], ("zarr",), unless=P + "pipeline.cache"),
    Rule("model is the method's maths, below the pipeline", P + "model", (P + "pipeline", P + "cli")),
    Rule("the pipeline knows nothing of the command line", P + "pipeline", (P + "cli", "typer")),
    Rule("stage cores are pure: no cache, no jobs, no catalog, no output files", P + "pipeline.stages",
         (P + "pipeline.cache", P + "pipeline.jobs", P + "pipeline.catalog", P + "pipeline.outputs")),
    Rule("loaders only read", P + "pipeline.loaders",
         (P + "pipeline.stages", P + "pipeline.cache", P + "pipeline.jobs", P + "pipeline.outputs",
          P + "pipeline.synthetic")),
    Rule("renderers only draw", P + "pipeline.renderers",
         (P + "pipeline.stages", P + "pipeline.cache", P + "pipeline.jobs", P + "pipeline.outputs",
          P + "pipeline.loaders")),
    Rule("the cache is infrastructure: it runs no stage and writes no report", P + "pipeline.cache",
         (P + "pipeline.stages", P + "pipeline.jobs", P + "pipeline.outputs", P + "pipeline.catalog")),
    Rule("outputs write what they are given", P + "pipeline.outputs",
         (P + "pipeline.cache", P + "pipeline.jobs", P + "pipeline.stages")),
]

#: the contract's array names that mean nothing else; no module outside the cache package spells them
CONTRACT_ARRAYS = ("mask2d", "pix2pt", "pt2pix", "rgb_image", "rgb_pix", "rgb_global", "rgb_patch", "rgb_grid",
                   "camera", "eps", "image", "patch", "global", "xyz", "points", "meta", "done", "error")
#: per-row and per-column paths of the contract (`points/<r>/...`, `meta/...`, `rgb_grid/<r>`)
CONTRACT_PATH = re.compile(r"(^|/)(points|meta|rgb_grid)/")
#: (module, string): the same word meaning something else there, and why
ALLOWED = {
    ("pointad_pipe.pipeline.loaders.mvtec3d", "xyz"): "the dataset's own folder name (MVTec 3D-AD layout)",
    ("pointad_pipe.pipeline.loaders.eyecandies", "xyz"): "the dataset's own folder name (converted layout)",
    ("pointad_pipe.pipeline.synthetic.generator", "xyz"): "writes the MVTec layout's xyz/ folders",
    ("pointad_pipe.pipeline.jobs.predict", "points"): "predict's JSON record: the number of scored points",
    ("pointad_pipe.pipeline.jobs.evaluate", "image"): "the image-level ROC curve's name in the figure",
    ("pointad_pipe.cli.score_commands", "done"): "a word in the demo's closing line",
    ("pointad_pipe.pipeline.outputs.html_report", "points"): "predict's JSON record key, shown on its page",
}


def module_name(path: Path, packages: dict[str, Path]) -> str:
    """`pipeline/cache/store.py` -> `pointad_pipe.pipeline.cache.store` (packages map names to folders)."""
    for name, folder in packages.items():
        if path.is_relative_to(folder):
            parts = path.relative_to(folder).with_suffix("").parts
            return ".".join([name, *[p for p in parts if p != "__init__"]])
    raise ValueError(path)


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """Every module `path` imports, at any depth (inside functions too), relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(packages: dict[str, Path], rules: list[Rule]) -> list[str]:
    """`module:line imports X (rule)` for every import that breaks a rule."""
    out = []
    for folder in packages.values():
        for path in sorted(folder.rglob("*.py")):
            mod = module_name(path, packages)
            for line, target in imports(path, mod):
                for rule in rules:
                    if under(mod, rule.inside) and not (rule.unless and under(mod, rule.unless)) \
                            and any(under(target, f) for f in rule.forbidden):
                        out.append(f"{mod}:{line} imports {target} ({rule.why})")
    return sorted(set(out))


def docstring_nodes(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, kinds) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}


def contract_strings(packages: dict[str, Path], owner: str) -> list[str]:
    """String literals (f-string parts included, docstrings not) outside `owner` that spell the contract."""
    out = []
    for folder in packages.values():
        for path in sorted(folder.rglob("*.py")):
            mod = module_name(path, packages)
            if under(mod, owner):
                continue
            tree = ast.parse(path.read_text())
            skip = docstring_nodes(tree)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Constant) and isinstance(node.value, str)) or id(node) in skip:
                    continue
                text = node.value
                if (text in CONTRACT_ARRAYS and (mod, text) not in ALLOWED) or CONTRACT_PATH.search(text):
                    out.append(f"{mod}:{node.lineno} {text!r}")
    return out


# ---------------------------------------------------------------- the rules hold


def test_imports_follow_the_architecture() -> None:
    assert violations(PACKAGES, RULES) == []


def test_no_module_outside_the_cache_spells_a_cache_array() -> None:
    assert contract_strings(PACKAGES, P + "pipeline.cache") == []


def test_the_contract_names_are_the_contracts() -> None:
    """The list above cannot go stale: each name is documented (STORE.md, or the README's changelog for
    additions within the schema) and written by the cache package."""
    store_md = (ROOT / "docs" / "STORE.md").read_text() + (ROOT / "README.md").read_text()
    cache_src = "\n".join(p.read_text() for p in (ROOT / "pipeline" / "cache").glob("*.py"))
    for name in CONTRACT_ARRAYS:
        assert f"`{name}" in store_md or f"/{name}" in store_md, name
        assert f'"{name}' in cache_src or f"/{name}" in cache_src, name
    for module, text in ALLOWED:
        assert text in CONTRACT_ARRAYS and module.startswith(P)


def _function_lines(node: ast.AST) -> int:
    body = node.body
    first = body[1] if len(body) > 1 and docstring_nodes(node) & {id(getattr(body[0], "value", None))} else body[0]
    return node.end_lineno - first.lineno + 1


@pytest.mark.parametrize("folder", ["pipeline", "model", "cli", "bench", "tools", "tests"])
def test_files_and_functions_stay_small(folder: str) -> None:
    """About 400 lines a file, 60 a function body (docstring not counted)."""
    big = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        lines = path.read_text().splitlines()
        if len(lines) > 400:
            big.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _function_lines(node) > 60:
                big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {_function_lines(node)} lines")
    assert big == []


def test_no_pipeline_message_names_a_flag_or_command() -> None:
    """Flags and commands are the CLI's words (cli/messages.py); the pipeline states the facts."""
    flag = re.compile(r"(^|[\s(`])--[a-z]|pointad-pipe [a-z]")
    found = []
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        tree = ast.parse(path.read_text())
        skip = docstring_nodes(tree)
        found += [f"{path.relative_to(ROOT)}:{n.lineno} {n.value!r}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
                  and flag.search(n.value)]
    assert found == []


# ---------------------------------------------------------------- the checks catch a planted violation


def _fake_tree(tmp_path: Path) -> dict[str, Path]:
    files = {
        "pipeline/__init__.py": "",
        "pipeline/cache/__init__.py": "",
        "pipeline/cache/store.py": "import zarr\nSCHEMA = 'x'\n",
        "pipeline/stages/__init__.py": "",
        # a stage core that reads the cache from inside a function, through a relative import
        "pipeline/stages/render.py": "def f():\n    from ..cache import store\n    return store\n",
        "pipeline/jobs/__init__.py": "",
        # a job that spells a cache array and a per-row path, and opens zarr itself
        "pipeline/jobs/evaluate.py": ("import zarr\n\ndef g(grp, r):\n"
                                      "    return grp['pt2pix'], grp[f'points/{r}/xyz']\n"),
        "model/__init__.py": "",
        "model/losses.py": "from pointad_pipe.cli import main\n",
        "cli/__init__.py": "",
        "cli/main.py": "from pointad_pipe.pipeline.cache import store\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return {"pointad_pipe.pipeline": tmp_path / "pipeline", "pointad_pipe.model": tmp_path / "model",
            "pointad_pipe.cli": tmp_path / "cli"}


def test_a_planted_violation_is_caught(tmp_path: Path) -> None:
    found = violations(_fake_tree(tmp_path), RULES)
    assert found == [
        "pointad_pipe.model.losses:1 imports pointad_pipe.cli (model is the method's maths, below the pipeline)",
        "pointad_pipe.model.losses:1 imports pointad_pipe.cli.main (model is the method's maths, below the pipeline)",
        "pointad_pipe.pipeline.jobs.evaluate:1 imports zarr (only the cache package touches zarr)",
        "pointad_pipe.pipeline.stages.render:2 imports pointad_pipe.pipeline.cache (stage cores are pure: no cache, "
        "no jobs, no catalog, no output files)",
        "pointad_pipe.pipeline.stages.render:2 imports pointad_pipe.pipeline.cache.store (stage cores are pure: no "
        "cache, no jobs, no catalog, no output files)",
    ]


def test_a_planted_array_name_is_caught(tmp_path: Path) -> None:
    found = contract_strings(_fake_tree(tmp_path), P + "pipeline.cache")
    assert found == ["pointad_pipe.pipeline.jobs.evaluate:4 'pt2pix'",
                     "pointad_pipe.pipeline.jobs.evaluate:4 'points/'"]
