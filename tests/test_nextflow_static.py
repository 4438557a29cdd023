"""Offline checks of the Nextflow pipeline (Nextflow itself is not needed).

1. Nextflow's own strict-syntax parser (the language server jar, see
   ``make lint-jar``) finds no error in main.nf, workflows/, modules/,
   the configs and the nf-test specs, and does find the mistakes we plant
   in broken copies.
2. The contract between modules and scripts: every ``bin/`` script a module
   calls exists, is executable and its parser accepts the command line the
   module builds (script block + ``ext.args`` of conf/modules.config, with
   every parameter set); every ``params.X`` is declared in nextflow.config,
   in nextflow_schema.json and in :class:`~linumpy.pipeline.params.PipelineParams`.

The helpers that read the modules and conf/modules.config are shared with
tests/test_orchestrators_agree.py.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from linumpy.io.codecs import COMPRESSIONS
from linumpy.pipeline import steps
from linumpy.pipeline.layout import OutputLayout
from linumpy.pipeline.params import NEXTFLOW_ONLY, PipelineParams
from linumpy.pipeline.plan import (
    Task, plan_after_focus, plan_field_curvature, plan_focus_combine, plan_motor_positions, plan_simulation,
    plan_slice, plan_volume,
)

ROOT = Path(__file__).resolve().parents[1]
LINT_SCRIPT = ROOT / "tests" / "nextflow" / "lint.groovy"
LOCAL_JAR = ROOT / ".cache" / "nextflow-lint" / "language-server-all.jar"

#: A value for every step option, none equal to a script default, so that each flag is exercised.
SAMPLE_PARAMS = PipelineParams(
    outdir="results", simulate="tiny", simulate_seed=3, simulate_layout="tiff", simulate_n_slices=2,
    slices=[0, 1, 2], exclude_slices=[1], field_curvature_slices=3, n_levels=2, compression="zstd",
    resolution=12.5, axial_resolution=3.5, z_range=[2, 40], mosaic_dtype="float32",
    no_fix_galvo_shift=True, galvo_confidence=0.4, no_fix_field_curvature=True, max_rotation_deg=3.0, interpolate_missing=True,
    blend="average", max_shift_px=7.5, stitch_flatfield="none", surface_depth_um=20.0, useful_depth_um=300.0,
    focus="gaussian", attenuation="none", agarose_attenuation_per_mm=0.3, attenuation_edge_sigma_px=4, attenuation_step_log=0.7, axial_dtype="float16", percentiles=[0.5, 99.5], flatfield=True,
    normalize_dtype="uint16", slice_thickness=200.0, blend_overlap_um=40.0, stack_resolution=25.0,
    pyramid_resolutions=[25, 50], allow_gaps=True, stack_chunks=[32, 64, 64],
    screenshot_z=3, screenshot_level=1, report_title="Brain 12 QC",
)


# -- reading the Nextflow sources -------------------------------------------------------------


def nextflow_sources() -> list[Path]:
    """Every Nextflow script, config and nf-test spec of the pipeline."""
    files = [ROOT / "main.nf", ROOT / "nextflow.config", ROOT / "nf-test.config"]
    for pattern in ("workflows/*.nf", "modules/local/*.nf", "conf/*.config", "tests/nextflow/*.nf.test"):
        files += sorted(ROOT.glob(pattern))
    return files


def _block(text: str, start: int) -> str:
    """The text between the brace at or after ``start`` and its matching closing brace."""
    opening = text.index("{", start)
    depth = 0
    for index in range(opening, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[opening + 1:index]
    raise ValueError("unbalanced braces")


@cache
def module_processes() -> dict[str, dict[str, Any]]:
    """``{process: {"file", "script_defs", "command", "script"}}`` from modules/local/*.nf."""
    processes = {}
    for path in sorted((ROOT / "modules" / "local").glob("*.nf")):
        text = path.read_text()
        match = re.search(r"^process (\w+) \{", text, re.MULTILINE)
        assert match, f"{path}: no process"
        body = _block(text, match.start())
        script = re.search(r"^\s*script:\n(.*?)^\s*(stub:|$)", body, re.MULTILINE | re.DOTALL)
        assert script, f"{path}: no script: block"
        script_text = script.group(1)
        command = re.search(r'"""\n(.*?)"""', script_text, re.DOTALL)
        assert command, f"{path}: no triple-quoted command in the script: block"
        defs = dict(re.findall(r"^\s*def (\w+) = (.+)$", script_text, re.MULTILINE))
        called = re.findall(r"\b(linum_\w+\.py)\b", command.group(1))
        passes_through = command.group(1).split() == ["true"]  # publishes its inputs (PUBLISH_AXIAL_CORR)
        assert len(called) == 1 or passes_through, \
            f"{path}: the script block must call exactly one bin/ script, calls {called}"
        processes[match.group(1)] = {
            "file": path, "script_defs": defs, "command": " ".join(command.group(1).split()),
            "script": called[0] if called else None,
        }
    return processes


_EXT_ARG = re.compile(r"""^\s*params\.(\w+)(\s*!=\s*null)?\s*\?\s*(["'])(.*)\3\s*:\s*''\s*,?\s*$""")


@cache
def ext_args_by_selector() -> dict[str, list[tuple[str, bool, str]]]:
    """``{withName selector: [(param, test_not_null, template), ...]}`` from conf/modules.config."""
    text = (ROOT / "conf" / "modules.config").read_text()
    selectors = {}
    for match in re.finditer(r"withName:\s*'([^']+)'\s*\{", text):
        body = _block(text, match.start())
        entries = []
        args = re.search(r"ext\.args\s*=\s*\{\s*\[(.*?)\]\.join\(' '\)\.trim\(\)\s*\}", body, re.DOTALL)
        if args:
            for line in filter(str.strip, args.group(1).splitlines()):
                entry = _EXT_ARG.match(line)
                assert entry, f"conf/modules.config ({match.group(1)}): unreadable ext.args entry {line.strip()!r}"
                entries.append((entry.group(1), bool(entry.group(2)), entry.group(4)))
        else:
            assert "ext.args" not in body, f"conf/modules.config ({match.group(1)}): unreadable ext.args"
        selectors[match.group(1)] = entries
    return selectors


@cache
def process_aliases() -> dict[str, set[str]]:
    """``{process: {names it is included as}}`` from workflows/*.nf and main.nf."""
    aliases: dict[str, set[str]] = {name: {name} for name in module_processes()}
    for path in [ROOT / "main.nf", *ROOT.glob("workflows/*.nf")]:
        for name, alias in re.findall(r"include \{\s*(\w+)(?:\s+as\s+(\w+))?\s*\}", path.read_text()):
            aliases.setdefault(name, {name}).add(alias or name)
    return aliases


def selector_for(process: str) -> str | None:
    """The one withName selector of conf/modules.config that sets ``process``'s (or its aliases') ext.args."""
    matching = [s for s, entries in ext_args_by_selector().items()
                if entries and any(re.fullmatch(s, n) for n in process_aliases()[process])]
    assert len(matching) <= 1, f"{process}: several withName selectors apply: {matching}"
    return matching[0] if matching else None


# -- rendering a module's command line ------------------------------------------------------


#: The shell-quoting idiom of conf/modules.config: ``X.replace("'", "'\\''")`` inside single quotes.
_QUOTED = """.replace("'", "'\\\\''")"""


def _value(expression: str, context: dict[str, Any]) -> Any:
    """Evaluate the Groovy expressions the modules use: ``a``, ``a.b``, ``a.join(' ')``, quoting."""
    expression = expression.strip()
    if expression.endswith(_QUOTED):
        return str(_value(expression.removesuffix(_QUOTED), context)).replace("'", "'\\''")
    joined = expression.endswith(".join(' ')")
    parts = expression.removesuffix(".join(' ')").split(".")
    value: Any = context
    for part in parts:
        if not re.fullmatch(r"\w+", part):
            raise ValueError(f"cannot evaluate Groovy expression {expression!r}")
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return " ".join(_text(item) for item in value) if joined else value


def _text(value: Any) -> str:
    if isinstance(value, Path):
        return value.name  # Nextflow stages inputs under their file names
    if isinstance(value, (list, tuple)):
        return " ".join(_text(item) for item in value)
    return str(value)


def render(template: str, context: dict[str, Any]) -> str:
    """Interpolate ``${...}`` in a Groovy string."""
    return re.sub(r"\$\{((?:[^}\"]|\"[^\"]*\")*)\}", lambda m: _text(_value(m.group(1), context)), template)


def rendered_ext_args(process: str, params: PipelineParams) -> str:
    """What ``task.ext.args`` holds for ``process`` with these params."""
    selector = selector_for(process)
    if selector is None:
        return ""
    words = []
    for param, test_not_null, template in ext_args_by_selector()[selector]:
        value = getattr(params, param)
        if (value is not None) if test_not_null else bool(value):
            words.append(render(template, {"params": params}))
    return " ".join(words)


#: What ``${task.cpus}`` renders to in a module's command line.
_TASK_CPUS = "TASK_CPUS"


def nextflow_command(process: str, inputs: dict[str, Any], params: PipelineParams) -> list[str]:
    """The command line ``process`` runs for these inputs and params, split like a shell would."""
    module = module_processes()[process]
    context = {**inputs, "task": {"cpus": _TASK_CPUS}}
    for name, expression in module["script_defs"].items():
        if expression.strip() == "task.ext.args ?: ''":
            context[name] = rendered_ext_args(process, params)
            continue
        conditional = re.fullmatch(r"""(\w+)\s*\?\s*(["'])(.*)\2\s*:\s*''""", expression.strip())
        assert conditional, f"{module['file']}: cannot read `def {name} = {expression}`"
        context[name] = render(conditional.group(3), context) if _value(conditional.group(1), context) else ""
    words = shlex.split(render(module["command"], context))
    # The local runner gives a task its cores through $LINUMPY_WORKERS, not the command line.
    for i in range(len(words) - 1):
        if words[i : i + 2] == ["--workers", _TASK_CPUS]:
            return words[:i] + words[i + 2 :]
    return words


def planned_tasks(params: PipelineParams, outdir: Path, slice_ids: list[int]) -> list[Task]:
    """Every task of a run, as the local runner plans it (without running anything)."""
    layout = OutputLayout(outdir)
    if params.input is not None:
        acquisition, upstream = Path(params.input), ()
    else:
        acquisition, upstream = layout.acquisition, (plan_simulation(params, layout),)
    motor = plan_motor_positions(params, layout, acquisition, upstream)
    curvature = plan_field_curvature(params, layout, acquisition, upstream)
    chains = {i: plan_slice(params, layout, acquisition, i, upstream, curvature) for i in slice_ids}
    combined = plan_focus_combine(params, layout, {i: chain[-1] for i, chain in chains.items()})
    borrower = slice_ids[-1]  # as if its own focus estimate were refused: corrected again with the acquisition's
    ends = {i: plan_after_focus(params, layout, chain, combined, i == borrower) for i, chain in chains.items()}
    normalized = {i: end[-2] for i, end in ends.items()}
    sidecar = acquisition / "acquisition.json" if params.input is not None else None
    volume = plan_volume(params, layout, slice_ids, motor, normalized, sidecar)
    return [*upstream, motor, curvature, *(task for chain in chains.values() for task in chain), combined,
            *(task for end in ends.values() for task in end), *volume]


def load_script(name: str):
    """Import ``bin/<name>`` as a module (fails loudly if the script is missing)."""
    path = ROOT / "bin" / name
    if not path.is_file():
        pytest.fail(f"bin/{name} does not exist yet, but a Nextflow module and the local runner call it "
                    f"(see docs/architecture.md, 'Command-line contract')")
    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- 1. Nextflow's strict parser ------------------------------------------------------------


def lint_jar() -> Path:
    """The language server jar: $NF_LINT_JAR (required in CI), else the local .cache copy."""
    configured = os.environ.get("NF_LINT_JAR")
    if configured:
        assert Path(configured).is_file(), f"NF_LINT_JAR={configured} is not a file; run `make lint-jar`"
        return Path(configured)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("NF_LINT_JAR is not set in CI: the Nextflow lint must run (make test sets it)")
    if not LOCAL_JAR.is_file():
        pytest.skip("Nextflow lint jar missing: run `make lint-jar` (CI runs it)")
    return LOCAL_JAR


def run_lint(files: list[Path], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    java = shutil.which("java")
    if java is None:
        pytest.fail("java (JDK 17+) is needed for the Nextflow lint")
    return subprocess.run(
        [java, "-cp", str(lint_jar()), "groovy.ui.GroovyMain", str(LINT_SCRIPT), *map(str, files)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def _copy_pipeline(destination: Path) -> Path:
    destination.mkdir(parents=True)
    for name in ("main.nf", "nextflow.config"):
        shutil.copy(ROOT / name, destination / name)
    for name in ("workflows", "modules", "conf"):
        shutil.copytree(ROOT / name, destination / name)
    (destination / "tests").mkdir()
    shutil.copytree(ROOT / "tests" / "nextflow", destination / "tests" / "nextflow")
    return destination


def _edit(path: Path, old: str, new: str) -> int:
    """Replace the first ``old`` by ``new``; return the 1-based line of the edit."""
    text = path.read_text()
    assert old in text, f"{path}: {old!r} not found, update the planted mistake"
    path.write_text(text.replace(old, new, 1))
    return text[: text.index(old)].count("\n") + 1


def _plant_missing_brace(root: Path) -> tuple[Path, int, str]:
    path = root / "modules" / "local" / "stitch_3d.nf"
    text = path.read_text()
    cut = text.rindex("}")
    path.write_text(text[:cut] + text[cut + 1:])
    return path, 0, "Unexpected input"


def _plant_missing_comma_nf(root: Path) -> tuple[Path, int, str]:
    path = root / "workflows" / "linumpy.nf"
    return path, _edit(path, "[id: id, tag:", "[id: id tag:"), "Unexpected input"


def _plant_missing_comma_config(root: Path) -> tuple[Path, int, str]:
    path = root / "conf" / "base.config"
    return path, _edit(path, "cpus: params.max_cpus,", "cpus: params.max_cpus"), "Unexpected input"


def _plant_misspelled_label(root: Path) -> tuple[Path, int, str]:
    path = root / "modules" / "local" / "normalize.nf"
    _edit(path, "    script:\n", "    scipt:\n")
    return path, 0, "Invalid process definition"


def _plant_undefined_process(root: Path) -> tuple[Path, int, str]:
    path = root / "workflows" / "linumpy.nf"
    line = _edit(path, "    NORMALIZE(PUBLISH_AXIAL_CORR", "    NORMALISE(PUBLISH_AXIAL_CORR")
    return path, line, "`NORMALISE` is not defined"


def _plant_unresolvable_include(root: Path) -> tuple[Path, int, str]:
    path = root / "workflows" / "linumpy.nf"
    line = _edit(path, "'../modules/local/normalize'", "'../modules/local/normalise'")
    return path, line, "Invalid include source"


def _plant_deprecated_channel(root: Path) -> tuple[Path, int, str]:
    path = root / "main.nf"
    return path, _edit(path, "channel.value(", "Channel.value("), "use `channel` instead"


def _plant_implicit_it(root: Path) -> tuple[Path, int, str]:
    path = root / "workflows" / "linumpy.nf"
    line = _edit(path, ".map { row -> row.slice_id as Integer }", ".map { it.slice_id as Integer }")
    return path, line, "Implicit closure parameter"


def _plant_broken_nf_test(root: Path) -> tuple[Path, int, str]:
    path = root / "tests" / "nextflow" / "normalize.nf.test"
    text = path.read_text()
    cut = text.rindex("}")
    path.write_text(text[:cut] + text[cut + 1:])
    return path, 0, "Unexpected input"


MISTAKES = {
    "missing brace": _plant_missing_brace,
    "missing comma in a script": _plant_missing_comma_nf,
    "missing comma in a config": _plant_missing_comma_config,
    "misspelled section label": _plant_misspelled_label,
    "undefined process": _plant_undefined_process,
    "unresolvable include": _plant_unresolvable_include,
    "Channel instead of channel": _plant_deprecated_channel,
    "implicit it": _plant_implicit_it,
    "broken nf-test spec": _plant_broken_nf_test,
}


@pytest.fixture(scope="module")
def lint_results(tmp_path_factory):
    """Lint our sources and one broken copy of the pipeline per planted mistake, in one JVM run."""
    tmp_path = tmp_path_factory.mktemp("nextflow-lint")
    planted = {}
    for index, (name, plant) in enumerate(MISTAKES.items()):
        root = _copy_pipeline(tmp_path / f"case{index}")
        path, line, message = plant(root)
        target = path if path.suffix in (".config", ".test") or path.name == "main.nf" else root / "main.nf"
        planted[name] = (root, path, line, message, target)
    ours = nextflow_sources()
    result = run_lint([*ours, *sorted({case[4] for case in planted.values()})])
    return result, planted


def test_pipeline_passes_nextflow_strict_parser(lint_results):
    result, planted = lint_results
    assert len(nextflow_sources()) >= 15
    assert result.returncode == 1, result.stdout + result.stderr  # the planted mistakes
    roots = tuple(str(case[0]) + os.sep for case in planted.values())
    ours = [line for line in result.stdout.splitlines() if not line.startswith(roots)]
    assert not ours, "\n".join(ours) + result.stderr


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_strict_parser_catches_planted_mistake(lint_results, mistake):
    result, planted = lint_results
    root, path, line, message, _ = planted[mistake]
    problems = [p for p in result.stdout.splitlines() if p.startswith(str(root) + os.sep)]
    found = [p for p in problems if p.startswith(f"{path}:") and message in p]
    assert found, f"expected {path}:...: {message} in:\n" + "\n".join(problems)
    if line:  # a missing separator is reported where the next token starts
        assert any(p.startswith((f"{path}:{line}:", f"{path}:{line + 1}:")) for p in found), found


# -- 2. modules against the scripts ---------------------------------------------------------


def test_every_step_has_one_module_and_the_modules_call_the_steps_scripts():
    processes = module_processes()
    assert set(processes) == {step.process for step in (*steps.STEPS, steps.PUBLISH_AXIAL_CORR)}
    for step in (*steps.STEPS, steps.PUBLISH_AXIAL_CORR):
        assert processes[step.process]["script"] == step.script, step.process
        assert processes[step.process]["file"].stem == step.name, "module file is named after the step"


def test_conf_modules_options_are_the_steps_options():
    """conf/modules.config ext.args and the steps' Option tables hold the same (param, flag) pairs."""
    for step in steps.STEPS:
        selector = selector_for(step.process)
        entries = ext_args_by_selector()[selector] if selector else []
        from_config = [(param, template.split()[0]) for param, _, template in entries]
        assert from_config == [(o.param, o.flag) for o in step.options], step.process
        for (param, not_null, _), option in zip(entries, step.options):
            assert not_null == (option.kind != "switch"), f"{step.process}: {param} test must match its kind"


SCRIPTS = sorted({step.script for step in steps.STEPS})


@pytest.mark.parametrize("script", SCRIPTS)
def test_called_script_exists_and_is_executable(script):
    path = ROOT / "bin" / script
    module = load_script(script)
    assert os.access(path, os.X_OK), f"bin/{script} is not executable (chmod +x)"
    assert path.read_text().startswith("#!/usr/bin/env python3\n"), f"bin/{script}: shebang"
    assert callable(module.build_parser) and callable(module.main)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("params", [SAMPLE_PARAMS, PipelineParams(simulate="tiny")], ids=["all-set", "defaults"])
def test_scripts_accept_the_modules_command_lines(script, params, tmp_path):
    parser = load_script(script).build_parser()
    tasks = [t for t in planned_tasks(params, tmp_path / "results", [0, 2]) if t.step.script == script]
    assert tasks
    for task in tasks:
        command = nextflow_command(task.step.process, task.inputs, params)
        assert command[0] == script
        try:
            parsed = parser.parse_args(command[1:])
        except SystemExit:
            pytest.fail(f"bin/{script} rejects the command of {task.step.process}: {shlex.join(command)}")
        for option in task.step.options:  # each option reached the script with its value
            value = getattr(params, option.param)
            dest = option.flag.lstrip("-")
            if value is None or value is False:
                continue
            got = getattr(parsed, dest)
            expected = True if option.kind == "switch" else value
            assert got == expected, f"{task.step.process}: {option.flag} gave {got!r}, params hold {expected!r}"


def test_pipeline_fixed_flags_exist_in_the_scripts():
    """Flags the modules set themselves (not from params) are in the scripts' parsers."""
    for process, module in module_processes().items():
        flags = set(re.findall(r"(--\w+)", module["command"] + " ".join(module["script_defs"].values())))
        if not flags:
            continue
        options = load_script(module["script"]).build_parser()._option_string_actions
        assert flags <= set(options), f"{process}: {sorted(flags - set(options))} not in bin/{module['script']}"


# -- 3. parameters: nextflow.config == schema == PipelineParams ------------------------------


def _groovy_literal(text: str) -> Any:
    text = text.strip()
    text = re.sub(r"\bnull\b", "None", re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", text)))
    return ast.literal_eval(text)


@cache
def config_params() -> dict[str, Any]:
    text = (ROOT / "nextflow.config").read_text()
    body = _block(text, text.index("params {"))
    values = {}
    for line in body.splitlines():
        line = line.split("//")[0].strip()
        if line:
            name, value = (part.strip() for part in line.split("=", 1))
            values[name] = _groovy_literal(value)
    return values


@cache
def schema_params() -> dict[str, dict[str, Any]]:
    schema = json.loads((ROOT / "nextflow_schema.json").read_text())
    properties = {}
    for group in schema["$defs"].values():
        for name, spec in group["properties"].items():
            assert name not in properties, f"{name} documented twice"
            assert spec.get("description"), f"{name}: no description"
            properties[name] = spec
    assert {ref["$ref"].split("/")[-1] for ref in schema["allOf"]} == set(schema["$defs"])
    return properties


def _code(path: Path) -> str:
    """A Nextflow file without its comments."""
    text = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


def used_params() -> dict[str, set[str]]:
    """``{param: {files using it}}`` over the Nextflow scripts and configs."""
    used: dict[str, set[str]] = {}
    for path in nextflow_sources():
        if path.suffix in (".nf", ".config") and path.name != "nf-test.config":
            for name in re.findall(r"\bparams\.(\w+)", _code(path)):
                used.setdefault(name, set()).add(path.relative_to(ROOT).as_posix())
    return used


def test_params_declared_everywhere_and_used():
    declared = set(config_params())
    assert declared == set(schema_params()), "nextflow.config params vs nextflow_schema.json"
    assert declared == set(PipelineParams.model_fields), "nextflow.config params vs PipelineParams"
    used = used_params()
    assert set(used) <= declared, f"used but not declared: {sorted(set(used) - declared)}"
    assert declared <= set(used), f"declared but never used: {sorted(declared - set(used))}"
    assert NEXTFLOW_ONLY <= declared


def test_params_only_used_in_the_entry_workflow_and_configs():
    for path in [*ROOT.glob("workflows/*.nf"), *ROOT.glob("modules/local/*.nf")]:
        assert "params." not in _code(path), f"{path}: pass params into the workflow as inputs"


def test_defaults_agree():
    defaults = PipelineParams()
    schema = schema_params()
    for name, value in config_params().items():
        assert getattr(defaults, name) == value, f"{name}: nextflow.config {value!r} vs PipelineParams"
        assert schema[name].get("default") == value, f"{name}: nextflow.config {value!r} vs schema"


def _variants(spec: dict) -> list[dict]:
    """The alternatives of a JSON schema, ``anyOf`` flattened."""
    if "anyOf" in spec:
        return [v for option in spec["anyOf"] for v in _variants(option)]
    return [spec]


def test_schema_types_and_choices_agree_with_the_model():
    model_schema = PipelineParams.model_json_schema()["properties"]
    for name, spec in schema_params().items():
        variants = _variants(model_schema[name])
        choices = [v["enum"] for v in variants if "enum" in v]
        if "enum" in spec:
            assert choices == [spec["enum"]], name
        model_types = {v.get("type") for v in variants} - {"null"}
        if "type" in spec:
            assert spec["type"] in model_types or (spec["type"] == "number" and "integer" in model_types), name
    assert schema_params()["compression"]["enum"] == list(COMPRESSIONS)


def test_sample_params_set_every_step_option():
    options = {option.param for step in steps.STEPS for option in step.options}
    unset = sorted(p for p in options if getattr(SAMPLE_PARAMS, p) in (None, False))
    assert not unset, unset


def test_example_params_file_is_valid():
    from linumpy.pipeline.params import load_params

    params = load_params(ROOT / "params.example.yaml")
    assert params.input is not None
