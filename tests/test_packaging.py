"""A normal (not editable) install has every package and the interface's stylesheet: each
folder with an __init__.py is a declared package, and each non-Python file is package data."""
import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def declared():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return config["packages"], config["package-dir"], config.get("package-data", {})


def folder_of(package: str, package_dir: dict) -> Path:
    """Where setuptools looks for `package` (the longest mapped prefix wins)."""
    parts = package.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in package_dir:
            return ROOT / package_dir[prefix] / Path(*parts[i:])
    return ROOT / Path(*parts)


def test_every_package_folder_is_declared():
    packages, package_dir, _ = declared()
    folders = {folder_of(p, package_dir) for p in packages}
    for top in ("engine", "tui", "sample_models"):
        for init in (ROOT / top).rglob("__init__.py"):
            assert init.parent in folders, f"{init.parent.relative_to(ROOT)} is not in [tool.setuptools] packages"


def test_every_data_file_is_package_data():
    packages, package_dir, package_data = declared()
    for package in packages:
        folder = folder_of(package, package_dir)
        for path in folder.iterdir():
            if path.is_file() and path.suffix not in (".py", ".pyc"):
                patterns = package_data.get(package, [])
                assert any(fnmatch.fnmatch(path.name, p) for p in patterns), \
                    f"{path.relative_to(ROOT)} is not package data of {package}"
