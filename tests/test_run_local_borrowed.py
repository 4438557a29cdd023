"""A borrower's final axial correction is published under the canonical name, and a rerun after a kill
at any point gives the same tree (the local runner, issue #11).

The runner drives the real plan, decisions and publication; each step's
script is replaced by a tiny in-process fake (:class:`FakeRunner`) that
writes outputs derived from its inputs' bytes, so a slice's products tell
which correction made them. Slice 1's own focus estimate is refused: it
borrows the acquisition's profile (COMBINE_FOCUS's real rule). The
interruptions are made at each point of the run (a failing fake, or the
publication stopped after some of its moves) and a plain rerun must then
give the tree of an uninterrupted run, byte for byte.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from linumpy.intensity import acquisition_focus
from linumpy.io.atomic import remove_path
from linumpy.io.naming import parse_slice_id
from linumpy.pipeline.layout import OutputLayout
from linumpy.pipeline.params import PipelineParams
from linumpy.pipeline.runner import LocalRunner
from linumpy.pipeline.slice_config import collect_metrics
from linumpy.qc.records import read_qc_record, write_qc_record
from linumpy.qc.report import replacing_records

SLICES = (0, 1, 2)
BORROWER = 1  # its own focus estimate is refused (the fake axial correction's rule)
REFUSED = "none (no background A-lines)"


class Killed(Exception):
    """Stands for the run being killed at this point."""


def _write(path: Path, text: str) -> None:
    """A fake product: a folder holding ``text`` (``.ome.zarr``), else a file."""
    remove_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".ome.zarr"):
        path.mkdir()
        (path / "data").write_text(text)
    else:
        path.write_text(text)


def _read(path: str | Path) -> str:
    """A fake product's text (the name of a folder that is not one: the acquisition)."""
    path = Path(path)
    if path.is_dir():
        return (path / "data").read_text() if (path / "data").exists() else path.name
    return path.read_text()


def _flag(args: list[str], flag: str) -> list[str]:
    """The values after ``flag`` up to the next flag."""
    if flag not in args:
        return []
    values = args[args.index(flag) + 1:]
    return values[:next((i for i, v in enumerate(values) if v.startswith("--")), len(values))]


def _positional(args: list[str]) -> list[str]:
    first_flag = next((i for i, v in enumerate(args) if v.startswith("--")), len(args))
    return args[:first_flag]


def fake_axial(args: list[str], partial: bool = False) -> None:
    stitched, out = _positional(args)
    slice_id = parse_slice_id(Path(out).name)
    borrowed = acquisition_focus.read(_flag(args, "--acquisition_focus")[0]) if "--acquisition_focus" in args else None
    if slice_id == BORROWER:
        mode = REFUSED if borrowed is None else borrowed.mode(REFUSED)
        metrics = {"focus_mode": mode}
    else:
        metrics = {"focus_mode": "background", "focus_profile": [0.5, 1.0, 0.5 + 0.1 * slice_id]}
    text = f"axial[{mode if slice_id == BORROWER else 'own'}]({_read(stitched)})"
    suffixes = (".ome.zarr", "_surface.ome.zarr", "_attenuation.ome.zarr", "_uncompensated.ome.zarr")
    for suffix in suffixes[:2] if partial else suffixes:
        _write(Path(out.removesuffix(".ome.zarr") + suffix), f"{suffix}:{text}")
    if partial:
        raise Killed(out)
    write_qc_record(out, "axial_corr", metrics)


def fake_combine(args: list[str], partial: bool = False) -> None:
    records, out = _positional(args)[:-1], _positional(args)[-1]
    focus = acquisition_focus.combine(read_qc_record(path) for path in records)
    acquisition_focus.write(focus, out, overwrite=True)
    if partial:
        raise Killed(out)
    acquisition_focus.write_borrowers(focus, _flag(args, "--borrowers_csv")[0], overwrite=True)


def fake_stack(args: list[str], partial: bool = False) -> None:
    slices, out = _positional(args)[:-1], _positional(args)[-1]
    uncompensated = _flag(args, "--uncompensated")
    _write(Path(out), "stack(" + " | ".join(_read(p) for p in [*slices, *uncompensated]) + ")")
    _write(Path(_flag(args, "--shifts_out")[0]), "{}")


def fake_slice_config(args: list[str], partial: bool = False) -> None:
    root, out = map(Path, _positional(args))
    rows = [f"{i},1,{row.get('focus_mode')}" for i, row in sorted(collect_metrics(root).items())]
    _write(out, "\n".join(["slice_id,use,focus_mode", *rows]) + "\n")


def fake_report(args: list[str], partial: bool = False) -> None:
    root, out = map(Path, _positional(args))
    records = sorted(p.relative_to(root).as_posix() for p in root.rglob("*_qc.json"))
    _write(out, json.dumps(replacing_records(records)))


def _one_to_one(step: str, *extra: str) -> Callable[[list[str], bool], None]:
    """A fake writing ``step(<input>)`` into its output and its ``extra`` siblings (``_transform.json``)."""
    def fake(args: list[str], partial: bool = False) -> None:
        source, out = _positional(args)[:2]
        for path in (out, *(out.replace(".ome.zarr", suffix) for suffix in extra)):
            _write(Path(path), f"{step}({_read(source)})")
        if partial:
            raise Killed(out)
    return fake


def fake_motor_positions(args: list[str], partial: bool = False) -> None:
    rows = [f"{i},0.0,0.0,{0.2 * i:.1f},4" for i in SLICES]
    _write(Path(_positional(args)[1]), "slice_id,x_mm,y_mm,z_mm,n_tiles\n" + "\n".join(rows) + "\n")


def fake_mosaic_grid(args: list[str], partial: bool = False) -> None:
    grid = _positional(args)[1]
    for path in (grid, grid.replace("_3d_", "_2d_")):
        _write(Path(path), f"grid(slice {_flag(args, '--slice')[0]})")


FAKES: dict[str, Callable[[list[str], bool], None]] = {
    "linum_collect_motor_positions.py": fake_motor_positions,
    "linum_estimate_field_curvature.py": _one_to_one("curvature"),
    "linum_create_mosaic_grid_3d.py": fake_mosaic_grid,
    "linum_stitch_3d.py": _one_to_one("stitch", "_transform.json"),
    "linum_axial_corr.py": fake_axial,
    "linum_combine_focus.py": fake_combine,
    "linum_normalize.py": _one_to_one("normalize"),
    "linum_screenshot_omezarr.py": _one_to_one("screenshot"),
    "linum_stack_slices_motor.py": fake_stack,
    "linum_slice_config.py": fake_slice_config,
    "linum_report.py": fake_report,
}


class FakeRunner(LocalRunner):
    """The local runner with every script run as its in-process fake; ``kill_at`` (a task's log name) is
    interrupted halfway (a fake writes part of its outputs; a publication stops after ``moves`` moves)."""

    def __init__(self, params: PipelineParams, kill_at: str | None = None, moves: int = 0) -> None:
        super().__init__(params, workers=1, progress=False)
        self.kill_at, self.moves = kill_at, moves

    def _killed(self, log) -> bool:
        return self.kill_at is not None and Path(log.name).stem == self.kill_at

    def _call(self, argv: list[str], log) -> tuple[int, dict]:
        FAKES[Path(argv[1]).name](argv[2:], self._killed(log))
        return 0, {}

    def _publish(self, task, log) -> tuple[int, dict]:
        if not self._killed(log):
            return super()._publish(task, log)
        if self.moves < 0:  # every file moved, the task's record not written
            super()._publish(task, log)
            raise Killed(task.id)
        with _renames_stopped_after(self.moves):
            return super()._publish(task, log)


@contextlib.contextmanager
def _renames_stopped_after(count: int) -> Iterator[None]:
    rename, done = Path.rename, []

    def limited(self: Path, target):
        if len(done) == count:
            raise Killed(f"after {count} moves")
        done.append(self)
        return rename(self, target)

    Path.rename = limited
    try:
        yield
    finally:
        Path.rename = rename


def run(outdir: Path, kill_at: str | None = None, moves: int = 0) -> FakeRunner:
    (outdir.parent / "acquisition").mkdir(exist_ok=True)
    runner = FakeRunner(PipelineParams(input=str(outdir.parent / "acquisition"), outdir=str(outdir)), kill_at, moves)
    if kill_at is None:
        runner.run()
    else:
        with pytest.raises(Killed):
            runner.run()
    return runner


def products(outdir: Path) -> dict[str, str]:
    """Every file of the output tree but the run's own bookkeeping (``pipeline_info/``), by relative path."""
    return {p.relative_to(outdir).as_posix(): p.read_text() for p in sorted(outdir.rglob("*"))
            if p.is_file() and not p.relative_to(outdir).as_posix().startswith("pipeline_info/")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    outdir = tmp_path_factory.mktemp("uninterrupted") / "results"
    run(outdir)
    return products(outdir)


def test_axial_corr_holds_every_slice_final_correction_and_the_refused_one_is_kept_apart(reference):
    layout = OutputLayout(Path("."))
    final = {i: layout.slice_product(i, "axial_corr").as_posix() for i in SLICES}
    assert all(reference[f"{final[i]}/data"].startswith(".ome.zarr:axial[own]") for i in SLICES if i != BORROWER)
    assert reference[f"{final[BORROWER]}/data"].startswith(".ome.zarr:axial[borrowed (no background A-lines")
    refused = layout.refused_axial(BORROWER).as_posix()
    assert reference[f"{refused}/data"].startswith(f".ome.zarr:axial[{REFUSED}]")
    assert sorted(p for p in reference if p.startswith("axial_corr_refused/")) == sorted(
        f"{refused.replace('.ome.zarr', suffix)}" for suffix in
        ("_qc.json", ".ome.zarr/data", "_surface.ome.zarr/data", "_attenuation.ome.zarr/data",
         "_uncompensated.ome.zarr/data"))
    # the normalized slice, the stack's uncompensated signal and slice_config.csv read the final correction
    assert "borrowed (" in reference[f"{layout.slice_product(BORROWER, 'normalize').as_posix()}/data"]
    assert "_uncompensated.ome.zarr:axial[borrowed (" in reference["stack/volume.ome.zarr/data"]
    assert REFUSED not in reference["stack/volume.ome.zarr/data"]
    modes = [row.split(",", 2)[2] for row in reference["slice_config.csv"].splitlines()[1:]]
    assert modes[BORROWER].startswith("borrowed (") and not any(m.startswith("none (") for m in modes)
    # the report shows the refused record as replaced by the final one
    record = f"slice_z0{BORROWER}_axial_corr_qc.json"
    assert json.loads(reference["report.html"]) == {f"axial_corr_refused/{record}": f"axial_corr/{record}"}


def test_a_finished_run_reruns_nothing(tmp_path):
    outdir = tmp_path / "results"
    first = run(outdir)
    assert not (outdir / "pipeline_info" / "staging").exists()
    again = run(outdir)
    assert again.summary.ran == [] and sorted(again.summary.skipped) == sorted(first.summary.ran)


@pytest.mark.parametrize("kill_at, moves", [
    ("axial_corr_z01", 0),  # during the first pass: the borrower's
    ("axial_corr_z02", 0),  # during the first pass: a slice with its own focus
    ("combine_focus", 0),  # the profile written, not the borrowers
    ("publish_axial_corr_z00", 2),  # moving an own slice's first pass into axial_corr/
    ("publish_axial_corr_z01", 3),  # moving the borrower's first pass into axial_corr_refused/
    ("publish_axial_corr_z01", -1),  # every file moved, the publication not recorded
    ("axial_corr_borrowed_z01", 0),  # the borrowed correction half written
    ("normalize_z01", 0),
])
def test_a_rerun_after_a_kill_gives_the_uninterrupted_tree(reference, tmp_path, kill_at, moves):
    outdir = tmp_path / "results"
    run(outdir, kill_at, moves)
    run(outdir)
    assert products(outdir) == reference
    assert not (outdir / "pipeline_info" / "staging").exists()


def test_a_slice_that_no_longer_borrows_leaves_no_refused_attempt(reference, tmp_path):
    outdir = tmp_path / "results"
    run(outdir)
    refused = OutputLayout(outdir).refused_axial(BORROWER)
    stale = OutputLayout(outdir).refused_axial(0)  # as if slice 0 had borrowed in an earlier decision
    for path in refused.parent.iterdir():
        target = path.with_name(path.name.replace(f"_z0{BORROWER}_", "_z00_"))
        _write(target, "stale") if path.is_dir() else target.write_text(path.read_text())
    (OutputLayout(outdir).task_records / "publish_axial_corr_z00.json").unlink()
    run(outdir)
    assert not list(stale.parent.glob("slice_z00_*"))
    assert products(outdir) == reference


def test_a_first_pass_run_again_is_published_again(reference, tmp_path):
    """A first pass run again (its record gone) leaves staged files: its publication runs again too."""
    outdir = tmp_path / "results"
    run(outdir)
    (OutputLayout(outdir).task_records / "axial_corr_z00.json").unlink()
    again = run(outdir)
    assert {"axial_corr_z00", "publish_axial_corr_z00"} <= set(again.summary.ran)
    assert not (outdir / "pipeline_info" / "staging").exists()
    assert products(outdir) == reference
