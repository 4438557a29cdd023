"""The local runner's console: progress display, Nextflow-style trace, end-of-run summary."""

from __future__ import annotations

import io
import logging
import re
from datetime import datetime

import pytest

from linumpy.pipeline.progress import Progress
from linumpy.pipeline.runner import RunSummary
from linumpy.pipeline.summary import end_of_run_lines
from linumpy.pipeline.trace import (
    TRACE_COLUMNS, TaskTrace, format_duration, format_memory, parse_duration, parse_memory, read_trace,
    write_trace,
)
from linumpy.qc import warning_log
from linumpy.qc.records import write_qc_record


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_off_a_terminal_is_plain_timestamped_lines():
    stream = io.StringIO()
    progress = Progress(workers=2, stream=stream)
    progress.add(3)
    progress.finished("collect_motor_positions", skipped=True)
    progress.started("stitch_3d_z00")
    progress.started("stitch_3d_z01")
    progress.finished("stitch_3d_z00")
    progress.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 4
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines)
    assert "[1/3 tasks] running: nothing" in lines[0] and "ETA unknown" in lines[0]
    assert "running: stitch_3d_z00, stitch_3d_z01" in lines[2]
    assert lines[3].split(" ", 2)[2].startswith("stitch_3d_z00 done in ")
    assert "[2/3 tasks] running: stitch_3d_z01" in lines[3] and "ETA ~" in lines[3]


def test_progress_on_a_terminal_redraws_one_line():
    stream = _Tty()
    progress = Progress(workers=1, stream=stream)
    progress.add(2)
    progress.started("normalize_z00")
    progress.finished("normalize_z00")
    progress.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n"), "one line, ended once"
    assert text.count("\r\x1b[K") >= 2
    assert "[1/2 tasks]" in text.rsplit("\r", 1)[-1]


def test_progress_eta_comes_from_tasks_that_ran_and_the_workers():
    progress = Progress(workers=2, enabled=False)
    progress.add(10)
    for _ in range(4):
        progress.finished("cached", skipped=True)
    assert progress.eta_seconds() is None, "found-complete tasks say nothing about the time left"
    progress.durations = [10.0, 30.0]
    progress.done = 6
    assert progress.eta_seconds() == pytest.approx(4 * 20.0 / 2)


def test_trace_round_trips_and_reads_nextflow_traces(tmp_path):
    tasks = [TaskTrace(1, "ab/cdef12", "stitch_3d (z03)", "COMPLETED", 0, 4242,
                       datetime(2026, 1, 2, 3, 4, 5, 678000), 63.4, 58.0, 1_300_000_000),
             TaskTrace(2, "cd/ef1234", "report", "CACHED")]
    path = tmp_path / "trace.txt"
    write_trace(path, tasks)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == list(TRACE_COLUMNS)
    assert lines[1].split("\t") == ["1", "ab/cdef12", "4242", "stitch_3d (z03)", "COMPLETED", "0",
                                    "2026-01-02 03:04:05.678", "1m 3s", "1m 3s", "91.5%", "1.2 GB", "-", "-", "-"]
    back = read_trace(path)
    assert back[0].step == "stitch_3d" and back[0].realtime_s == 63 and back[0].cpu_s == pytest.approx(57.6, 0.01)
    assert back[1].realtime_s is None and back[1].peak_rss is None
    nextflow = ("task_id\thash\tnative_id\tname\tstatus\texit\tsubmit\tduration\trealtime\t%cpu\tpeak_rss\t"
                "peak_vmem\trchar\twchar\n"
                "3\t4e/a1b2c3\t991\tLINUMPY:STITCH_3D (2)\tCOMPLETED\t0\t2026-01-02 03:04:05.000\t2m 1s\t"
                "1m 50s\t180.0%\t3.4 GB\t5 GB\t1 GB\t2 GB\n")
    (tmp_path / "nf.txt").write_text(nextflow)
    (task,) = read_trace(tmp_path / "nf.txt")
    assert task.step == "STITCH_3D" and task.realtime_s == 110 and task.cpu_s == pytest.approx(198)
    assert task.peak_rss == round(3.4 * 1024**3)


@pytest.mark.parametrize(("seconds", "text"), [(0.25, "250ms"), (3.5, "3.5s"), (63, "1m 3s"), (3725, "1h 2m 5s")])
def test_durations_read_back(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


def test_memory_reads_back():
    assert format_memory(512) == "512 B" and parse_memory("512 B") == 512
    assert parse_memory(format_memory(300 * 1024**2)) == 300 * 1024**2


def test_end_of_run_summary_lists_the_warnings_and_the_footprint(tmp_path):
    warning_log.reset()
    warning_log.install()
    try:
        logging.getLogger("linumpy.stitching").warning("fitted row step 107.74 px differs from 109.00 px")
        write_qc_record(tmp_path / "stitch_3d" / "slice_z02_stitch_3d.ome.zarr", "stitch_3d", {"confidence": 1})
    finally:
        logging.getLogger().removeHandler(warning_log._LOG)
        warning_log.reset()
    (tmp_path / "acquisition").mkdir()
    (tmp_path / "acquisition" / "tile.bin").write_bytes(b"x" * 4000)
    summary = RunSummary(ran=["a", "b"], skipped=["c"],
                         trace=[TaskTrace(1, "aa/bbbbbb", "a", "COMPLETED", 0, realtime_s=2.0, cpu_s=1.5,
                                          peak_rss=2_000_000)])
    text = "\n".join(end_of_run_lines(summary, tmp_path, None))
    assert "done: 2 tasks run, 1 skipped" in text and "CPU time 1.5s" in text
    assert "1 warning(s)" in text and "slice z02 stitch_3d: fitted row step 107.74 px differs" in text
    assert re.search(r"acquisition +4 KB \(1\.00 GB per raw GB\)", text), text
    assert re.search(r"total +\d.* GB per raw GB", text)


def test_every_script_help_has_upper_case_names_and_readable_defaults():
    import importlib.util
    from pathlib import Path

    for script in sorted((Path(__file__).resolve().parents[1] / "bin").glob("linum_*.py")):
        spec = importlib.util.spec_from_file_location(script.stem, script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        parser = module.build_parser()
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings:
                name = action.metavar or action.dest.upper()
                assert name == name.upper(), f"{script.name}: positional {name} not in upper case"
        assert "[(" not in text and "[[" not in text and "None]" not in text, f"{script.name}: Python repr default"


@pytest.mark.parametrize(("name", "text", "expected"),
                         [("p.yaml", "outdir: x\nslices: [1, 2\nfoo: : bar\n", "p.yaml:3:4: not valid YAML: expected"),
                          ("p.json", '{"a": 1,\n "b": }\n', "p.json:2:7: not valid JSON: Expecting value")])
def test_params_file_errors_give_line_and_column(tmp_path, name, text, expected):
    from linumpy.errors import InputError
    from linumpy.pipeline.params import read_params_file

    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=re.escape(expected)):
        read_params_file(tmp_path / name)
