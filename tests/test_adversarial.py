"""What an attacker or a careless user does, and what must hold (issue 12).

Each test reproduces one defect found by trying to break the pipeline: a
slice silently dropped, a wrong geometry, two runs on one output directory,
shell injection through Nextflow, path escapes in metadata, numbers that are
not numbers, misleading advice, a child outliving its runner, a biased
pyramid border, a file another reader cannot open. Data are tiny; scripts run
as subprocesses only where the exit status or stderr is the point.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

from linumpy.cli import os_error_message
from linumpy.errors import InputError
from linumpy.io.acquisition import open_acquisition, tile_name
from linumpy.io.atomic import remove_stale_temporaries, scratch_directory
from linumpy.io.native_tiles import write_native_frames
from linumpy.io.zarr import lateral_pyramid, read_omezarr_info, save_omezarr
from linumpy.mosaic.grid import grid_geometry
from linumpy.pipeline import steps
from linumpy.pipeline.layout import OutputLayout
from linumpy.pipeline.lock import OutdirLockedError, acquire, release
from linumpy.pipeline.params import PipelineParams, load_params
from linumpy.pipeline.plan import plan_motor_positions, plan_slice, plan_volume
from linumpy.pipeline.runner import LocalRunner, _failure_message
from linumpy.qc.records import qc_record_path
from linumpy.resample import block_mean
from linumpy.simulate import get_preset, simulate_acquisition
from linumpy.stack.files import _slice_thickness
from test_nextflow_static import load_script, nextflow_command, rendered_ext_args
from test_raw_formats import make_native_tile

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bin"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _script(name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BIN / name), *args], capture_output=True, text=True, env=ENV,
                          timeout=120, **kwargs)


def _dead_pid() -> int:
    """The id of a process that has exited (and was reaped)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _is_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _link_slice(source: Path, destination: Path, slice_id: int, rename: dict[str, str] | None = None) -> None:
    """Symlink the native tile folders of one slice of ``source`` into ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    for folder in sorted(source.glob(f"tile_*_z{slice_id:02d}")):
        (destination / (rename or {}).get(folder.name, folder.name)).symlink_to(folder)


# -- 1. a slice given as TIFF tiles next to native folders is not dropped -----------------------


@pytest.fixture(scope="module")
def mixed_acquisition(tmp_path_factory, tiny_acquisition) -> Path:
    """Tiny seed 0: slices 0 and 1 as TIFF tiles, slice 2 as native tile folders."""
    raw = simulate_acquisition(tmp_path_factory.mktemp("mixed") / "raw", get_preset("tiny", n_slices=2), seed=0,
                               layout="tiff")
    _link_slice(tiny_acquisition, raw, 2)
    return raw


def test_mixed_native_and_tiff_slices_are_all_read(mixed_acquisition, tiny_acquisition):
    acq, native = open_acquisition(mixed_acquisition), open_acquisition(tiny_acquisition)
    assert acq.slice_ids == [0, 1, 2]
    assert acq.layouts == {0: "tiff", 1: "tiff", 2: "native"} and acq.layout == "mixed"
    for slice_id in (0, 2):
        np.testing.assert_allclose(acq.slice(slice_id).tiles[(1, 1)].read(),
                                   native.slice(slice_id).tiles[(1, 1)].read(), rtol=1e-6, atol=1e-7)
    result = _script("linum_collect_motor_positions.py", str(mixed_acquisition),
                     str(mixed_acquisition.parent / "motor.csv"))
    assert result.returncode == 0, result.stderr
    rows = (mixed_acquisition.parent / "motor.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["0", "1", "2"]


def test_a_slice_in_both_formats_stops_naming_it(mixed_acquisition, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for entry in mixed_acquisition.iterdir():
        (raw / entry.name).symlink_to(entry)
    (raw / "tile_x00_y00_z02.tif").symlink_to(mixed_acquisition / "tile_x00_y00_z01.tif")
    with pytest.raises(InputError, match=r"tile_x00_y00_z02.tif: slice 2 has both .tif tiles and native"):
        open_acquisition(raw)


# -- 2. slice thickness with a slice left out; the sidecar reaches the stack --------------------


def test_thickness_from_motor_steps_divides_by_the_slice_id_gap():
    motors = np.array([[1.0, 0, 0], [1.0 + 2 * 0.0675, 0, 0], [1.0 + 3 * 0.0675, 0, 0]])
    assert _slice_thickness(None, None, motors, [0, 2, 3]) == pytest.approx(67.5)


def test_thickness_from_motor_steps_is_the_step_most_agree_on():
    """Five 66 um slices, the first read 45 um shallow and the last 30 um deep (jumps no glitch correction
    removes): the plain median was 81 um, off enough that the last slice's jump stayed inside the tolerance."""
    z_um = np.array([-45.0, 66, 132, 198, 294]) + 5000
    motors = np.column_stack([z_um / 1000, np.zeros(5), np.zeros(5)])
    assert _slice_thickness(None, None, motors, [0, 1, 2, 3, 4]) == pytest.approx(66.0)


def test_a_sidecar_without_the_thickness_leaves_it_to_the_motor_steps(tmp_path):
    """An acquisition.json written for the axial resolution alone failed the stack, the run's last step."""
    sidecar = tmp_path / "acquisition.json"
    sidecar.write_text(json.dumps({"axial_resolution_um": 3.0}))
    motors = np.column_stack([np.array([5.0, 5.075, 5.150, 5.225]), np.zeros(4), np.zeros(4)])
    assert _slice_thickness(None, sidecar, motors, [0, 1, 2, 3]) == pytest.approx(75.0)
    sidecar.write_text(json.dumps({"axial_resolution_um": 3.0, "slice_thickness_um": 70.0}))
    assert _slice_thickness(None, sidecar, motors, [0, 1, 2, 3]) == 70.0


def test_both_orchestrators_pass_the_sidecar_to_the_stack(tmp_path):
    params, layout = PipelineParams(input=str(tmp_path / "raw"), exclude_slices=[1]), OutputLayout(tmp_path / "out")
    sidecar = tmp_path / "raw" / "acquisition.json"
    motor = plan_motor_positions(params, layout, tmp_path / "raw")
    chains = {i: plan_slice(params, layout, tmp_path / "raw", i) for i in (0, 2)}
    stack = plan_volume(params, layout, [0, 2], motor, {i: c[-1] for i, c in chains.items()}, sidecar)[0]
    assert stack.argv[stack.argv.index("--acquisition_json") + 1] == str(sidecar)
    nextflow = nextflow_command("STACK_SLICES", stack.inputs, params)
    assert nextflow[nextflow.index("--acquisition_json") + 1] == "acquisition.json"
    without = plan_volume(params, layout, [0, 2], motor, {i: c[-1] for i, c in chains.items()})[0]
    assert "--acquisition_json" not in without.argv
    assert "--acquisition_json" not in nextflow_command("STACK_SLICES", without.inputs, params)


def test_workflow_stages_the_sidecar_only_when_it_exists():
    workflow = (ROOT / "workflows" / "linumpy.nf").read_text()
    assert "sidecar.exists() ? sidecar : []" in workflow
    assert ("STACK_SLICES(ordered_slices, uncompensated, COLLECT_MOTOR_POSITIONS.out.csv, allow_gaps, sidecar)"
            in workflow)


# -- 3. one owner per output directory ----------------------------------------------------------


def test_second_run_on_a_locked_outdir_stops_before_any_work(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = OutputLayout(tmp_path).run_lock
        lock.parent.mkdir(parents=True)
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started": "T"}))
        runner = LocalRunner(PipelineParams(simulate="tiny", outdir=str(tmp_path)), progress=False)
        with pytest.raises(OutdirLockedError, match=rf"already running \(process {sleeper.pid} on host"):
            runner.run()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["pipeline_info"]
        assert json.loads(lock.read_text())["pid"] == sleeper.pid  # the owner keeps its lock
    finally:
        sleeper.kill()
        sleeper.wait()


def test_stale_lock_of_a_dead_run_is_taken_over_and_released(tmp_path, caplog):
    lock = tmp_path / "pipeline_info" / "run.lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname(), "started": "T"}))
    with caplog.at_level(logging.WARNING):
        acquire(lock)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "a run that is gone" in caplog.text
    with pytest.raises(OutdirLockedError):
        acquire(lock)  # held, even by ourselves: one run per directory
    release(lock)
    assert not lock.exists()


def test_lock_of_another_host_is_never_taken(tmp_path):
    lock = tmp_path / "pipeline_info" / "run.lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": "elsewhere.example", "started": "T"}))
    with pytest.raises(OutdirLockedError, match=f"host elsewhere.example.*delete {lock}"):
        acquire(lock)


def test_runner_removes_only_temporaries_whose_writer_is_gone(tiny_acquisition, tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        params = PipelineParams(input=str(tiny_acquisition), outdir=str(tmp_path))
        runner = LocalRunner(params, progress=False)
        task = plan_motor_positions(params, runner.layout, tiny_acquisition)
        live = tmp_path / f".motor_positions.csv.partial-{sleeper.pid}"
        dead = tmp_path / f".motor_positions.csv.partial-{_dead_pid()}"
        for temporary in (live, dead):
            temporary.write_text("in progress")
        runner._run_task(task)
        assert live.exists() and not dead.exists()
        assert (tmp_path / "motor_positions.csv").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_report_reruns_when_the_run_record_changes(tmp_path):
    params, layout = PipelineParams(simulate="tiny"), OutputLayout(tmp_path)
    motor = plan_motor_positions(params, layout, layout.acquisition)
    chains = {0: plan_slice(params, layout, layout.acquisition, 0)}

    def report_key() -> str:
        return plan_volume(params, layout, [0], motor, {0: chains[0][-1]})[-1].key

    clean = report_key()
    record = qc_record_path(layout.run_qc_output)
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"failed_slices": {"0": "killed"}}))
    assert report_key() != clean
    record.unlink()
    assert report_key() == clean


# -- 15c. a killed runner takes its running step with it ----------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_child_step_dies_with_a_killed_runner(signum, tmp_path):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for step in steps.STEPS:  # every step: note the pid, then hang
        (fake_bin / step.script).write_text(textwrap.dedent(f"""
            import os, time
            open({str(tmp_path / "child.pid")!r}, "w").write(str(os.getpid()))
            time.sleep(60)
        """))
    runner = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from pathlib import Path
        from linumpy.pipeline.child import exit_on_sigterm
        from linumpy.pipeline.params import load_params
        from linumpy.pipeline.runner import run_pipeline
        exit_on_sigterm()
        run_pipeline(load_params(None, {{"input": {str(tmp_path)!r}, "outdir": {str(tmp_path / "out")!r}}}),
                     scripts_dir=Path({str(fake_bin)!r}), progress=False)
    """)], env=ENV)
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pid_file.read_text())
    runner.send_signal(signum)
    assert runner.wait(timeout=30) == (-signum if signum == signal.SIGKILL else 128 + signum)
    deadline = time.monotonic() + 10
    while _is_alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _is_alive(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the step outlived its runner"
    if signum == signal.SIGTERM:  # an orderly stop also gives the output directory back
        assert not (tmp_path / "out" / "pipeline_info" / "run.lock").exists()


# -- 4, 15d, 15e. stray, misnamed and motionless tiles ------------------------------------------


def test_stray_tile_index_is_refused_naming_the_folder(tiny_acquisition, tmp_path):
    _link_slice(tiny_acquisition, tmp_path, 0)
    (tmp_path / "tile_x99999_y02_z00").symlink_to(tiny_acquisition / "tile_x00_y02_z00")
    with pytest.raises(InputError, match=r"tile_x99999_y02_z00: slice 0's tile grid would be 3 x 100000 tiles"):
        open_acquisition(tmp_path).slice(0)


def test_sparse_but_plausible_grid_is_accepted(tiny_acquisition, tmp_path):
    _link_slice(tiny_acquisition, tmp_path, 0)
    for folder in ("tile_x00_y01_z00", "tile_x01_y01_z00"):
        (tmp_path / folder).unlink()
    assert open_acquisition(tmp_path).slice(0).grid_shape == (3, 2)


def test_misnamed_tile_folder_is_reported(tiny_acquisition, tmp_path, caplog):
    _link_slice(tiny_acquisition, tmp_path, 0)
    (tmp_path / "tile_x01_y02_zAB").symlink_to(tiny_acquisition / "tile_x01_y02_z01")
    with caplog.at_level(logging.WARNING):
        assert open_acquisition(tmp_path).slice_ids == [0]
    assert "tile_x01_y02_zAB: ignored" in caplog.text


def test_zero_stage_step_is_refused(tmp_path):
    volume = np.ones((4, 6, 5), np.float32)
    for col in range(2):  # two neighbours at the very same stage position
        make_native_tile(tmp_path / tile_name(col, 0, 0), volume, 1, 1, 1, x=5.0, y=7.0)
    with pytest.raises(InputError, match="stage positions do not move between tiles"):
        open_acquisition(tmp_path).slice(0)


# -- 6. nothing from the params reaches a shell unquoted ----------------------------------------


@pytest.mark.parametrize("title", ["Alice's brain", "x'; touch PWNED; echo '", "$(touch PWNED) `id` \\ \""])
def test_report_title_is_one_shell_word(title, tmp_path):
    params = PipelineParams(report_title=title)
    args = rendered_ext_args("REPORT", params)
    result = subprocess.run(["bash", "-c", f"printf '%s\\n' {args}"], cwd=tmp_path, capture_output=True, text=True)
    assert result.stdout.splitlines() == ["--title", title]
    assert not (tmp_path / "PWNED").exists()
    assert shlex.split(args) == steps.REPORT.option_arguments(params)


def test_free_strings_are_validated():
    with pytest.raises(InputError, match="mosaic_dtype"):
        load_params(None, {"mosaic_dtype": "float32; touch PWNED"})
    with pytest.raises(InputError, match="report_title"):
        load_params(None, {"report_title": "one\nline; rm -rf /"})
    schema = json.loads((ROOT / "nextflow_schema.json").read_text())
    properties = {k: v for group in schema["$defs"].values() for k, v in group["properties"].items()}
    assert properties["mosaic_dtype"]["enum"] == ["float32", "float16", "uint16"]
    assert properties["report_title"]["pattern"] == r"^[^\x00-\x1f\x7f]*$"


# -- 8. numbers are finite numbers, checked before any work -------------------------------------


@pytest.mark.parametrize("text", ["resolution: .inf", "resolution: .nan", "resolution: true", "n_levels: false",
                                  "percentiles: [1, .inf]"])
def test_params_file_refuses_non_numbers(text, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(text + "\n")
    with pytest.raises(InputError, match=f"{path}: invalid parameters: {text.split(':')[0]}"):
        load_params(path)


@pytest.mark.parametrize("script, args", [
    ("linum_create_mosaic_grid_3d.py", ["raw", "out.ome.zarr", "--slice", "0", "--resolution", "inf"]),
    ("linum_stack_slices_motor.py", ["a_z00.ome.zarr", "out.ome.zarr", "--motor_positions", "m.csv",
                                     "--resolution", "nan"]),
])
def test_scripts_refuse_non_finite_numbers_in_one_line(script, args, capsys):
    parser = load_script(script).build_parser()
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(args)
    assert exited.value.code == 2
    assert "is not a finite number" in capsys.readouterr().err.splitlines()[-1]


def test_library_refuses_nan_resolution(tiny_acquisition):
    with pytest.raises(InputError, match="--resolution must be a positive number, got nan"):
        grid_geometry(open_acquisition(tiny_acquisition).slice(0), float("nan"))


# -- 9. scratch directories of a killed step are cleaned ----------------------------------------


def test_stale_scratch_directory_is_removed_by_the_next_writer(tmp_path):
    out = tmp_path / "slice_z00_normalize.ome.zarr"
    stale = tmp_path / f".{out.name}.scratch.partial-{_dead_pid()}"
    (stale / "aip.zarr").mkdir(parents=True)
    with scratch_directory(out) as scratch:
        assert not stale.exists()
        assert scratch.name == f".{out.name}.scratch.partial-{os.getpid()}"
    assert not scratch.exists()


def test_intensity_steps_use_the_shared_scratch():
    for module in ("linumpy/intensity/axial.py", "linumpy/intensity/slice_normalization.py"):
        text = (ROOT / module).read_text()
        assert "atomic.scratch_directory(out_path" in text and "tempfile" not in text, module


# -- 10, 14. a full disk is one line, and the advice is to free space ---------------------------


def test_full_disk_while_writing_raw_tiles_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "image_1.bin").symlink_to("/dev/full")
    with pytest.raises(OSError) as raised:
        write_native_frames(tmp_path, np.zeros((4, 5, 6)), 1)
    message = os_error_message(raised.value, "linum_simulate_acquisition.py")
    assert message == f"{tmp_path / 'image_1.bin'}: No space left on device; free space or write elsewhere"


def test_full_disk_failure_does_not_advise_dropping_the_slice(tmp_path):
    task = plan_slice(PipelineParams(simulate="tiny"), OutputLayout(tmp_path), tmp_path, 3)[2]
    log = tmp_path / "axial.log"
    log.write_text("$ linum_axial_corr.py ...\nerror: out/x.ome.zarr/0/0: No space left on device; "
                   "free space or write elsewhere\n")
    message = _failure_message(task, 2, log)
    assert "exclude_slices" not in message and "free space" in message
    log.write_text("error: in.ome.zarr: not an OME-Zarr image\n")
    assert "--exclude_slices 3" in _failure_message(task, 2, log)


# -- 11. a size that can never fit is refused, not retried --------------------------------------


def test_impossible_resolution_is_refused_up_front(tiny_acquisition, tmp_path):
    result = _script("linum_create_mosaic_grid_3d.py", str(tiny_acquisition), str(tmp_path / "g.ome.zarr"),
                     "--slice", "0", "--resolution", "0.001")
    assert result.returncode == 2, result.stderr
    assert "it can never fit; use a coarser --resolution" in result.stderr.splitlines()[-1]
    assert not list(tmp_path.iterdir())


# -- 12. a gap in the selected slices is refused before the per-slice work ----------------------


def test_slice_subset_with_a_gap_is_refused_up_front(tiny_acquisition, tmp_path):
    runner = LocalRunner(PipelineParams(input=str(tiny_acquisition), outdir=str(tmp_path), slices=[0, 2]),
                         progress=False)
    with pytest.raises(InputError, match=r"slices \[1\] .* pass --allow_gaps \(allow_gaps: true"):
        runner.run()
    assert not (tmp_path / "mosaic_grids").exists()
    parser = load_script("linum_run_local.py").build_parser()
    assert parser.parse_args(["--simulate", "tiny", "--allow_gaps"]).allow_gaps is True
    assert parser.parse_args(["--simulate", "tiny"]).allow_gaps is None


# -- 13. metadata paths stay inside the image ---------------------------------------------------


@pytest.mark.parametrize("level_path", ["../../x", "/etc", "."])
def test_level_path_outside_the_image_is_refused(level_path, tmp_path):
    image = tmp_path / "a.ome.zarr"
    save_omezarr(np.zeros((2, 4, 4), np.float32), image, (0.01,) * 3, n_levels=0)
    attributes = json.loads((image / ".zattrs").read_text())
    attributes["multiscales"][0]["datasets"][0]["path"] = level_path
    (image / ".zattrs").write_text(json.dumps(attributes))
    with pytest.raises(InputError, match="outside the image"):
        read_omezarr_info(image)


# -- 15a, 15b. closed pipes, screenshot formats -------------------------------------------------


@pytest.fixture(scope="module")
def small_image(tmp_path_factory) -> Path:
    image = tmp_path_factory.mktemp("image") / "v.ome.zarr"
    save_omezarr(np.random.default_rng(0).random((8, 32, 32)).astype(np.float32), image, (0.01,) * 3, n_levels=1)
    return image


def test_info_script_into_a_closed_pipe_is_quiet(small_image):
    process = subprocess.Popen([sys.executable, str(BIN / "linum_info_omezarr.py"), str(small_image)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    process.stdout.close()  # like `| head` that has read what it wanted
    stderr = process.stderr.read().decode()
    process.wait(timeout=60)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert process.returncode == 141


def test_screenshot_format_follows_the_suffix(small_image, tmp_path):
    assert _script("linum_screenshot_omezarr.py", str(small_image), str(tmp_path / "s.jpg")).returncode == 0
    assert (tmp_path / "s.jpg").read_bytes()[:2] == b"\xff\xd8"
    result = _script("linum_screenshot_omezarr.py", str(small_image), str(tmp_path / "s.bmp"))
    assert result.returncode == 2 and "unknown image suffix '.bmp'" in result.stderr
    assert not (tmp_path / "s.bmp").exists()


# -- 16. pyramid borders weigh what they cover ---------------------------------------------------


def test_pyramid_border_is_the_mean_of_the_base_it_covers(tmp_path):
    a = np.zeros((1, 4, 7), np.float32)
    a[..., 6] = 7
    save_omezarr(a, tmp_path / "a.ome.zarr", (0.01,) * 3, n_levels=2)
    level2 = zarr.open_group(str(tmp_path / "a.ome.zarr"), mode="r")["2"][:]
    np.testing.assert_allclose(level2[0, 0], [0.0, 7 / 3], rtol=1e-6)


@settings(max_examples=12, deadline=None)
@given(ny=st.integers(1, 70), nx=st.integers(1, 70), chunk=st.integers(3, 40), seed=st.integers(0, 2**16))
def test_every_pyramid_level_is_the_block_mean_of_level_0(ny, nx, chunk, seed):
    base = np.random.default_rng(seed).random((2, ny, nx)) * 1000
    levels = lateral_pyramid(da.from_array(base, chunks=(2, chunk, chunk)), (1.0, 1.0, 1.0), 5)
    for k, level in enumerate(levels, start=1):
        expected = block_mean(da.from_array(base), (1, 2**k, 2**k)).compute()
        np.testing.assert_allclose(level.data.compute(), expected, rtol=1e-9, atol=1e-9)


def test_integer_pyramid_stays_within_rounding_of_level_0():
    base = np.random.default_rng(3).integers(0, 65535, (2, 101, 77), dtype=np.uint16)
    levels = lateral_pyramid(da.from_array(base, chunks=(2, 32, 32)), (1.0, 1.0, 1.0), 5)
    for k, level in enumerate(levels, start=1):
        expected = block_mean(da.from_array(base.astype(np.float64)), (1, 2**k, 2**k)).compute()
        assert np.abs(level.data.compute() - expected).max() <= 0.5 * k  # one rounding per level


# -- 17. lz4 opens in every reader --------------------------------------------------------------


@pytest.mark.parametrize("ngff_version", ["0.4", "0.5"])
def test_lz4_image_opens_in_tensorstore(ngff_version, tmp_path):
    tensorstore = pytest.importorskip("tensorstore")
    data = np.random.default_rng(1).random((4, 16, 16)).astype(np.float32)
    image = tmp_path / "lz4.ome.zarr"
    save_omezarr(data, image, (0.01,) * 3, n_levels=0, compression="lz4", ngff_version=ngff_version)
    driver = "zarr" if ngff_version == "0.4" else "zarr3"
    store = tensorstore.open({"driver": driver, "kvstore": {"driver": "file", "path": str(image / "0")}}).result()
    np.testing.assert_array_equal(store.read().result(), data)
    assert read_omezarr_info(image).codec == "lz4"
