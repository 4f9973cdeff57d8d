"""``airflow-mlops init``: a new pipeline project from the template next to this module: a DAG file, a
spec and its two suites, a sample, a README, CI definitions for GitHub Actions, Jenkins and GitLab that
run ``airflow-mlops ci``, and the versions of this environment as the project's constraints file.

Template files hold ``@pipeline@``-style tokens (``$`` and ``{{ }}`` belong to the CI systems' own
syntax); a leading ``dot-`` in a template name becomes ``.`` (``dot-github`` -> ``.github``). The
template is a binary pipeline; ``tasks/<task>/`` holds the files another task type replaces (its spec
and training suite).
"""

from __future__ import annotations

import json
import re
import sys
from datetime import date, timedelta
from importlib import metadata
from pathlib import Path

from airflow_mlops.spec import SpecError
from airflow_mlops.task_types import TaskType

TEMPLATE = Path(__file__).with_name("template")
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def constraints() -> str:
    """This environment's distributions as pins, airflow-mlops itself and editable installs left out:
    the set the project's CI installs with ``-c`` (the way Airflow pins a tested set)."""
    pins = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        direct = dist.read_text("direct_url.json")
        if not name or name.lower() in ("airflow-mlops", "pip") or (direct and '"editable": true' in direct):
            continue
        pins[name.lower()] = f"{name}=={dist.version}"
    python = ".".join(map(str, sys.version_info[:2]))
    header = f"# The versions airflow-mlops ran with when this project was made (Python {python}).\n"
    return header + "\n".join(pins[key] for key in sorted(pins)) + "\n"


def scaffold(
    target: Path, pipeline: str, *, owner: str, task: TaskType = "binary", today: date | None = None
) -> list[Path]:
    """Write the project of a ``task`` pipeline into ``target`` (new, or an empty folder); returns the files
    written."""
    from airflow_mlops import __version__
    from airflow_mlops.ci.sample import sample_root, synthesise
    from airflow_mlops.spec import load_spec

    if not NAME.match(pipeline):
        raise SpecError(f"pipeline name {pipeline!r}: lowercase letters, digits and _, starting with a letter")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not an empty folder: give a new folder")
    if "+unknown" in __version__:  # the project's requirements.txt would pin a version that does not exist
        raise ValueError("airflow-mlops runs from a source tree here, not an install: pip install it first")
    start = (today or date.today()) - timedelta(days=28)
    tokens = {
        "@pipeline@": pipeline,
        "@owner@": json.dumps(owner),
        "@start_date@": start.isoformat(),
        "@version@": __version__,
        "@python@": ".".join(map(str, sys.version_info[:2])),
    }
    files = {
        str(p.relative_to(TEMPLATE)): p
        for p in TEMPLATE.rglob("*")
        if p.is_file() and p.suffix != ".pyc" and p.relative_to(TEMPLATE).parts[0] != "tasks"
    }
    overlay = TEMPLATE / "tasks" / task
    files |= {str(p.relative_to(overlay)): p for p in overlay.rglob("*") if p.is_file()}
    written = []
    for relative, source in sorted(files.items()):
        for token, value in tokens.items():
            relative = relative.replace(token, value)
        path = target / re.sub(r"(^|/)dot-", r"\1.", relative)
        text = source.read_text()
        for token, value in tokens.items():
            text = text.replace(token, value)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    (target / "constraints.txt").write_text(constraints())
    spec = load_spec(target / "include" / "pipelines" / f"{pipeline}.yaml")
    synthesise(spec, sample_root(target, spec), start)
    return [*written, target / "constraints.txt", sample_root(target, spec)]
