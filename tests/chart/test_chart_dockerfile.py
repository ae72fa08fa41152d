"""The Dockerfile (no Docker engine runs here: it is parsed) and its agreement with the chart."""

from __future__ import annotations

import json
import re
import tomllib

from chart_support import CHART, REPO, load_yaml_documents

DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def args_defaults() -> dict[str, str]:
    return dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "=" in a)


def base_images() -> list[str]:
    defaults = args_defaults()
    images = []
    stages = set()
    for keyword, rest in instructions():
        if keyword != "FROM":
            continue
        parts = rest.split()
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], parts[0])
        if image not in stages:
            images.append(image)
        if len(parts) == 3 and parts[1].upper() == "AS":
            stages.add(parts[2])
    return images


def test_base_image_is_python_311_slim_pinned_by_version() -> None:
    images = base_images()
    assert images, "no FROM"
    for image in images:
        name, _, tag = image.partition(":")
        assert name == "python", image
        assert re.fullmatch(r"3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", tag), f"not pinned: {image}"
        assert "latest" not in image


def test_runs_as_numeric_non_root_user() -> None:
    users = [rest for keyword, rest in instructions() if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER must be numeric (runAsNonRoot checks it): {user}"
    assert int(user.split(":")[0]) == 10001
    final_stage = DOCKERFILE.rsplit("FROM ", 1)[1]
    assert "USER 10001" in final_stage


def test_entrypoint_and_cmd() -> None:
    found = {k: json.loads(rest) for k, rest in instructions() if k in ("ENTRYPOINT", "CMD")}
    assert found == {"ENTRYPOINT": ["oneie-operator"], "CMD": ["run"]}


def test_pip_without_cache_and_no_build_tools() -> None:
    runs = " ".join(rest for k, rest in instructions() if k == "RUN")
    assert "pip install --no-cache-dir ." in runs
    for tool in ("apt-get install", "build-essential", "gcc", "apk add"):
        assert tool not in runs, f"build tool in the image: {tool}"
    final_stage = DOCKERFILE.rsplit("FROM ", 1)[1]
    assert "COPY --from=build /opt/oneie /opt/oneie" in final_stage
    assert "pip install" not in final_stage


def test_image_installs_the_operator_without_the_demo_extra() -> None:
    """kmock and the emulator's validators are the `demo` extra's; the image installs no extra."""
    installs = [rest for k, rest in instructions() if k == "RUN" and "pip install" in rest]
    assert installs and all(re.search(r"pip install --no-cache-dir \.(\s|$)", run) for run in installs), installs
    assert "[" not in " ".join(installs), f"an extra in the image: {installs}"
    dependencies = " ".join(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    assert "kmock" not in dependencies


def test_dockerignore_sends_only_the_package() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!operator/"} <= set(lines)
    copied = [rest.split()[:-1] for k, rest in instructions() if k == "COPY" and "--from" not in rest]
    for sources in copied:
        for source in sources:
            assert f"!{source}" in lines or f"!{source.rstrip('/')}/" in lines, f"{source} is ignored"


def test_chart_points_at_this_image() -> None:
    chart = load_yaml_documents(CHART / "Chart.yaml")[0]
    values = load_yaml_documents(CHART / "values.yaml")[0]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"] == "0.1.0"
    assert values["image"]["repository"] == "ghcr.io/one-ie/oneie-operator"
    assert values["image"]["tag"] == ""  # = appVersion
    assert f"ghcr.io/one-ie/oneie-operator:{chart['appVersion']}" in DOCKERFILE
