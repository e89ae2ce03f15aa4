"""The conda environments pin the same versions as requirements.txt (what `make install` uses)."""

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# pip name -> conda-forge name where they differ; pytest, ruff and snakefmt are test-only requirements
CONDA_NAME = {
    "torch": "pytorch",
    "opencv-python-headless": "py-opencv",
    "snakemake": "snakemake-minimal",
    "matplotlib": "matplotlib-base",
}
PIP_ONLY = {"pytest", "ruff", "snakefmt", "tifffile"}  # test and lint tools (tifffile writes the tests' DNGs)
# from PyPI in the environments' pip section, with the same pins (not on conda-forge; pillow-heif and rawpy: their
# wheels bundle libheif and LibRaw)
PIP_IN_CONDA = {"asmk", "pyaml", "pillow-heif", "rawpy"}


def pip_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not pinned with =="
            pins[name.strip().lower()] = version.strip()
    return pins


def conda_pins(path: Path) -> dict[str, tuple[str, str]]:
    env = yaml.safe_load(path.read_text())
    out = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the pip section: only packages conda-forge lacks, pinned with ==
            assert list(dep) == ["pip"], f"{path.name}: unexpected section {dep}"
            for line in dep["pip"]:
                name, _, version = line.partition("==")
                assert name in PIP_IN_CONDA and version, f"{path.name}: pip section entry {line!r}"
                out[name] = (version, "pip")
            continue
        name, version, build = (dep.split("=") + ["", ""])[:3]
        out[name] = (version, build)
    return out


def pip_version_to_conda(name: str, version: str) -> str:
    # opencv-python-headless 5.0.0.93 is OpenCV 5.0.0 plus a wheel build number
    return ".".join(version.split(".")[:3]) if name == "opencv-python-headless" else version


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_conda_pins_agree_with_requirements(variant):
    path = REPO / "envs" / f"retrieval-{variant}.yaml"
    conda = conda_pins(path)
    for name, version in pip_pins().items():
        if name in PIP_ONLY:
            continue
        cname = CONDA_NAME.get(name, name)
        assert cname in conda, f"{path.name} lacks {cname} (pip: {name}=={version})"
        assert conda[cname][0] == pip_version_to_conda(name, version), (path.name, cname, conda[cname], version)
        assert (conda[cname][1] == "pip") == (name in PIP_IN_CONDA), (path.name, cname, conda[cname])
    build = conda["pytorch"][1]
    assert build.startswith("cpu" if variant == "cpu" else "cuda"), (variant, build)


def test_rules_name_the_configured_environment():
    common = (REPO / "rules" / "common.smk").read_text()
    assert "envs/retrieval-{config['software_env']}.yaml" in common
    for variant in ("cpu", "cuda"):
        assert (REPO / "envs" / f"retrieval-{variant}.yaml").exists()
