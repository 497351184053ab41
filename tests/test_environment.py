"""environment.yml (conda) and pyproject.toml (pip) must ask for the same packages."""
import re

import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the TOML reader that pip itself carries
    from pip._vendor import tomli as tomllib

from conftest import ROOT

# conda-forge names of packages whose PyPI name differs
CONDA_TO_PIP = {"pytorch": "torch"}
NOT_PACKAGES = {"python", "pip"}


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def split(spec):
    """'scikit-learn>=1.3' -> ('scikit-learn', '>=1.3')"""
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)", spec)
    return norm(m.group(1)), m.group(2).replace(" ", "")


def pyproject_requirements():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(data["dependencies"])
    for extra in data["optional-dependencies"].values():
        reqs += extra
    return dict(split(r) for r in reqs)


def conda_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs = {}
    for dep in env["dependencies"]:
        for spec in dep["pip"] if isinstance(dep, dict) else [dep]:
            name, version = split(spec)
            name = CONDA_TO_PIP.get(name, name)
            if name not in NOT_PACKAGES:
                reqs[name] = version
    return reqs, env


def test_environment_yml_and_pyproject_agree():
    pip, (conda, _) = pyproject_requirements(), conda_requirements()
    assert sorted(set(pip) - set(conda)) == [], "in pyproject.toml but not environment.yml"
    assert sorted(set(conda) - set(pip)) == [], "in environment.yml but not pyproject.toml"
    differ = {n: (pip[n], conda[n]) for n in pip if pip[n] != conda[n]}
    assert not differ, f"version bounds differ (pyproject, environment.yml): {differ}"


def test_python_versions_agree():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert conda_python.replace("python", "") == data["requires-python"]
